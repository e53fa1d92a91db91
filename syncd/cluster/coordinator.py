"""The run coordinator of a daemon in a cluster: every run request becomes a procrastinate
job, and this daemon's procrastinate worker runs the jobs it takes on its local coordinator.

* ``request`` (a scheduled firing, a watcher's hint, ``syncd now``, a resume) defers a job
  for the pair (:mod:`syncd.cluster.jobs`): lock = the pair's key, so no two daemons run one
  pair at once; queueing lock = the pair's key, so a request while a job waits folds into it
  (hints merged). A scheduled firing is deferred by the one daemon that claims its slot. A dry
  run changes nothing: it runs here, on the local coordinator, as without a cluster.
* the worker (its own thread and asyncio loop) takes jobs from the shared line and from this
  daemon's home line, where the jobs of the pairs it ran last wait (its index of them is
  current) while it lives. A pair's index follows it to another daemon through the cluster
  (:mod:`syncd.cluster.indexes`): taken before a run, saved after one that changed it. A
  pair whose local folder is missing here is retried in the shared line a few seconds later
  (any daemon may take it), up to :data:`MAX_ATTEMPTS` times. Each run is written to the run log.
* heartbeats every :data:`HEARTBEAT_S`; a job whose worker's heartbeat is older than
  :data:`STALLED_S` (a daemon killed, its host gone) is put back in the shared line by
  whichever daemon recovers first, every :data:`RECOVER_EVERY_S`, with the waiting jobs of a
  daemon silent that long: a dead daemon's pairs are back in line within STALLED_S +
  RECOVER_EVERY_S (20 s) and run when a worker is free.
* a run holds its pair's fence (:mod:`syncd.cluster.fence`) and stops when it loses it: a
  daemon cut off from the database never runs a pair beside the daemon that took it over.
* ``syncd pause``/``resume`` hold for every daemon (``syncd_cluster_paused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from syncd.cluster.database import ClusterDatabase, psycopg_url, where
from syncd.cluster.fence import PairFence
from syncd.cluster.indexes import NotNow, PairIndexes
from syncd.cluster.jobs import (
    QUEUE,
    TASK_NAME,
    home_queue,
    host_name,
    job_args,
    merged_args,
    period_slot,
    queueing_lock,
    request_of,
    unreachable,
)
from syncd.config import DaemonSection, PairConfig
from syncd.control import result_from_json, result_to_json
from syncd.errors import FatalError, ProtocolError
from syncd.models import Outcome
from syncd.outcomes import ExitCode, RunResult
from syncd.remotes.settings import read_secret
from syncd.scheduler import Listener, Run, RunCoordinator, RunFn, RunRequest

if TYPE_CHECKING:
    from procrastinate import JobContext

log = logging.getLogger("syncd.cluster")

HEARTBEAT_S = 3.0
STALLED_S = 15.0  # > several heartbeats: a busy host is not taken for a dead one
RECOVER_EVERY_S = 5.0
MAX_ATTEMPTS = 20  # a pair no daemon can reach: tried this many times, RETRY_WAIT_S apart
RETRY_WAIT_S = 3
RESTART_S = 5.0
RUN_LOG_DAYS = 30  # the run log keeps this many days
PRUNE_EVERY_S = 3600.0
POLL_S = 0.25  # `syncd now` waits for its job's run to be logged
VIEW_FOR_S = 2.0  # status: the cluster view is read at most this often


class Elsewhere(Exception):
    """Raised by a job this daemon cannot run now: procrastinate retries it in ``queue`` (by
    default the shared line: anywhere)."""

    def __init__(self, why: str, queue: str = QUEUE) -> None:
        super().__init__(why)
        self.queue = queue


class ClusterRun:
    """What ``request`` returns in a cluster: the job, as ``syncd now`` waits for it."""

    def __init__(self, coordinator: ClusterCoordinator, pair: PairConfig, job_id: int) -> None:
        self.coordinator, self.pair, self.job_id = coordinator, pair, job_id

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """The job's result once its run is logged and the job is over; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            if self.coordinator.stopping:
                return RunResult.unreported(self.pair.key, Outcome.INTERRUPTED, "the daemon is stopping")
            status, result = self.coordinator.db.job_result(self.job_id)
            if status in ("aborted", "succeeded", None) and result is None:  # folded into another job
                following = self.coordinator.db.current_job(self.pair.key)
                if following is not None:
                    self.job_id = following
                    continue
            if status not in ("todo", "doing"):
                if result is not None:
                    ended: RunResult = result_from_json(result)
                    return ended
                message = f"job {self.job_id} ended {status or 'deleted'} without a run"
                return RunResult.unreported(self.pair.key, Outcome.FATAL, message)
            time.sleep(POLL_S)
        return None


