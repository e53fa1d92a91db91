"""When pairs run: APScheduler interval jobs, and one coordinator every run goes through.

Every run of a pair — scheduled, asked for by ``syncd now``, or triggered by the watcher —
is requested from :class:`RunCoordinator`, which keeps these promises:

* one run per pair at a time in this process (the engine's flock also guards against other
  processes); a request for a pair whose run has not started listing yet *joins* that run
  (its requester gets the same progress and result), otherwise it is queued as one follow-up
  run that later requests join too — so two ``now`` at once run once, and a change made
  before a request is always seen by the run that answers it;
* at most ``max_parallel`` pairs run at once, on as many worker threads (not a thread per
  pair or per request); the others wait in one line and are served first come, first served,
  a pair's follow-up run going to the back of the line (no pair can starve the others);
* paused pairs get no scheduled or watcher runs (``now`` is refused by the daemon).

:class:`PairScheduler` holds one APScheduler job per pair (``interval`` from the pair,
``max_instances=1``, ``coalesce=True``), each at its own fixed phase of the interval (a hash of
the pair's key: N pairs are spread evenly, not crowded into the minute they started in). A job
only asks the coordinator for a run: a firing while the pair's run is queued joins it, so a run
longer than the interval never stacks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import PairConfig
from syncd.engine.scans import phase
from syncd.models import Outcome, Side
from syncd.outcomes import RunResult

log = logging.getLogger("syncd.scheduler")

Listener = Callable[[dict[str, Any]], None]
STOPPING_MESSAGE = "the daemon is stopping"
FIRST_RUN_SPREAD_S = 15.0  # first full runs after start are spread over this many seconds


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What a run should do. ``hints`` None means a full run (list both sides)."""

    reason: str = "schedule"  # schedule | now | watch | resume | fallback
    dry_run: bool = False
    force: bool = False
    hints: frozenset[str] | None = None
    unchanged: frozenset[Side] = frozenset()  # sides a trusted watcher saw unchanged: not listed

    @property
    def full(self) -> bool:
        """Both sides listed in full."""
        return self.hints is None and not self.unchanged

    def covers(self, other: RunRequest) -> bool:
        """A run of ``self`` does everything a run of ``other`` would."""
        if (self.dry_run, self.force) != (other.dry_run, other.force) or not self.unchanged <= other.unchanged:
            return False
        return self.hints is None or (other.hints is not None and other.hints <= self.hints)

    def merged(self, other: RunRequest) -> RunRequest | None:
        """One request doing both, or None when they cannot share a run."""
        if (self.dry_run, self.force) != (other.dry_run, other.force):
            return None
        hints = None if self.hints is None or other.hints is None else self.hints | other.hints
        reason = self.reason if self.reason == other.reason else f"{self.reason}+{other.reason}"
        return replace(self, hints=hints, reason=reason, unchanged=self.unchanged & other.unchanged)


RunFn = Callable[[PairConfig, RunRequest, Callable[[str, dict[str, object]], None]], RunResult]


@dataclass(frozen=True, slots=True)
class LastRun:
    """How a pair's last run ended, kept for ``status``."""

    result: RunResult
    finished_at: float  # time.time()
    reason: str  # the request's reason: schedule, now, watch, ...


@dataclass(slots=True)
class Run:
    """One run of one pair, shared by everyone who asked for it."""

    pair: PairConfig
    request: RunRequest
    listeners: list[Listener] = field(default_factory=list)
    state: str = "queued"  # queued | running | done
    listing_started: bool = False
    phase: str = "queued"
    actions_total: int = 0
    actions_done: int = 0
    started_at: float | None = None
    result: RunResult | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def emit(self, name: str, data: dict[str, object]) -> None:
        self.phase = name
        if name == "listing":
            self.listing_started = True
        elif name == "applying":
            self.actions_total = int(str(data.get("actions", 0)))
        elif name in ("done", "error"):
            self.actions_done += 1
        message = {"event": name, "pair": self.pair.key, **data}
        for listener in list(self.listeners):
            listener(message)

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """The run's result once it ended; None if ``timeout`` passed first."""
        self.finished.wait(timeout)
        return self.result

    def stopped(self) -> RunResult:
        """The result of this run when the daemon stops before it starts."""
        return RunResult.unreported(self.pair.key, Outcome.INTERRUPTED, STOPPING_MESSAGE)


