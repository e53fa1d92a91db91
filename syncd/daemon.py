"""``syncd run``: the service. Wires the scheduler, the watcher and the control socket
around the engine, and talks to systemd.

Lifecycle:

* start: load the config (an error exits 4 with the message), listen on the control socket,
  start the scheduler (each pair's first full run comes within seconds: it catches up with
  what changed while the daemon was down) and the watcher, then ``READY=1``;
* SIGHUP (or ``syncd reload``): load the config again; a config with an error is reported
  (log, ``STATUS=``, the reload reply) and the running one stays;
* SIGTERM/SIGINT: stop accepting requests and triggers, ask runs in flight to stop between
  two actions (the engine has recorded every finished action), wait at most
  ``--stop-timeout`` seconds, exit. A run still busy then (one huge file) is abandoned: its
  data was going to a temp name, so nothing half-written is ever visible, and the next run
  redoes that one item.

Signals are blocked in every thread and taken by the main thread with ``sigtimedwait``, so
no handler ever runs in the middle of a lock.

One line per log event on stderr, each naming the pair (``user/pair``, ``-`` for the daemon
itself), names in it escaped by :func:`syncd.display.printable` (a name cannot forge a log
line); ``--log-format json`` writes one JSON object per line instead, with exact names.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd import __version__
from syncd.config import Config, PairConfig, load_config
from syncd.control import (
    MAX_ITEMS_IN_RESULT,
    ControlServer,
    Emit,
    Request,
    instance_socket,
    main_socket,
    mark_paused,
    paused_since,
    result_to_json,
)
from syncd.display import printable, size
from syncd.errors import ConfigError, FatalError, ProtocolError, SyncdError
from syncd.lock import pair_lock
from syncd.metrics import Metrics
from syncd.models import Outcome, Side
from syncd.outcomes import ExitCode, RunResult, exit_code
from syncd.scheduler import STOPPING_MESSAGE, LastRun, PairScheduler, RunCoordinator, RunRequest
from syncd.watch import Watcher

log = logging.getLogger("syncd.daemon")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
TICK_S = 1.0  # main loop period: signals are taken at once, this paces health checks
WATCHED_SIDES = {"files": Side.A, "bucket": Side.B}
ALL_SIDES = frozenset(Side)
STOP_MESSAGE = "interrupted: the daemon is stopping; finished actions are recorded, the next run goes on"
_INDEX_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    config_path: Path
    only: str | None = None  # serve one user (or user/pair) only: the syncd@USER.service instances
    socket: Path | None = None  # default: [daemon] socket, or <its folder>/<USER>.sock with --only
    log_format: str = "plain"
    quiet_s: float = 2.0
    max_parallel: int = 2
    metrics: str | None = None
    stop_timeout_s: float = 30.0
    first_run_within_s: float = 15.0  # first full runs after start, spread over this many seconds


class Stopping(KeyboardInterrupt):
    """Raised between two actions when the daemon stops: an interrupt, as Ctrl-C is to
    ``syncd now``. The engine records the finished actions and the run as "interrupted"."""

    def __init__(self) -> None:
        super().__init__(STOP_MESSAGE)


def socket_path(config: Config, options: DaemonOptions) -> Path:
    if options.socket is not None:
        return options.socket
    if options.only:
        return instance_socket(config, options.only.partition("/")[0])
    return main_socket(config)


# -- systemd -----------------------------------------------------------------------------------


def sd_notify(message: str) -> bool:
    """Send one datagram to systemd's ``$NOTIFY_SOCKET`` (no dependency needed). False when
    not run by systemd or the socket is gone: notifying is never worth failing for."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` when systemd asks this process for keep-alives."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2e6)
    except ValueError:
        return None


# -- logging -----------------------------------------------------------------------------------


class _PairField(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "pair"):
            record.pair = "-"
        return True


class _PlainFormatter(logging.Formatter):
    """``2024-05-01 12:00:00 INFO alice/default: message``, tracebacks folded into the line.
    Under journald (``$JOURNAL_STREAM``) the time is left to the journal. The message is
    escaped (a name holding a newline shows ``\\n``), so every line break left is the
    traceback's own, folded as `` | ``."""

    def __init__(self) -> None:
        stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
        super().__init__(stamp + "%(levelname)s %(pair)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line, *trace = super().format(record).split("\n")
        return " | ".join([line, *(printable(part) for part in trace)])


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pair = str(getattr(record, "pair", "-"))
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "user": pair.partition("/")[0] if pair != "-" else None,
            "pair": pair if pair != "-" else None,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_PairField())
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("apscheduler", "alembic"):  # a line per firing / per migration step is noise
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _pair_log(pair: str) -> dict[str, str]:
    return {"pair": pair}


