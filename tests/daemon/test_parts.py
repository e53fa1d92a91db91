"""The daemon's parts in-process: protocol parsing, run coordination, debouncing, sd_notify."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.config import PairConfig, load_config
from syncd.control import parse_request
from syncd.daemon import sd_notify, watchdog_interval
from syncd.errors import ProtocolError
from syncd.models import Outcome
from syncd.outcomes import RunResult
from syncd.scheduler import RunCoordinator, RunRequest
from syncd.watch import MAX_HINTS, Debouncer, Watcher
from tests.daemons import wait_for


def _pair(tmp_path: Path, name: str = "alice") -> PairConfig:
    (tmp_path / "files").mkdir(parents=True, exist_ok=True)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "state"\n[users.{name}]\nfiles = {{ type = "local", path = "files" }}\n'
        'bucket = { type = "dir", path = "bucket" }\n'
    )
    return load_config(config).pairs[0]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"nope", "malformed request"),
        (b'{"v": 1}', "unknown op"),
        (b'{"v": 1, "op": "now", "target": 3}', "'target' must be"),
        (b'{"v": 1, "op": "now", "extra": 1}', "unknown key"),
        (b'{"op": "now"}', "unsupported protocol version None"),
    ],
)
def test_bad_requests_are_named(line: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        parse_request(line)


def test_request_defaults() -> None:
    request = parse_request(b'{"v": 1, "op": "now", "target": "alice/default"}')
    assert (request.op, request.target, request.dry_run, request.force) == ("now", "alice/default", False, False)


class _Gate:
    """A run function that waits at a gate before listing: the test decides when runs move."""

    def __init__(self) -> None:
        self.before_listing = threading.Event()
        self.calls: list[RunRequest] = []

    def __call__(
        self, pair: PairConfig, request: RunRequest, emit: Callable[[str, dict[str, object]], None]
    ) -> RunResult:
        self.calls.append(request)
        assert self.before_listing.wait(10)
        emit("listing", {})
        emit("finished", {"outcome": "ok"})
        return RunResult(pair.key, Outcome.OK, message=f"call {len(self.calls)}")


def test_requests_before_listing_join_one_run(tmp_path: Path) -> None:
    gate = _Gate()
    coordinator = RunCoordinator(gate, max_parallel=1)
    pair = _pair(tmp_path)
    seen: list[dict[str, Any]] = []
    first = coordinator.request(pair, RunRequest("now"), listener=seen.append)
    second = coordinator.request(pair, RunRequest("now"), listener=seen.append)
    hinted = coordinator.request(pair, RunRequest("watch", hints=frozenset({"a.txt"})))
    assert first is second is hinted
    gate.before_listing.set()
    assert first is not None and first.wait(10) == RunResult("alice/default", Outcome.OK, message="call 1")
    assert len(gate.calls) == 1
    assert [m["event"] for m in seen].count("finished") == 2  # both requesters got the progress
    assert {"event": "joined", "pair": "alice/default", "reason": "now"} in seen


def test_requests_after_listing_share_one_follow_up_run(tmp_path: Path) -> None:
    pair = _pair(tmp_path)
    listing = threading.Event()
    release = threading.Event()
    calls: list[RunRequest] = []

    def run(pair: PairConfig, request: RunRequest, emit: Callable[[str, dict[str, object]], None]) -> RunResult:
        calls.append(request)
        emit("listing", {})
        listing.set()
        assert release.wait(10)
        return RunResult(pair.key, Outcome.OK)

    coordinator = RunCoordinator(run, max_parallel=2)
    first = coordinator.request(pair, RunRequest("schedule"))
    assert listing.wait(10)
    later = [coordinator.request(pair, RunRequest("watch", hints=frozenset({p}))) for p in ("a", "b")]
    assert later[0] is later[1] is not first
    release.set()
    assert later[0] is not None and later[0].wait(10) is not None
    assert len(calls) == 2 and calls[1].hints == frozenset({"a", "b"})


def test_paused_pairs_get_no_runs_and_the_parallel_bound_holds(tmp_path: Path) -> None:
    running, peak = [0], [0]
    lock = threading.Lock()

    def run(pair: PairConfig, request: RunRequest, emit: Callable[[str, dict[str, object]], None]) -> RunResult:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return RunResult(pair.key, Outcome.OK)

    coordinator = RunCoordinator(run, max_parallel=2)
    pairs = [_pair(tmp_path / str(i), f"user{i}") for i in range(6)]
    coordinator.pause([pairs[0].key])
    assert coordinator.request(pairs[0], RunRequest()) is None
    runs = [coordinator.request(p, RunRequest()) for p in pairs[1:]]
    for run_ in runs:
        assert run_ is not None and run_.wait(10) is not None
    assert peak[0] == 2


def test_a_failing_result_handler_does_not_stop_the_worker(tmp_path: Path) -> None:
    coordinator = RunCoordinator(lambda pair, request, emit: RunResult(pair.key, Outcome.OK), max_parallel=1)

    def on_result(pair: PairConfig, result: RunResult, reason: str) -> None:
        raise RuntimeError("a bug in the result's handling")

    coordinator.on_result = on_result
    for i in range(2):  # one worker: the second run needs the worker the first one's handler failed in
        run = coordinator.request(_pair(tmp_path / str(i), f"user{i}"), RunRequest())
        assert run is not None and run.wait(10) is not None


def test_debouncer_waits_for_quiet_and_turns_floods_into_a_full_run() -> None:
    fired: list[tuple[str, frozenset[str] | None, str]] = []
    debouncer = Debouncer(lambda key, hints, why: fired.append((key, hints, why)), quiet_s=0.3, max_delay_s=5)
    debouncer.start()
    try:
        for name in ("a", "b", "a"):
            debouncer.add("alice/default", name)
            time.sleep(0.1)
        assert fired == []
        wait_for(lambda: fired, 5, "the debounced run")
        assert fired == [("alice/default", frozenset({"a", "b"}), "2 changed path(s)")]
        for i in range(MAX_HINTS + 1):
            debouncer.add("bob/default", f"f{i}")
        wait_for(lambda: len(fired) == 2, 5, "the full run")
        assert fired[1][1] is None and "more than" in fired[1][2]
    finally:
        debouncer.close()


def test_lost_events_ask_for_full_runs(tmp_path: Path) -> None:
    pair = _pair(tmp_path)
    fired: list[tuple[str, frozenset[str] | None, str]] = []
    watcher = Watcher(lambda key, hints, why: fired.append((key, hints, why)), quiet_s=0.1)
    watcher.start([pair])
    try:
        assert watcher.state[pair.key] == "watching files, bucket"
        assert watcher.inotify is not None
        watcher.inotify.on_overflow("the inotify queue overflowed")  # what the reader does on IN_Q_OVERFLOW
        wait_for(lambda: fired, 5, "a full run after an overflow")
        assert fired[0][0] == pair.key and fired[0][1] is None
        (tmp_path / "files" / "x.txt").write_text("x")
        wait_for(lambda: any(h == frozenset({"x.txt"}) for _, h, _ in fired), 5, "a hinted run for x.txt")
    finally:
        watcher.stop()


def test_trees_sharing_folders_each_get_their_events(tmp_path: Path) -> None:
    """Two pairs may overlap (allow_overlap): a folder in both trees is one inotify watch, and
    its events reach both; one tree dropping the folder leaves the other's watch."""
    from syncd.watch.inotify import Inotify

    inner = tmp_path / "outer" / "inner"
    (inner / "sub").mkdir(parents=True)
    seen: dict[str, list[tuple[str, str]]] = {"outer": [], "inner": []}
    inotify = Inotify(lambda why: None)
    for name, root in (("outer", tmp_path / "outer"), ("inner", inner)):
        inotify.add_tree(str(root), lambda p, k, n=name: seen[n].append((p, k)), lambda why: None, lambda p: False)
    inotify.start()
    try:
        assert inotify.watches() == 3  # outer, inner, inner/sub: the shared ones once
        (inner / "sub" / "x.txt").write_text("x")
        path = str(inner / "sub" / "x.txt")
        wait_for(lambda: all((path, "created") in s for s in seen.values()), 5, "x.txt seen by both trees")
        (tmp_path / "outer" / "moved").mkdir()
        (inner / "sub").rename(tmp_path / "outer" / "moved" / "sub")  # out of inner, still in outer
        moved = str(tmp_path / "outer" / "moved" / "sub" / "y.txt")
        (tmp_path / "outer" / "moved" / "sub" / "y.txt").write_text("y")
        wait_for(lambda: (moved, "created") in seen["outer"], 5, "y.txt seen by the outer tree")
        assert not any(p.endswith("y.txt") for p, _ in seen["inner"])
        assert inotify.watches() == 4  # outer, inner, moved, moved/sub: inner's drop left outer's watch
    finally:
        inotify.close()


def test_sd_notify_writes_a_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"syncd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listen:
        listen.bind("\0" + name)
        listen.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1\nSTATUS=ok")
        assert listen.recv(100) == b"READY=1\nSTATUS=ok"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None


def test_the_example_config_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "syncd.toml"
    (tmp_path / "syncd.toml").write_text(example.read_text())
    for secret in ("alice.webdav", "alice.access", "bob.access"):
        (tmp_path / secret).write_text("not-a-real-secret\n")
    from syncd.errors import ConfigError

    try:
        config = load_config(tmp_path / "syncd.toml")
    except ConfigError as exc:
        if "is not available" in str(exc):
            pytest.skip(f"a remote module is not installed here: {exc}")
        raise
    assert [p.key for p in config.pairs] == ["alice/default", "bob/default", "bob/backup"]
    assert [p.files.type for p in config.pairs] == ["webdav", "local", "local"]