class RunCoordinator:
    def __init__(self, run_fn: RunFn, max_parallel: int) -> None:
        self.run_fn = run_fn
        self.max_parallel = max(1, max_parallel)
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.ready: deque[Run] = deque()  # runs waiting for a worker, oldest first (FIFO: fair)
        self.workers: list[threading.Thread] = []
        self.current: dict[str, Run] = {}
        self.pending: dict[str, list[Run]] = {}
        self.paused: set[str] = set()
        self.last: dict[str, LastRun] = {}
        self.stopping = False
        self.on_result: Callable[[PairConfig, RunResult, str], None] | None = None

    def request(
        self, pair: PairConfig, request: RunRequest, *, listener: Listener | None = None, even_if_paused: bool = False
    ) -> Run | None:
        """Join or queue a run of ``pair``. None when the pair is paused or the daemon stops."""
        with self.lock:
            if self.stopping or (pair.key in self.paused and not even_if_paused):
                return None
            run, how = self._join_or_queue(pair, request)
            if listener is not None:
                run.listeners.append(listener)
                if how != "started":
                    listener({"event": how, "pair": pair.key, "reason": run.request.reason})
        return run

    def _join_or_queue(self, pair: PairConfig, request: RunRequest) -> tuple[Run, str]:
        current = self.current.get(pair.key)
        if current is None:
            run = Run(pair, request)
            self.current[pair.key] = run
            self._enqueue(run)
            return run, "started"
        if current.state == "queued":  # not handed to the engine yet: its request can still grow
            merged = current.request.merged(request)
            if merged is not None:
                current.request = merged
                return current, "joined"
        elif not current.listing_started and current.request.covers(request):
            return current, "joined"
        queue = self.pending.setdefault(pair.key, [])
        for waiting in queue:
            merged = waiting.request.merged(request)
            if merged is not None:
                waiting.request, waiting.pair = merged, pair
                return waiting, "queued"
        run = Run(pair, request)
        queue.append(run)
        return run, "queued"

    def _enqueue(self, run: Run) -> None:
        """Put ``run`` at the back of the line (the lock held); start a worker if one is missing."""
        self.ready.append(run)
        if len(self.workers) < self.max_parallel:
            worker = threading.Thread(target=self._work, name=f"run worker {len(self.workers)}", daemon=True)
            self.workers.append(worker)
            worker.start()
        self.wake.notify()

    def _work(self) -> None:
        """One of the ``max_parallel`` workers: take the oldest ready run, run it, again."""
        while True:
            with self.lock:
                while not self.ready and not self.stopping:
                    self.wake.wait()
                if not self.ready:
                    return
                run = self.ready.popleft()
                run.state = "running"
                run.started_at = time.time()
            run.result = self._call(run)
            self._finish(run)

    def _call(self, run: Run) -> RunResult:
        try:
            return self.run_fn(run.pair, run.request, run.emit)
        except Exception as exc:  # a bug in one run must not stop the others
            log.exception("run failed", extra={"pair": run.pair.key})
            return RunResult.unreported(run.pair.key, Outcome.FATAL, f"internal error: {exc}")

    def _finish(self, run: Run) -> None:
        assert run.result is not None
        with self.lock:
            run.state = "done"
            self.last[run.pair.key] = LastRun(run.result, time.time(), run.request.reason)
            queue = self.pending.get(run.pair.key) or []
            following = queue.pop(0) if queue else None
            if following is None:
                self.current.pop(run.pair.key, None)
            else:  # to the back of the line: a busy pair cannot starve the others
                self.current[run.pair.key] = following
                self._enqueue(following)
        run.finished.set()
        if self.on_result is not None:
            try:
                self.on_result(run.pair, run.result, run.request.reason)
            except Exception:  # the worker serves the next runs whatever the result's handling does
                log.exception("a run's result could not be handled", extra={"pair": run.pair.key})

    def pause(self, keys: Iterable[str]) -> None:
        with self.lock:
            self.paused.update(keys)

    def resume(self, keys: Iterable[str]) -> None:
        with self.lock:
            self.paused.difference_update(keys)

    def busy(self) -> list[str]:
        with self.lock:
            return sorted(self.current)

    def stop(self) -> None:
        """Refuse new runs and drop queued ones (their requesters get 'interrupted')."""
        with self.lock:
            self.stopping = True
            dropped = [run for queue in self.pending.values() for run in queue] + list(self.ready)
            self.pending.clear()
            for run in self.ready:
                self.current.pop(run.pair.key, None)
            self.ready.clear()
            self.wake.notify_all()
        for run in dropped:
            run.result = run.stopped()
            run.state = "done"
            run.finished.set()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.current:
                    return True
            time.sleep(0.05)
        return False

    def last_run(self, key: str) -> LastRun | None:
        """How the pair's last run in this process ended; None before its first."""
        with self.lock:
            return self.last.get(key)

    def describe(self, key: str) -> dict[str, Any]:
        """The pair's state for ``status``: paused, and what runs now (see :meth:`last_run`)."""
        with self.lock:
            run = self.current.get(key)
            info: dict[str, Any] = {"paused": key in self.paused}
            if run is not None:
                info["running"] = {
                    "state": run.state,
                    "phase": run.phase,
                    "reason": run.request.reason,
                    "hinted": None if run.request.hints is None else len(run.request.hints),
                    "actions": run.actions_total,
                    "done": run.actions_done,
                    "started_at": run.started_at,
                }
                info["queued"] = len(self.pending.get(key, []))
        return info


