"""One daemon, many pairs (issue 14): the schedule is spread, the line is fair, and watching
costs one thread however many pairs there are."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from syncd.config import PairConfig, load_config
from syncd.engine.scans import phase
from syncd.models import Outcome
from syncd.outcomes import RunResult
from syncd.scheduler import PairScheduler, RunCoordinator, RunRequest, next_firing
from syncd.watch import Watcher
from tests.daemons import wait_for


def _pairs(tmp_path: Path, count: int, interval: str = "5m") -> list[PairConfig]:
    lines = ["[daemon]", 'state_dir = "state"', f'interval = "{interval}"']
    for i in range(count):
        (tmp_path / f"u{i}" / "files").mkdir(parents=True)
        lines += [
            f"[users.u{i}]",
            f'files = {{ type = "local", path = "u{i}/files" }}',
            f'bucket = {{ type = "dir", path = "u{i}/bucket" }}',
        ]
    config = tmp_path / "c.toml"
    config.write_text("\n".join(lines) + "\n")
    return list(load_config(config).pairs)


def test_the_schedule_spreads_n_pairs_over_the_interval(tmp_path: Path) -> None:
    interval = 300.0
    keys = [f"user{i}/default" for i in range(1000)]
    tenths = Counter(int(phase(key, interval) / interval * 10) for key in keys)
    assert sorted(tenths) == list(range(10))
    assert all(70 <= n <= 130 for n in tenths.values()), tenths  # ~100 per tenth, none crowded
    assert phase(keys[0], interval) == phase(keys[0], interval)  # the same at every start
    now = 1_000_000.0
    for key in keys[:50]:
        first = next_firing(key, interval, now)
        assert now < first <= now + interval
        assert abs((first - phase(key, interval)) / interval - round((first - phase(key, interval)) / interval)) < 1e-9

    pairs = _pairs(tmp_path, 200)
    scheduler = PairScheduler(lambda _key: None, workers=2, first_spread_s=15)
    scheduler.start()
    try:
        began = time.time()
        scheduler.set_pairs(pairs, paused=set(), soon={p.key for p in pairs})
        firings = scheduler.firings()
        assert len(firings) == 200
        offsets = sorted(when - began for _, when in firings)
        assert offsets[0] >= 0 and offsets[-1] <= 300 + 1
        minutes = Counter(int(offset // 60) for offset in offsets)
        assert max(minutes.values()) <= 60, minutes  # 40 a minute on average; before: all in one
    finally:
        scheduler.shutdown()


def test_a_thousand_queued_requests_are_served_in_fifo_order(tmp_path: Path) -> None:
    gate = threading.Event()
    order: list[str] = []

    def run(pair: PairConfig, request: RunRequest, emit: Callable[[str, dict[str, object]], None]) -> RunResult:
        order.append(pair.key)
        emit("listing", {})
        assert gate.wait(30)
        return RunResult(pair.key, Outcome.OK)

    base = _pairs(tmp_path, 1)[0]
    pairs = [replace(base, user=f"user{i:04d}") for i in range(1000)]  # the key is user/pair
    threads_before = threading.active_count()
    coordinator = RunCoordinator(run, max_parallel=1)
    runs = [coordinator.request(p, RunRequest("schedule")) for p in pairs]
    assert threading.active_count() - threads_before <= 1  # one worker, not a thread per request
    # the first pair asks again while it lists: its follow-up goes to the back of the line
    wait_for(lambda: order, 10, "the first run")
    again = coordinator.request(pairs[0], RunRequest("now"))
    gate.set()
    assert again is not None and again.wait(60) is not None
    for run_ in runs:
        assert run_ is not None and run_.wait(60) is not None
    assert order == [p.key for p in pairs] + [pairs[0].key]


def test_one_thread_watches_every_pair(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path, 60)
    fired: list[tuple[str, frozenset[str] | None, str]] = []
    before = threading.active_count()
    watcher = Watcher(lambda key, hints, why: fired.append((key, hints, why)), quiet_s=0.1)
    watcher.start(pairs)
    try:
        assert threading.active_count() - before <= 2  # the inotify reader and the debouncer
        assert all(watcher.watched[p.key] == frozenset({"files", "bucket"}) for p in pairs)
        last = tmp_path / "u59" / "files"
        (last / "new" / "deeper").mkdir(parents=True)  # folders made after the start are watched
        (last / "new" / "deeper" / "x.txt").write_text("x")
        wait_for(lambda: any(k == "u59/default" and h and "new/deeper/x.txt" in h for k, h, _ in fired), 10, "hint")
        (last / "new" / "deeper" / "x.txt").write_text("changed")
        count = len(fired)
        wait_for(lambda: len(fired) > count, 10, "a second hint in the new folder")
        assert fired[-1][:2] == ("u59/default", frozenset({"new/deeper/x.txt"}))
    finally:
        watcher.stop()


def test_a_tree_no_longer_watched_whole_is_not_vouched_for(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path, 3)
    fired: list[tuple[str, frozenset[str] | None, str]] = []
    watcher = Watcher(lambda key, hints, why: fired.append((key, hints, why)), quiet_s=0.1)
    watcher.start(pairs)
    try:
        (tmp_path / "u1" / "files").rename(tmp_path / "u1" / "moved-away")
        wait_for(lambda: any(k == "u1/default" and h is None for k, h, _ in fired), 10, "a full run of u1")
        assert watcher.watched["u1/default"] == frozenset({"bucket"})  # its files side: full runs from now on
        assert "u1/default" in watcher.lost_at
        assert watcher.watched["u0/default"] == frozenset({"files", "bucket"})
        watcher.set_pairs(pairs)  # a rebuild (reload): every pair missed what changed meanwhile
        assert {"u0/default", "u2/default"} <= set(watcher.lost_at)
    finally:
        watcher.stop()
