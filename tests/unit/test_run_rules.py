"""The engine's small run rules, without remotes: backoff, the transient streak, the run
settings read from a pair's config, and where a remote's files live on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import PairConfig
from syncd.engine.sync import TRANSIENT_STREAK, SyncSettings, deferred_paths, server_gone, transient_streak
from syncd.errors import ItemError, NotFound, TransientError
from syncd.models import Action, ActionKind, ConflictPolicy, Mode, Side
from syncd.paths import Excludes
from syncd.remotes.base import Capabilities, SupportsLocalPath, local_root
from syncd.remotes.settings import RemoteSettings


def copy(path: str) -> Action:
    return Action(ActionKind.COPY, path, Side.B, reason="new on A")


# -- backoff ------------------------------------------------------------------------------------


def test_only_paths_whose_retry_time_is_still_ahead_are_deferred() -> None:
    actions = [copy("waiting.txt"), copy("due.txt"), copy("never-failed.txt")]
    retry_at = {"waiting.txt": 1_000.5, "due.txt": 1_000.0, "not-planned.txt": 5_000.0}
    assert deferred_paths(actions, retry_at, now=1_000.0) == {"waiting.txt"}


def test_nothing_is_deferred_without_item_errors() -> None:
    assert deferred_paths([copy("a.txt")], {}, now=0.0) == set()


# -- the transient streak -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("streak", "error", "after"),
    [
        (0, TransientError("connection reset"), 1),
        (2, TransientError("connection refused"), 3),
        (2, None, 0),  # a success: the server answered
        (2, ItemError("a.txt", "name refused"), 0),  # the item's own problem: the server answered
        (2, NotFound("a.txt"), 0),
        (2, OSError("no remote mapped this"), 0),
    ],
)
def test_only_transient_failures_extend_a_streak(streak: int, error: Exception | None, after: int) -> None:
    assert transient_streak(streak, error) == after


def test_the_server_is_gone_after_three_transient_failures_in_a_row() -> None:
    assert TRANSIENT_STREAK == 3
    assert [server_gone(n) for n in range(5)] == [False, False, False, True, True]


def test_a_streak_broken_by_one_success_starts_again() -> None:
    streak = 0
    for error in [TransientError("x"), TransientError("x"), None, TransientError("x"), TransientError("x")]:
        streak = transient_streak(streak, error)
        assert not server_gone(streak)
    assert server_gone(transient_streak(streak, TransientError("x")))


# -- settings -----------------------------------------------------------------------------------


def test_sync_settings_take_what_the_engine_needs_from_the_pair() -> None:
    state = Path("/var/lib/syncd/alice/docs")
    excludes = Excludes(["*.part"])
    pair = PairConfig(
        user="alice",
        name="docs",
        files=RemoteSettings(type="local"),
        bucket=RemoteSettings(type="dir"),
        policy=ConflictPolicy.NEWER,
        mode=Mode.DOWNLOAD_ONLY,
        excludes=excludes,
        max_delete_ratio=0.25,
        trash_retention_days=7,
        transfers=8,
        interval_s=300.0,
        state_dir=state,
    )
    assert SyncSettings.of(pair) == SyncSettings(
        key="alice/docs",
        excludes=excludes,
        policy=ConflictPolicy.NEWER,
        mode=Mode.DOWNLOAD_ONLY,
        transfers=8,
        max_delete_ratio=0.25,
        trash_retention_days=7,
        state_dir=state,
    )


# -- local paths --------------------------------------------------------------------------------


class _Tree:
    """Just enough of a remote for :func:`local_root`: capabilities, maybe a root."""

    def __init__(self, capabilities: Capabilities, root: Path | None = None) -> None:
        self.name = "fake"
        self.capabilities = capabilities
        if root is not None:
            self.root = root


def test_a_remote_with_local_files_and_a_root_is_read_through_the_protocol() -> None:
    tree = _Tree(Capabilities(local_path=True), Path("/srv/files"))
    assert isinstance(tree, SupportsLocalPath)
    assert local_root(tree) == Path("/srv/files")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tree",
    [
        _Tree(Capabilities(local_path=False), Path("/srv/files")),  # a root that is not on this machine
        _Tree(Capabilities(local_path=True)),  # local, but it does not say where
        _Tree(Capabilities()),
    ],
)
def test_no_local_root_unless_the_remote_declares_both(tree: _Tree) -> None:
    assert local_root(tree) is None  # type: ignore[arg-type]