def next_firing(key: str, interval_s: float, now: float) -> float:
    """The first time after ``now`` (epoch seconds) at the pair's phase of its interval: a
    fixed point from a hash of its key (:func:`syncd.engine.scans.phase`), so that N pairs
    are spread evenly over the interval, the same way at every start."""
    offset = phase(key, interval_s)
    cycles = math.floor((now - offset) / interval_s) + 1
    return cycles * interval_s + offset


class PairScheduler:
    """One APScheduler interval job per pair; ``on_due(key)`` runs on the job's thread and
    only asks for a run (never waits for it). Each pair fires at its own :func:`phase` of its
    interval; the catch-up run of a pair that is new (at start, on reload) is a one-time job
    at its phase of ``first_spread_s``."""

    def __init__(self, on_due: Callable[[str], None], workers: int, first_spread_s: float = FIRST_RUN_SPREAD_S) -> None:
        self.on_due = on_due
        self.first_spread_s = first_spread_s
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(2, workers))},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)

    def alive(self) -> bool:
        return bool(self.scheduler.running)

    def set_pairs(self, pairs: Sequence[PairConfig], paused: Collection[str], soon: Collection[str]) -> None:
        """Replace every job by one per pair in ``pairs``. Pairs in ``soon`` run within
        ``first_spread_s`` (at start, or new on reload: catch up with what changed meanwhile);
        every pair then fires at its phase of its interval."""
        for job in self.scheduler.get_jobs():
            job.remove()
        now = time.time()
        for pair in pairs:
            first = next_firing(pair.key, pair.interval_s, now)
            self.scheduler.add_job(
                self.on_due,
                IntervalTrigger(seconds=pair.interval_s, timezone=UTC),
                args=(pair.key,),
                id=pair.key,
                name=f"sync {pair.key}",
                next_run_time=datetime.fromtimestamp(first, UTC),
            )
            if pair.key in soon:
                spread = min(self.first_spread_s, pair.interval_s)
                self.scheduler.add_job(
                    self.on_due,
                    DateTrigger(datetime.fromtimestamp(now + phase(pair.key, spread), UTC)),
                    args=(pair.key,),
                    id=f"{pair.key}#first",
                    name=f"first sync {pair.key}",
                )
            if pair.key in paused:
                self.pause(pair.key)

    def firings(self) -> list[tuple[str, float]]:
        """(pair key, next firing) of every interval job: how the schedule is spread."""
        found = []
        for job in self.scheduler.get_jobs():
            when = getattr(job, "next_run_time", None)
            if "#" not in job.id and isinstance(when, datetime):
                found.append((job.id, when.timestamp()))
        return found

    def pause(self, key: str) -> None:
        for job_id in (key, f"{key}#first"):
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.pause_job(job_id)

    def resume(self, key: str) -> None:
        for job_id in (key, f"{key}#first"):
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.resume_job(job_id)

    def next_run(self, key: str) -> float | None:
        job = self.scheduler.get_job(key)
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when.timestamp() if isinstance(when, datetime) else None