# -- the daemon --------------------------------------------------------------------------------


class Daemon:
    def __init__(self, options: DaemonOptions, config: Config) -> None:
        self.options = options
        self.config = config
        self.pairs = config.select(options.only)
        self.started = time.time()
        self.stopping = threading.Event()
        self.reload_lock = threading.Lock()
        self.prepared: set[Path] = set()
        self.full_at: dict[str, float] = {}  # pair key -> start of its last full run that ended ok
        self.metrics = Metrics(options.metrics)
        self.coordinator = RunCoordinator(self._run_pair, options.max_parallel)
        self.fenced: Callable[[str], bool] = lambda _key: False  # a pair's run must stop (cluster lock lost)
        if config.daemon.clustered:  # requests become jobs that any daemon of the cluster runs
            from syncd.cluster.coordinator import ClusterCoordinator

            cluster = ClusterCoordinator(self._run_pair, options.max_parallel, config.daemon, lambda: self.pairs)
            self.coordinator, self.fenced = cluster, cluster.fenced
        self.coordinator.on_result = self._on_result
        self.scheduler = PairScheduler(
            self._on_due, workers=options.max_parallel + 2, first_spread_s=options.first_run_within_s
        )
        self.watcher = Watcher(
            self._on_dirty, quiet_s=options.quiet_s, ignored=[config.daemon.state_dir], counter=self.metrics.watch_event
        )
        self.socket = socket_path(config, options)
        self.server = ControlServer(self.socket, self._handle)
        self.web: Any = None  # syncd.web.server.WebServer when [daemon] web is set

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        self.server.start()
        if self.config.daemon.web is not None:  # the dashboard: started and stopped with the daemon
            from syncd.web.server import start_dashboard

            self.web = start_dashboard(self.config.daemon, self._handle, lambda: self.pairs, only=self.options.only)
        keys = {p.key for p in self.pairs}
        paused = self._keep_pauses(self.pairs)
        self.scheduler.set_pairs(self.pairs, paused=paused, soon=keys - paused)
        self.scheduler.start()
        self.watcher.start(self.pairs)
        log.info("syncd %s serving %d pair(s) on %s (pid %d)", __version__, len(self.pairs), self.socket, os.getpid())
        sd_notify(f"READY=1\nSTATUS={self._status_line()}\nMAINPID={os.getpid()}")
        self._loop()
        return self.stop()

    def _loop(self) -> None:
        ping = watchdog_interval()
        tick = min(TICK_S, ping) if ping else TICK_S
        wanted = {*STOP_SIGNALS, signal.SIGHUP}
        while True:
            info = signal.sigtimedwait(wanted, tick)
            if info is not None and info.si_signo in STOP_SIGNALS:
                log.info("%s received: stopping", signal.Signals(info.si_signo).name)
                return
            if info is not None and info.si_signo == signal.SIGHUP:
                self.reload()
            self.watcher.check()
            if ping and self._healthy():
                sd_notify("WATCHDOG=1")

    def _healthy(self) -> bool:
        return self.scheduler.alive() and self.server.alive() and self.watcher.alive()

    def stop(self) -> int:
        sd_notify("STOPPING=1\nSTATUS=stopping: finishing the actions in flight")
        self.stopping.set()  # the next checkpoint of every run raises Stopping
        self.server.close()
        if self.web is not None:
            self.web.close()
        self.watcher.stop()
        self.scheduler.shutdown()
        self.coordinator.stop()
        busy = self.coordinator.busy()
        if busy:
            log.info(
                "waiting up to %.0fs for %s to stop between two actions", self.options.stop_timeout_s, ", ".join(busy)
            )
        if not self.coordinator.wait_idle(self.options.stop_timeout_s):
            log.error(
                "still running after %.0fs: %s; exiting anyway (their item in flight was going to a "
                "temp name and is redone by the next run)",
                self.options.stop_timeout_s,
                ", ".join(self.coordinator.busy()),
            )
            self._exit_now()
        self.server.wait_connections(2.0)  # let `now` clients read their result line
        self.metrics.close()
        log.info("stopped")
        return ExitCode.OK

    @staticmethod
    def _exit_now() -> None:
        logging.shutdown()
        os._exit(ExitCode.OK)  # threads still copying must not delay the exit systemd waits for

    def reload(self) -> tuple[bool, str]:
        """Load the config again; on an error the running config stays (and says why)."""
        with self.reload_lock:
            sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            try:
                config = load_config(self.options.config_path)
                pairs = config.select(self.options.only)
            except ConfigError as exc:
                message = f"reload failed, still running the previous config: {exc}"
                log.error("%s", message)
                sd_notify(f"READY=1\nSTATUS={printable(message)[:200]}")  # one field: no newline may pass
                return False, message
            before = {p.key for p in self.pairs}
            self._keep_pauses([p for p in pairs if p.key not in before])
            if socket_path(config, self.options) != self.socket:
                log.warning("the socket path changed; it takes effect at the next restart")
            self.config, self.pairs = config, pairs
            self.scheduler.set_pairs(pairs, self.coordinator.paused, soon={p.key for p in pairs} - before)
            self.watcher.set_pairs(pairs)
            message = f"reloaded {config.path}: {len(pairs)} pair(s)"
            log.info("%s", message)
            sd_notify(f"READY=1\nSTATUS={self._status_line()}")
            return True, message

    def _keep_pauses(self, pairs: list[PairConfig]) -> set[str]:
        """Pause those of ``pairs`` that ``syncd pause`` left paused (a mark in the pair's
        state folder, :func:`syncd.control.paused_since`): a pause outlives a restart. In a
        cluster the pauses are the cluster's (a table every daemon reads, kept across restarts):
        a mark here would outlive a resume asked of another daemon."""
        if self.config.daemon.clustered:
            return set()
        keys = {p.key for p in pairs if paused_since(p.state_dir) is not None}
        self.coordinator.pause(keys)
        for key in sorted(keys):
            self.metrics.set_paused(key, True)
            log.info("paused (since before the start; `syncd resume %s` resumes)", key, extra=_pair_log(key))
        return keys

    def _mark_paused(self, pair: PairConfig, paused: bool) -> None:
        if self.config.daemon.clustered:
            return  # the cluster's pause table holds it (see _keep_pauses)
        try:
            mark_paused(pair.state_dir, paused)
        except OSError as exc:
            log.warning("cannot keep the pause across restarts: %s", exc, extra=_pair_log(pair.key))

    def _status_line(self) -> str:
        paused = len(self.coordinator.paused & {p.key for p in self.pairs})
        return f"{len(self.pairs)} pair(s), {paused} paused, {len(self.coordinator.busy())} running"

    # -- runs ----------------------------------------------------------------------------

    def _pair(self, key: str) -> PairConfig | None:
        return next((p for p in self.pairs if p.key == key), None)

    def _on_due(self, key: str) -> None:
        """A scheduled firing: asks for a run, never waits (a firing while it waits joins it).
        Sides a trusted watcher covers and saw unchanged are not listed; a pair whose sides
        all are gets no run at all (:func:`syncd.engine.scans.scheduled_scan`)."""
        from syncd.engine.scans import WatchState, scheduled_scan

        pair = self._pair(key)
        if pair is None:
            return
        last = self.coordinator.last_run(key)
        state = WatchState(
            self.full_at.get(key), self.watcher.lost_at.get(key), last is not None and last.result.outcome is Outcome.OK
        )
        watched = frozenset(WATCHED_SIDES[name] for name in self.watcher.watched.get(key, ()))
        unchanged = scheduled_scan(state, watched, time.time(), pair.full_scan_interval_s, key)
        if unchanged == ALL_SIDES:  # None is a full run
            return
        if self.coordinator.request(pair, RunRequest("schedule", unchanged=unchanged or frozenset())) is None:
            self._skipped(key)

    def _on_dirty(self, key: str, hints: frozenset[str] | None, why: str) -> None:
        pair = self._pair(key)
        if pair is None or self.stopping.is_set():
            return
        reason = "watch" if hints is not None else "fallback"
        if self.coordinator.request(pair, RunRequest(reason, hints=hints)) is not None:
            log.info(
                "changes seen (%s): %s run requested",
                why,
                "hinted" if hints is not None else "full",
                extra=_pair_log(key),
            )
        else:
            self._skipped(key)

    def _skipped(self, key: str) -> None:
        """A due or hinted run the coordinator refused: one line per skip when the pair is
        paused, so that a pause is seen to hold (an event to wait for, not a quiet time)."""
        if key in self.coordinator.paused:  # in a cluster: paused here or cluster-wide
            log.info("skipped, paused", extra=_pair_log(key))

    def _checkpoint(self, stage: str, key: str = "") -> None:
        # only between two actions: inside one (a conflict's steps) stopping would leave more to redo
        if stage == "action-done" and (self.stopping.is_set() or self.fenced(key)):
            raise Stopping()

    def _run_pair(
        self, pair: PairConfig, request: RunRequest, emit: Callable[[str, dict[str, object]], None]
    ) -> RunResult:
        """One run of ``pair`` as ``request`` asks; never raises for what a run can meet (the
        coordinator turns a bug into a ``fatal`` result)."""
        from syncd.engine.result import refused, run_pair
        from syncd.engine.sync import RunOptions

        options = RunOptions(
            dry_run=request.dry_run,
            force=request.force,
            hints=request.hints,
            unchanged=request.unchanged,
            respect_backoff=request.reason != "now",  # someone asking now wants every item tried
            checkpoint=lambda stage: self._checkpoint(stage, pair.key),
        )
        hinted = f", {len(request.hints)} hinted path(s)" if request.hints is not None else ""
        log.info("run started (%s%s)", request.reason, hinted, extra=_pair_log(pair.key))
        started = time.monotonic()

        def progress(name: str, data: dict[str, object]) -> None:
            if name == "error":
                log.warning("error %s: %s", data.get("path"), data.get("error"), extra=_pair_log(pair.key))
            emit(name, data)

        began = time.time()
        try:
            self._prepare_index(pair)
            result = run_pair(pair, options, progress, started=started)
            if request.full and not request.dry_run and result.outcome is Outcome.OK:
                self.full_at[pair.key] = began  # the watcher's trust starts again from here
        except Stopping:
            return RunResult.unreported(pair.key, Outcome.INTERRUPTED, STOP_MESSAGE, time.monotonic() - started)
        except SyncdError as exc:  # preparing the index: the lock held, or the state folder unusable
            return refused(pair, exc, started=started)
        self._log_skipped(pair, list(result.skipped_new))
        return result

    @staticmethod
    def _log_skipped(pair: PairConfig, newly: list[tuple[str, str]]) -> None:
        """Each newly skipped name once (the index keeps them; `syncd status -v` lists all)."""
        for path, reason in newly[:MAX_ITEMS_IN_RESULT]:
            log.warning("skipped %s: %s", path, reason, extra=_pair_log(pair.key))
        if len(newly) > MAX_ITEMS_IN_RESULT:
            log.warning(
                "skipped %d more name(s); `syncd status -v %s` lists them",
                len(newly) - MAX_ITEMS_IN_RESULT,
                pair.key,
                extra=_pair_log(pair.key),
            )

    def _prepare_index(self, pair: PairConfig) -> None:
        """Open (and so create or migrate) the pair's index once, one pair at a time: Alembic's
        upgrade uses module globals and two at once in one process break each other. After
        this, the engine's own open finds the schema current and never calls Alembic."""
        if pair.index_path in self.prepared:
            return
        from syncd.index.store import Store

        with _INDEX_OPEN_LOCK, pair_lock(pair.state_dir, pair.key):
            Store.open(pair.index_path).close()
        self.prepared.add(pair.index_path)

    def _on_result(self, pair: PairConfig, result: RunResult, reason: str) -> None:
        line = f"{result.outcome.value}: {result.done_text}; {size(result.bytes_moved)} in {result.seconds:.2f}s"
        quiet = (Outcome.OK, Outcome.INTERRUPTED)
        level = logging.INFO if result.outcome in quiet else logging.WARNING
        log.log(level, "%s%s", line, f"; {result.message}" if result.message else "", extra=_pair_log(pair.key))
        self.metrics.run_finished(result_to_json(result), reason)

    # -- control requests ----------------------------------------------------------------

    def _select(self, target: str | None) -> list[PairConfig]:
        if not target:
            return list(self.pairs)
        user, _, name = target.partition("/")
        chosen = [p for p in self.pairs if p.user == user and (not name or p.name == name)]
        if not chosen:
            known = ", ".join(p.key for p in self.pairs) or "none"
            raise ProtocolError(f"no pair {target!r} is served by this daemon (known: {known})", ExitCode.USAGE)
        return chosen

    def _handle(self, request: Request, emit: Emit) -> dict[str, Any]:
        handlers: dict[str, Callable[[Request, Emit], dict[str, Any]]] = {
            "now": self._op_now,
            "status": self._op_status,
            "pause": self._op_pause,
            "resume": self._op_resume,
            "reload": self._op_reload,
        }
        return {"ok": True, "op": request.op, **handlers[request.op](request, emit)}

    def _op_now(self, request: Request, emit: Emit) -> dict[str, Any]:
        """Run the chosen pairs now (joining runs about to start), streaming their progress."""
        pairs = self._select(request.target)
        if self.stopping.is_set():
            raise ProtocolError(STOPPING_MESSAGE, ExitCode.BUSY)
        results: list[RunResult] = []
        runs = []
        for pair in pairs:
            if pair.key in self.coordinator.paused:
                message = f"paused; `syncd resume {pair.key}` first"
                results.append(RunResult.unreported(pair.key, Outcome.PAUSED, message))
                continue
            run = self.coordinator.request(pair, RunRequest("now", request.dry_run, request.force), listener=emit)
            if run is None:
                results.append(RunResult.unreported(pair.key, Outcome.INTERRUPTED, STOPPING_MESSAGE))
            else:
                runs.append(run)
        for run in runs:
            results.append(run.wait() or RunResult.unreported(run.pair.key, Outcome.FATAL, "no result"))
        return {"results": [result_to_json(r) for r in results], "exit": int(exit_code(results))}

    def _op_status(self, request: Request, _emit: Emit) -> dict[str, Any]:
        pairs = self._select(request.target)
        rows = []
        for pair in pairs:
            rows.append(
                {
                    "pair": pair.key,
                    **self.coordinator.describe(pair.key),
                    "paused_since": paused_since(pair.state_dir),
                    "last": _last_json(self.coordinator.last_run(pair.key)),
                    "watch": self.watcher.state.get(pair.key, "not watched"),
                    "dirty": self.watcher.debouncer.pending(pair.key),
                    "next_run": self.scheduler.next_run(pair.key),
                    "interval_s": pair.interval_s,
                }
            )
        daemon = {
            "pid": os.getpid(),
            "version": __version__,
            "config": str(self.config.path),
            "socket": str(self.socket),
            "uptime_s": round(time.time() - self.started, 1),
            "max_parallel": self.options.max_parallel,
            "running": self.coordinator.busy(),
        }
        return {"daemon": daemon, "pairs": rows}

    def _op_pause(self, request: Request, _emit: Emit) -> dict[str, Any]:
        pairs = self._select(request.target)
        keys = [p.key for p in pairs]
        self.coordinator.pause(keys)
        for pair in pairs:
            if paused_since(pair.state_dir) is None:
                self._mark_paused(pair, True)
        for key in keys:
            self.scheduler.pause(key)
            self.metrics.set_paused(key, True)
            log.info("paused (a run in flight finishes)", extra=_pair_log(key))
        sd_notify(f"STATUS={self._status_line()}")
        return {"pairs": keys}

    def _op_resume(self, request: Request, _emit: Emit) -> dict[str, Any]:
        pairs = self._select(request.target)
        self.coordinator.resume(p.key for p in pairs)
        for pair in pairs:
            self._mark_paused(pair, False)
            self.scheduler.resume(pair.key)
            self.metrics.set_paused(pair.key, False)
            self.coordinator.request(pair, RunRequest("resume"))  # catch up with what changed while paused
            log.info("resumed", extra=_pair_log(pair.key))
        sd_notify(f"STATUS={self._status_line()}")
        return {"pairs": [p.key for p in pairs]}

    def _op_reload(self, _request: Request, _emit: Emit) -> dict[str, Any]:
        ok, message = self.reload()
        if not ok:
            raise ProtocolError(message, ExitCode.FATAL)
        return {"pairs": [p.key for p in self.pairs], "message": message}


def run_daemon(options: DaemonOptions) -> int:
    """The whole service; returns the exit code. Blocks signals before any thread starts, so
    that every thread inherits the mask and only the main loop takes them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, signal.SIGHUP})
    setup_logging(options.log_format)
    try:
        config = load_config(options.config_path)
        daemon = Daemon(options, config)
    except (ConfigError, FatalError) as exc:
        log.error("%s", exc)
        sd_notify(f"STATUS=failed to start: {printable(exc)[:200]}")
        return ExitCode.FATAL
    try:
        return daemon.run()
    except FatalError as exc:
        log.error("%s", exc)
        return ExitCode.FATAL


def _last_json(last: LastRun | None) -> dict[str, Any] | None:
    """How a pair's last run ended, for ``status``: its result, when and why it ran."""
    if last is None:
        return None
    return {**result_to_json(last.result), "finished_at": last.finished_at, "reason": last.reason}
