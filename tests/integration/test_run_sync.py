"""The engine run on remotes a test opens itself (``run_sync``): a real `local` tree and a
real `dir` bucket, made here with no config file, no registry and no lock, one of them
wrapped in a remote that notes every call (and fails some on demand)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from syncd.engine.sync import RunOptions, SyncSettings, run_sync
from syncd.errors import ItemError, TransientError
from syncd.index.store import Store
from syncd.models import ConflictPolicy, Mode, Outcome, Report, Side
from syncd.paths import Excludes
from syncd.remotes.base import Remote
from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.local import LocalRemote

WRITES = frozenset({"write", "delete", "trash", "keep_version", "move", "create_batch"})

Failure = Callable[[str, str], Exception | None]  # (method, path) -> the error to raise, if any


class Recorded:
    """A remote that hands every call on to ``inner`` and notes ``(method, path)`` first;
    ``fail`` may answer a call with an error instead. Optional abilities (listing notes,
    a local root) are the inner remote's, since attributes are looked up on it."""

    def __init__(self, inner: Remote, fail: Failure | None = None) -> None:
        self.inner = inner
        self.fail = fail or (lambda _method, _path: None)
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            path = args[0] if args and isinstance(args[0], str) else ""
            self.calls.append((name, path))
            error = self.fail(name, path)
            if error is not None:
                raise error
            return attr(*args, **kwargs)

        return call

    def called(self, *methods: str) -> list[str]:
        """The paths of the calls to ``methods``, in order."""
        return [path for method, path in self.calls if method in methods]


@dataclass
class World:
    """A files tree and a bucket in a tmp folder, their index, and a pair's settings."""

    root: Path
    settings: SyncSettings
    remotes: dict[Side, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    @property
    def files(self) -> Path:
        return self.root / "files"

    def write_a(self, path: str, data: bytes) -> None:
        target = self.files / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def tree_a(self) -> dict[str, bytes]:
        return {p.relative_to(self.files).as_posix(): p.read_bytes() for p in self.files.rglob("*") if p.is_file()}

    def tree_b(self) -> dict[str, bytes]:
        bucket = DirBucket(self.root / "bucket")
        out = {}
        for entry in bucket.list():
            with bucket.open_read(entry.path) as stream:
                out[entry.path] = stream.read()
        return out

    def sync(self, store: Store, settings: SyncSettings | None = None, **options: Any) -> Report:
        def progress(event: str, data: dict[str, object]) -> None:
            self.events.append((event, data))

        return run_sync(self.remotes, store, settings or self.settings, RunOptions(**options), progress)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "files").mkdir()
    settings = SyncSettings(
        key="test/run",
        excludes=Excludes(()),
        policy=ConflictPolicy.KEEP_BOTH,
        mode=Mode.TWO_WAY,
        transfers=1,  # one action at a time: the order of calls is the plan's
        max_delete_ratio=0.5,
        trash_retention_days=30,
        state_dir=state,
    )
    w = World(tmp_path, settings)
    w.remotes[Side.A] = LocalRemote(tmp_path / "files", trash_dir=state / "trash-files", label="files")
    w.remotes[Side.B] = DirBucket(tmp_path / "bucket", label="bucket")
    yield w
    for remote in w.remotes.values():
        remote.close()


@pytest.fixture
def store(world: World) -> Iterator[Store]:
    opened = Store.open(world.settings.state_dir / "index.db")
    yield opened
    opened.close()


def test_runs_on_the_remotes_it_is_given_and_leaves_them_open(world: World, store: Store) -> None:
    world.write_a("a.txt", b"alpha")
    world.write_a("docs/b.txt", b"beta")
    world.remotes[Side.B] = bucket = Recorded(world.remotes[Side.B])
    report = world.sync(store)
    assert report.outcome is Outcome.OK, report.message
    assert report.done == {"copy": 2}
    assert sorted(bucket.called("write")) == ["a.txt", "docs/b.txt"]
    assert world.tree_b() == world.tree_a()
    assert bucket.called("close") == []  # the caller opened it: the caller closes it
    assert set(store.load_bases()) == {"a.txt", "docs/b.txt"}
    assert world.events[-1] == ("finished", {"outcome": "ok", "message": ""})