class ClusterCoordinator(RunCoordinator):
    """A :class:`RunCoordinator` whose requests go through the cluster's queue; the jobs this
    daemon's worker takes run on the inherited local coordinator."""

    def __init__(
        self, run_fn: RunFn, max_parallel: int, daemon: DaemonSection, pairs: Callable[[], list[PairConfig]]
    ) -> None:
        super().__init__(run_fn, max_parallel)
        from procrastinate import App, SyncPsycopgConnector
        from procrastinate.schema import SchemaManager

        self.url = psycopg_url(cluster_url(daemon))
        self.where = where(self.url)
        self.host = host_name(daemon)
        self.pairs = pairs
        self.indexes = PairIndexes(self.host)
        logging.getLogger("procrastinate").setLevel(logging.WARNING)  # a line per job is noise
        self.defer_app = App(connector=SyncPsycopgConnector(conninfo=self.url, min_size=1, max_size=4))
        try:
            self.defer_app.open()
            self.db = ClusterDatabase(self.defer_app.connector.pool)  # type: ignore[attr-defined]
            self.db.create_schema(SchemaManager.get_schema())
        except Exception as exc:  # psycopg's and the pool's errors: the daemon cannot serve
            raise FatalError(f"cluster database {self.where}: cannot connect: {exc}") from exc
        self.view: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})
        self.paused_view: dict[str, dict[str, Any]] = {}  # pair key -> paused cluster-wide: by, since
        self.paused_at = 0.0  # time.monotonic() of the last read of the pauses
        self.fences: dict[str, PairFence] = {}  # pair key -> the fence of its run here
        self.prune_at = 0.0  # time.monotonic() of the next pruning of the run log
        self.loop: asyncio.AbstractEventLoop | None = None
        self.quit: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._serve, name="cluster worker", daemon=True)
        self.thread.start()
        log.info("cluster: %s on %s, worker %s", self.host, self.where, os.getpid())

    # -- requests: jobs -------------------------------------------------------------------

    def request(
        self, pair: PairConfig, request: RunRequest, *, listener: Listener | None = None, even_if_paused: bool = False
    ) -> Run | None:
        """Defer (or fold into the waiting) job for ``pair``; a dry run runs here. None when
        the pair is paused here, the daemon stops, or another daemon claimed this firing."""
        if request.dry_run:
            self.indexes.before_dry_run(pair, self.db.pool)  # its plan: from the pair's latest index
            return super().request(pair, request, listener=listener, even_if_paused=even_if_paused)
        with self.lock:
            if self.stopping or (pair.key in self.paused and not even_if_paused):
                return None
        if not even_if_paused and request.reason != "now" and pair.key in self._paused_view():
            return None  # paused cluster-wide (`syncd now` gets its job's "paused" result)
        slot = period_slot(pair.key, pair.interval_s, time.time()) if request.reason == "schedule" else None
        try:
            job_id = self._defer(pair.key, request, slot)
        except Exception as exc:  # the database away: a scheduled or watcher run comes again
            message = f"cluster database {self.where}: cannot queue a run: {exc}"
            if request.reason == "now":
                raise ProtocolError(message, ExitCode.FATAL) from exc
            log.warning("%s", message, extra={"pair": pair.key})
            return None
        if job_id is None:
            return None
        if listener is not None:
            listener({"event": "queued", "pair": pair.key, "reason": request.reason, "job": job_id})
        return ClusterRun(self, pair, job_id)  # type: ignore[return-value]  # waited on like a Run

    def _defer(self, key: str, request: RunRequest, slot: int | None = None) -> int | None:
        """The id of the job that will run ``request``: a new one, or the waiting one it folded
        into. With ``slot`` (a scheduled firing) None when another daemon deferred that firing."""
        from procrastinate.exceptions import AlreadyEnqueued

        args, lock = job_args(key, request), queueing_lock(key, request)
        queue = self.db.queue_for(key, STALLED_S)
        for _ in range(20):  # each turn: a worker took the waiting job between our two steps
            try:
                if slot is not None:
                    return self._defer_once(key, slot, args, lock, queue)
                deferrer = self.defer_app.configure_task(TASK_NAME, lock=key, queueing_lock=lock, queue=queue)
                return int(deferrer.defer(**args))
            except AlreadyEnqueued:
                job_id = self.db.fold_into_waiting(lock, lambda waiting: merged_args(waiting, args))
                if job_id is not None:
                    return job_id
        raise FatalError(f"cannot queue a run of {key}: its waiting job kept changing")

    def _defer_once(self, key: str, slot: int, args: dict[str, Any], lock: str, queue: str) -> int | None:
        """procrastinate's periodic defer: the job and the record of its firing in one
        statement, so a firing is deferred once however many daemons fire it."""
        from procrastinate import exceptions, manager, sql

        connector = self.defer_app.connector
        try:
            row = connector.execute_query_one(
                query=sql.queries["defer_periodic_job"],
                task_name=TASK_NAME,
                defer_timestamp=slot,
                periodic_id=key,
                queue=queue,
                priority=0,
                lock=key,
                queueing_lock=lock,
                args=args,
            )
        except exceptions.UniqueViolation as exc:
            if exc.constraint_name == manager.QUEUEING_LOCK_CONSTRAINT:
                raise exceptions.AlreadyEnqueued(lock) from exc
            raise
        return None if row["id"] is None else int(row["id"])

    # -- the worker: jobs taken by this daemon --------------------------------------------

    def _serve(self) -> None:
        """The worker, started again :data:`RESTART_S` after it fails (the database away)."""
        while not self.stopping:
            try:
                asyncio.run(self._work_async())
            except Exception:
                log.exception("cluster: the worker stopped; starting it again in %.0fs", RESTART_S)
                time.sleep(RESTART_S)

    async def _work_async(self) -> None:
        from procrastinate import App, PsycopgConnector

        self.loop, self.quit = asyncio.get_running_loop(), asyncio.Event()
        app = App(connector=PsycopgConnector(conninfo=self.url, min_size=1, max_size=self.max_parallel + 2))
        app.task(name=TASK_NAME, queue=QUEUE, pass_context=True, retry=_retry_strategy())(self._job)
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE, home_queue(self.host)],
                    name=self.host,
                    concurrency=self.max_parallel,
                    install_signal_handlers=False,
                    update_heartbeat_interval=HEARTBEAT_S,
                    stalled_worker_timeout=STALLED_S,
                    delete_jobs="successful",
                )
            )
            while not self.quit.is_set() and not worker.done():
                await self._recover()  # and say this daemon is alive
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.quit.wait(), RECOVER_EVERY_S)
            if worker.done() and not self.quit.is_set():
                worker.result()  # its error, if any
                raise RuntimeError("the procrastinate worker ended")
            worker.cancel()  # procrastinate's graceful stop: the jobs in flight end first
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _recover(self) -> None:
        try:
            await asyncio.to_thread(self.db.heartbeat, self.host, os.getpid())
            if time.monotonic() >= self.prune_at:
                self.prune_at = time.monotonic() + PRUNE_EVERY_S
                await asyncio.to_thread(self.db.prune, RUN_LOG_DAYS)
            for job_id, key in await asyncio.to_thread(self.db.recover_stalled, STALLED_S):
                log.warning("job %d: its daemon stopped answering; back in line", job_id, extra={"pair": key})
        except Exception as exc:  # the database away for a moment: the next pass tries again
            log.warning("cluster: stalled-job recovery failed: %s", exc)

    def _retry_queue(self, attempts: int) -> str:
        """Where a job this daemon cannot run waits next: the home line of another live daemon,
        a different one at each attempt, so the job does not come back here while this daemon
        idles and the others are busy (in the shared line the idle daemon takes it first, and a
        pair only some hosts reach used up its attempts on the one that cannot)."""
        others = [host for host in self.db.live_hosts(STALLED_S) if host != self.host]
        return home_queue(others[attempts % len(others)]) if others else QUEUE

    def _job(self, context: JobContext, /, **args: Any) -> None:
        """One job: run the pair here and log the run; :class:`Elsewhere` to be retried."""
        key, request = request_of(args)
        job = context.job
        pair = next((p for p in self.pairs() if p.key == key), None)
        why = f"{key} is not in this daemon's config" if pair is None else unreachable(pair)
        if why is not None:
            if job.attempts + 1 < MAX_ATTEMPTS:
                raise Elsewhere(why, self._retry_queue(job.attempts))
            failed = RunResult.unreported(key, Outcome.FATAL, f"no daemon could run it: {why}")
            self.db.run_ended(self.db.run_started(key, self.host, os.getpid(), job.id, request.reason), _row(failed))
            return
        assert pair is not None
        paused_by = self.db.paused_by(key)
        if paused_by is not None:  # `syncd pause` asked of any daemon holds for every daemon
            result = RunResult.unreported(key, Outcome.PAUSED, f"paused cluster-wide (asked of {paused_by})")
            self.db.run_ended(self.db.run_started(key, self.host, os.getpid(), job.id, request.reason), _row(result))
            return
        fence = PairFence(self.url, key)
        try:
            fenced_in = fence.acquire()
        except Exception as exc:  # the database away: later, anywhere
            raise Elsewhere(f"cannot take the lock of {key}: {exc}") from exc
        if not fenced_in:  # a daemon out of touch with the database still runs it
            self._again(key, request, args, f"{key} still runs on another daemon (its lock is held)")
            return
        with self.lock:
            self.fences[key] = fence
        try:
            try:
                self.indexes.before_run(pair, fence)
            except NotNow as exc:  # later, anywhere: not on an index that may be stale
                raise Elsewhere(str(exc)) from exc
            result = self._run_fenced(pair, request, job.id, fence)
        finally:
            with self.lock:
                self.fences.pop(key, None)
            fence.release()
        if result.outcome is Outcome.INTERRUPTED and (self.stopping or fence.lost.is_set()):
            self._again(key, request, args, f"interrupted: {result.message}")  # another daemon (or this one) ends it

    def _again(self, key: str, request: RunRequest, args: dict[str, Any], why: str) -> None:
        """Run this job's request later, anywhere: folded into the job waiting for the pair if
        one does (it cannot go back in line beside it: one waiting job per queueing lock), else
        retried (:class:`Elsewhere`)."""
        if self.db.fold_into_waiting(queueing_lock(key, request), lambda waiting: merged_args(waiting, args)):
            log.info("%s; folded into the waiting run", why, extra={"pair": key})
            return
        raise Elsewhere(why)

    def _run_fenced(self, pair: PairConfig, request: RunRequest, job_id: int | None, fence: PairFence) -> RunResult:
        """Run ``pair`` here holding its ``fence``, and log the run."""
        run_id = self.db.run_started(pair.key, self.host, os.getpid(), job_id, request.reason)
        run = super().request(pair, request, even_if_paused=True)
        ended = run.wait() if run is not None else None
        result = ended or RunResult.unreported(pair.key, Outcome.INTERRUPTED, "the daemon is stopping")
        if fence.lost.is_set() and result.outcome is Outcome.INTERRUPTED:
            result = dataclasses.replace(result, message=f"stopped: lost the pair's cluster lock ({fence.why})")
        self.indexes.after_run(pair, result, fence)  # before the run is logged: the next run may be elsewhere
        try:
            self.db.run_ended(run_id, _row(result))
        except Exception as exc:  # the database away: recovery marks the run lost
            log.warning("cluster: cannot log the end of a run: %s", exc, extra={"pair": pair.key})
        return result

    def fenced(self, key: str) -> bool:
        """Whether the run of ``key`` here must stop now: its cluster lock is lost (checked
        between two actions, as the daemon's stop)."""
        with self.lock:
            fence = self.fences.get(key)
        return fence is not None and not fence.held()

    # -- pause: cluster-wide ----------------------------------------------------------------

    def pause(self, keys: Iterable[str]) -> None:
        """Pause ``keys`` here and for every daemon of the cluster."""
        keys = list(keys)
        super().pause(keys)
        try:
            self.db.pause(keys, self.host)
        except Exception as exc:  # the database away: paused here only
            log.warning("cluster: cannot pause %s for the other daemons: %s", ", ".join(keys), exc)
        self.paused_at = 0.0

    def resume(self, keys: Iterable[str]) -> None:
        """Resume ``keys`` here and for every daemon of the cluster."""
        keys = list(keys)
        super().resume(keys)
        try:
            self.db.resume(keys)
        except Exception as exc:  # the database away: the pause holds elsewhere
            log.warning("cluster: cannot resume %s for the other daemons: %s", ", ".join(keys), exc)
        with self.lock:
            self.paused_view = {k: v for k, v in self.paused_view.items() if k not in keys}

    def _paused_view(self) -> dict[str, dict[str, Any]]:
        """The pairs paused cluster-wide, read at most every :data:`VIEW_FOR_S`."""
        if time.monotonic() - self.paused_at > VIEW_FOR_S:
            try:
                view = self.db.paused()
            except Exception as exc:  # the database away: the last view holds
                log.warning("cluster: cannot read the pauses: %s", exc)
            else:
                with self.lock:  # the database says which pairs are paused: a resume elsewhere holds here
                    self.paused_view, self.paused_at = view, time.monotonic()
                    self.paused = set(view)
        return self.paused_view

    # -- status and stop ------------------------------------------------------------------

    def describe(self, key: str) -> dict[str, Any]:
        """The local state, and ``cluster``: which host ran the pair last and which runs it now."""
        info = super().describe(key)
        stamp, view = self.view
        if time.monotonic() - stamp > VIEW_FOR_S:
            try:
                view = self.db.pairs_view()
            except Exception as exc:  # status must answer even with the database away
                log.warning("cluster: cannot read the run log: %s", exc)
            self.view = (time.monotonic(), view)
        info["cluster"] = {"host": self.host, **view.get(key, {"last_host": None, "running_on": None})}
        paused = self._paused_view().get(key)
        info["cluster"]["paused_by"] = None if paused is None else paused["by"]
        info["paused"] = info["paused"] or paused is not None
        return info

    def stop(self) -> None:
        """Refuse new requests, and stop the worker once its jobs in flight end."""
        super().stop()
        try:
            self.db.leave(self.host)
        except Exception as exc:  # the database away: the others move the jobs after STALLED_S
            log.warning("cluster: cannot hand this daemon's waiting jobs over: %s", exc)
        if self.loop is not None and self.quit is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: the worker is between two starts
                self.loop.call_soon_threadsafe(self.quit.set)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        idle = super().wait_idle(timeout)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if not self.thread.is_alive():
            self.defer_app.close()
        return idle and not self.thread.is_alive()

    def worker_alive(self) -> bool:
        return self.thread.is_alive()


def cluster_url(daemon: DaemonSection) -> str:
    """The PostgreSQL URL: ``[daemon] cluster``, or read from ``cluster_url_file``."""
    if daemon.cluster is not None:
        return daemon.cluster
    return read_secret(file=daemon.cluster_url_file, env=None, what="daemon.cluster_url_file")


def _row(result: RunResult) -> dict[str, Any]:
    return result_to_json(result)


def _retry_strategy() -> Any:
    """Retry :class:`Elsewhere` jobs in the line the exception names (another daemon's home
    line, or the shared one), :data:`RETRY_WAIT_S` apart, at most :data:`MAX_ATTEMPTS` times:
    the home line of a daemon that cannot run the pair would keep it there."""
    from procrastinate import BaseRetryStrategy, RetryDecision

    class ToTheSharedLine(BaseRetryStrategy):
        def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
            if not isinstance(exception, Elsewhere) or job.attempts + 1 >= MAX_ATTEMPTS:
                return None
            return RetryDecision(retry_in={"seconds": RETRY_WAIT_S}, queue=exception.queue)

    return ToTheSharedLine()
