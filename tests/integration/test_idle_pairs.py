"""Idle pairs cost O(1) (issue 14): what a run lists, stats and writes when nothing changed.

The engine is run on a local tree and a ``dir`` bucket whose calls are counted: a side the
caller vouches for (a trusted watcher saw nothing) is not listed, a hinted run stats only its
hints, a due full scan lists everything again, and a bucket that only syncd writes
(``sole_writer``) costs one stat of its marker while nobody else wrote there.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncd.config import load_config
from syncd.engine.scans import MARKER, WatchState, full_scan_due, scheduled_scan
from syncd.engine.sync import RunOptions, SyncSettings, run_sync
from syncd.errors import ConfigError
from syncd.index.store import Store
from syncd.models import ConflictPolicy, Mode, Outcome, Report, Side
from syncd.paths import Excludes
from syncd.remotes.base import Remote
from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.local import LocalRemote
from tests.integration.cli_helpers import syncd, write_local_pair

BOTH = frozenset(Side)


class Counted:
    """Hands every call on to ``inner`` and counts it by method name."""

    def __init__(self, inner: Remote) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call

    def reset(self) -> None:
        self.counts.clear()


class Pair:
    def __init__(self, root: Path) -> None:
        self.root = root
        state = root / "state"
        state.mkdir()
        (root / "files").mkdir()
        self.settings = SyncSettings(
            key="test/idle",
            excludes=Excludes(()),
            policy=ConflictPolicy.KEEP_BOTH,
            mode=Mode.TWO_WAY,
            transfers=1,
            max_delete_ratio=0.5,
            trash_retention_days=30,
            state_dir=state,
        )
        self.a = Counted(LocalRemote(root / "files", trash_dir=state / "trash", label="files"))
        self.b = Counted(DirBucket(root / "bucket", label="bucket"))
        self.store = Store.open(state / "index.db")

    def sync(self, settings: SyncSettings | None = None, **options: Any) -> Report:
        self.a.reset()
        self.b.reset()
        remotes: dict[Side, Any] = {Side.A: self.a, Side.B: self.b}
        return run_sync(remotes, self.store, settings or self.settings, RunOptions(**options))

    def bucket_keys(self) -> set[str]:
        return {e.path for e in self.b.inner.list()}

    def close(self) -> None:
        self.store.close()
        self.a.inner.close()
        self.b.inner.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    made = Pair(tmp_path)
    for i in range(20):
        folder = tmp_path / "files" / f"d{i % 4}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(b"x" * i)
    assert made.sync().outcome is Outcome.OK
    yield made
    made.close()


def test_an_idle_local_pair_s_scheduled_run_does_no_listing(pair: Pair) -> None:
    # The daemon's decision: a watcher covering both sides, nothing seen, full scan not due.
    now = time.time()
    idle = WatchState(last_full_at=now - 60, lost_at=None, last_ok=True)
    assert scheduled_scan(idle, BOTH, now, 3600) == BOTH  # both unchanged: the daemon starts no run
    # And a run told so lists nothing, on either side, and changes nothing.
    report = pair.sync(unchanged=BOTH)
    assert report.outcome is Outcome.OK and not report.done
    assert "list" not in pair.a.counts and "list" not in pair.b.counts
    assert "stat" not in pair.a.counts and "stat" not in pair.b.counts


def test_a_hinted_run_sees_the_change(pair: Pair) -> None:
    (pair.root / "files" / "d1" / "new.txt").write_bytes(b"new")
    report = pair.sync(hints=frozenset({"d1/new.txt"}))
    assert report.done == {"copy": 1}
    assert "d1/new.txt" in pair.bucket_keys()
    assert "list" not in pair.a.counts and "list" not in pair.b.counts


def test_a_due_full_scan_catches_a_change_the_watcher_missed(pair: Pair) -> None:
    missed = pair.root / "files" / "d2" / "missed.txt"
    missed.write_bytes(b"the watcher never said")
    # Not due yet: the scheduled run trusts the watcher and does not see it.
    now = time.time()
    recent = WatchState(last_full_at=now - 60, lost_at=None, last_ok=True)
    assert scheduled_scan(recent, BOTH, now, 3600) == BOTH
    assert not pair.sync(unchanged=BOTH).done
    # Due (an hour since the last full scan), or the watcher lost events since: a full run.
    assert scheduled_scan(replace(recent, last_full_at=now - 3600), BOTH, now, 3600) is None
    assert scheduled_scan(replace(recent, lost_at=now - 30), BOTH, now, 3600) is None
    assert scheduled_scan(replace(recent, last_ok=False), BOTH, now, 3600) is None  # failed items retried
    report = pair.sync()
    assert report.done == {"copy": 1} and "d2/missed.txt" in pair.bucket_keys()
    assert pair.a.counts.get("list") == 1
    assert set(pair.store.side_scans()) == {"files", "bucket"}


def test_the_marker_makes_an_unchanged_bucket_cost_one_stat(pair: Pair) -> None:
    marked = replace(pair.settings, sole_writer=True)
    first = pair.sync(marked, unchanged=frozenset({Side.A}))  # no marker kept yet: lists, then writes one
    assert first.outcome is Outcome.OK and pair.b.counts.get("list") == 1
    assert MARKER in pair.bucket_keys() and pair.store.side_scans()[Side.B.value].marker is not None
    assert not (pair.root / "files" / MARKER).exists()  # syncd's own: never synced

    report = pair.sync(marked, unchanged=frozenset({Side.A}))
    assert report.outcome is Outcome.OK and not report.done
    assert pair.b.counts == {"stat": 1}  # one stat of the marker, no listing
    # syncd's own write renews the marker: still one stat afterwards
    (pair.root / "files" / "d0" / "ours.txt").write_bytes(b"ours")
    assert pair.sync(marked, hints=frozenset({"d0/ours.txt"})).done == {"copy": 1}
    assert not pair.sync(marked, unchanged=frozenset({Side.A})).done
    assert pair.b.counts == {"stat": 1}

    # Another writer (no marker update): not seen while the full scan is not due...
    pair.b.inner.write("theirs.txt", io.BytesIO(b"theirs"), size=6, mtime_ns=time.time_ns())
    assert not pair.sync(marked, unchanged=frozenset({Side.A})).done
    assert not (pair.root / "files" / "theirs.txt").exists()
    # ...and caught by the full scan once it is due.
    due = replace(marked, full_scan_interval_s=0.0)
    report = pair.sync(due, unchanged=frozenset({Side.A}))
    assert report.done == {"copy": 1} and pair.b.counts.get("list") == 1
    assert (pair.root / "files" / "theirs.txt").read_bytes() == b"theirs"


def test_a_run_that_stops_while_writing_leaves_no_marker_kept(pair: Pair) -> None:
    marked = replace(pair.settings, sole_writer=True)
    pair.sync(marked)
    assert pair.store.side_scans()[Side.B.value].marker is not None
    (pair.root / "files" / "late.txt").write_bytes(b"late")

    def crash(stage: str) -> None:
        if stage == "action-done":
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        pair.sync(marked, checkpoint=crash)
    assert pair.store.side_scans()[Side.B.value].marker is None  # the next run lists the bucket
    pair.sync(marked, unchanged=frozenset({Side.A}))
    assert pair.b.counts.get("list") == 1


def test_status_says_when_each_pair_was_last_fully_scanned(tmp_path: Path) -> None:
    config = write_local_pair(tmp_path)
    with open(config, "a") as out:
        out.write('full_scan_interval = "2h"\n')  # alice's own key
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    before = time.time()
    assert syncd(config, "now").returncode == 0
    row = json.loads(syncd(config, "status", "--json").stdout)[0]
    assert before <= row["full_scan_at"] <= time.time()
    assert set(row["full_scans"]) == {"files", "bucket"} and row["full_scan_interval_s"] == 7200
    text = syncd(config, "status").stdout
    assert "  last full scan: " in text and "(every 2h" in text, text


def test_full_scan_interval_and_sole_writer_are_config_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    pairs = (
        '[users.alice]\nfiles = { type = "local", path = "a" }\nbucket = { type = "dir", path = "b" }\n'
        'full_scan_interval = "30m"\nsole_writer = true\n'
        '[users.bob]\nfiles = { type = "local", path = "c" }\nbucket = { type = "dir", path = "d" }\n'
    )
    config.write_text('[daemon]\nstate_dir = "state"\nfull_scan_interval = "2h"\n' + pairs)
    alice, bob = load_config(config).pairs
    assert (alice.full_scan_interval_s, alice.sole_writer) == (1800, True)
    assert (bob.full_scan_interval_s, bob.sole_writer) == (7200, False)
    assert SyncSettings.of(alice).sole_writer and SyncSettings.of(alice).full_scan_interval_s == 1800
    config.write_text('[daemon]\nstate_dir = "state"\nfull_scan_interval = "often"\n' + pairs)
    with pytest.raises(ConfigError, match=r"daemon\.full_scan_interval: 'often' is not a duration"):
        load_config(config)


def test_full_scans_of_pairs_listed_together_spread_over_the_next_half_interval() -> None:
    started, interval = 1_000_000.0, 3600.0
    keys = [f"user{i}/default" for i in range(1000)]
    # the first time each pair's full scan is due, to the second
    due = [next(t for t in range(3601) if full_scan_due(started, started + t, interval, key)) for key in keys]
    assert min(due) >= interval / 2 and max(due) <= interval  # never sooner than half, never later than the interval
    per_tenth = Counter(int((d - interval / 2) / (interval / 20)) for d in due)
    assert all(60 <= n <= 140 for n in per_tenth.values()) and len(per_tenth) == 10, per_tenth