def test_a_second_run_reads_and_writes_nothing(world: World, store: Store) -> None:
    world.write_a("a.txt", b"alpha")
    assert world.sync(store).outcome is Outcome.OK
    world.remotes[Side.A] = files = Recorded(world.remotes[Side.A])
    world.remotes[Side.B] = bucket = Recorded(world.remotes[Side.B])
    report = world.sync(store)
    assert report.outcome is Outcome.OK and report.done == {}
    assert files.called("list") == bucket.called("list") == [""]
    assert [c for c in files.calls + bucket.calls if c[0] in WRITES | {"open_read"}] == []


def test_a_dry_run_calls_no_write_and_records_nothing(world: World, store: Store) -> None:
    world.write_a("a.txt", b"alpha")
    world.remotes[Side.B] = bucket = Recorded(world.remotes[Side.B])
    report = world.sync(store, dry_run=True)
    assert report.plan is not None and [a.path for a in report.plan.actions] == ["a.txt"]
    assert bucket.called(*WRITES) == []
    assert store.load_bases() == {} and store.runs() == []


def test_the_callers_settings_decide_what_is_synced(world: World, store: Store) -> None:
    world.write_a("a.txt", b"alpha")
    world.write_a("half.part", b"still downloading")
    world.remotes[Side.B].write("b.txt", io.BytesIO(b"from the bucket"), size=15, mtime_ns=1_600_000_000 * 10**9)
    upload_only = replace(world.settings, excludes=Excludes(["*.part"]), mode=Mode.UPLOAD_ONLY)
    report = world.sync(store, upload_only)
    assert report.outcome is Outcome.OK, report.message
    assert set(world.tree_b()) == {"a.txt", "b.txt"}
    assert set(world.tree_a()) == {"a.txt", "half.part"}


def test_a_server_gone_stops_the_run_after_three_failures_in_a_row_and_keeps_no_backoff(
    world: World, store: Store
) -> None:
    for i in range(10):
        world.write_a(f"f{i}.txt", bytes([i]) * 10)

    def refused(method: str, _path: str) -> Exception | None:
        return TransientError("bucket: connection refused") if method == "write" else None

    world.remotes[Side.B] = bucket = Recorded(world.remotes[Side.B], refused)
    report = world.sync(store)
    assert report.outcome is Outcome.RETRY
    assert "3 failures in a row" in report.message
    assert len(bucket.called("write")) == 3  # not every remaining item
    assert store.item_errors() == []  # nothing waits once the server is back
    assert store.load_bases() == {}


def test_an_item_error_backs_off_and_a_daemon_run_defers_it(world: World, store: Store) -> None:
    world.write_a("bad.txt", b"refused")
    world.write_a("good.txt", b"fine")

    def refuse_bad(method: str, path: str) -> Exception | None:
        return ItemError(path, "refused by the bucket") if (method, path) == ("write", "bad.txt") else None

    world.remotes[Side.B] = bucket = Recorded(world.remotes[Side.B], refuse_bad)
    first = world.sync(store)
    assert first.outcome is Outcome.ITEM_ERRORS
    assert [e.path for e in store.item_errors()] == ["bad.txt"]
    assert set(world.tree_b()) == {"good.txt"}
    bucket.calls.clear()
    later = world.sync(store, respect_backoff=True)
    assert later.deferred == 1 and later.done == {}
    assert bucket.called("write") == []
    again = world.sync(store)  # a manual run tries it at once
    assert again.outcome is Outcome.ITEM_ERRORS and bucket.called("write") == ["bad.txt"]


def test_trash_is_purged_at_most_once_a_day_with_the_stamp_in_the_settings_state_dir(
    world: World, store: Store
) -> None:
    world.remotes[Side.B] = bucket = Recorded(world.remotes[Side.B])
    world.write_a("a.txt", b"alpha")
    world.sync(store)
    stamp = world.settings.state_dir / "last-trash-purge"
    assert stamp.exists() and len(bucket.called("purge_trash")) == 1
    world.sync(store)
    assert len(bucket.called("purge_trash")) == 1
    os.utime(stamp, (0, 0))  # a day (and more) later
    world.sync(store)
    assert len(bucket.called("purge_trash")) == 2
