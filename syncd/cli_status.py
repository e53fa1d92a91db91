"""``syncd status``: what each pair's index records (last run, files in sync, item errors,
skipped names) and what is live: paused, running now, next scheduled run, from the daemon
when one answers. With no daemon, a pause still shows: ``syncd pause`` leaves a mark in the
pair's state folder (:func:`syncd.control.paused_since`), which the daemon reads at start; in
a cluster, a row of the cluster's pause table, which status then reads from the database.

``--json`` prints one list of rows, one per pair, with exact names (README, Commands).
Every human-readable line goes through :func:`syncd.display.printable` where it is written.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.display import printable
from syncd.outcomes import INTERRUPTED_MESSAGE, ExitCode
from syncd.progress import say

if TYPE_CHECKING:
    from syncd.config import Config, PairConfig
    from syncd.index.store import RunInfo, Store

# What a run recorded by syncd before Outcome.INTERRUPTED existed says instead (read only).
_OLD_INTERRUPTED = ("fatal", "stopped by KeyboardInterrupt")
DAEMON_TIMEOUT_S = 10.0  # a daemon that does not answer status in this long counts as not answering
# The daemon's last event of a run, as status names what the run is doing.
_PHASES = {"done": "applying", "error": "applying", "finished": "finishing"}


def open_index(pair: PairConfig) -> Store | None:
    """The pair's index, or None before its first run (nothing is created)."""
    from syncd.index.store import Store

    if not pair.index_path.exists():
        return None
    return Store.open(pair.index_path)


def when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    pairs = config.select(args.target)
    live = ask_daemons(config, pairs)
    read_cluster_pauses(config, pairs, live)
    rows = [status_row(pair, live, verbose=args.verbose) for pair in pairs]
    if args.json:
        if live.cluster_error is not None:
            say(live.cluster_error)  # stdout stays one JSON list
        print(json.dumps(rows))
        return ExitCode.OK
    for line in daemon_lines(live):
        print(printable(line))
    if live.cluster_error is not None:
        print(printable(live.cluster_error))
    for row in rows:
        for line in status_lines(row, verbose=args.verbose):
            print(printable(line))
    return ExitCode.OK


# -- the daemon's view -------------------------------------------------------------------------


@dataclass(slots=True)
class Live:
    """What the daemons that answered say: each one's ``daemon`` part, each pair's row."""

    daemons: list[dict[str, Any]] = field(default_factory=list)
    pairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)  # pair key -> daemon pid
    silent: list[Path] = field(default_factory=list)  # sockets asked that did not answer
    # pair key -> {"by", "since"}: paused cluster-wide, read from the database for the pairs no
    # daemon answered for (a daemon's own row says it otherwise); why it could not be read
    cluster_paused: dict[str, dict[str, Any]] = field(default_factory=dict)
    cluster_error: str | None = None


def ask_daemons(config: Config, pairs: Sequence[PairConfig]) -> Live:
    """Ask every daemon that may serve ``pairs`` for its status: each user's own instance
    (``syncd@USER``), then the main daemon. A socket nobody listens on is skipped quickly."""
    from syncd.control import Request, instance_socket, main_socket, request_result
    from syncd.errors import ControlError

    main = main_socket(config)
    sockets = [instance_socket(config, user) for user in dict.fromkeys(p.user for p in pairs)]
    sockets.append(main)
    live = Live()
    for path in dict.fromkeys(sockets):
        if not path.exists():
            if path == main:
                live.silent.append(path)
            continue
        try:
            result = request_result(path, Request("status"), timeout=DAEMON_TIMEOUT_S)
        except (ControlError, OSError, ValueError):
            live.silent.append(path)
            continue
        if not result.get("ok"):
            live.silent.append(path)
            continue
        daemon = dict(result.get("daemon") or {})
        live.daemons.append(daemon)
        for row in result.get("pairs") or []:
            if isinstance(row, dict) and row.get("pair") not in live.pairs:
                live.pairs[str(row.get("pair"))] = row
                live.served_by[str(row.get("pair"))] = int(daemon.get("pid") or 0)
    return live


def read_cluster_pauses(config: Config, pairs: Sequence[PairConfig], live: Live) -> None:
    """In a cluster, a pause is a row of the cluster's table, not a mark in the pair's state
    folder: read the table when no daemon answered for some of ``pairs``. A database that
    cannot be reached is one line (``live.cluster_error``); the rest is shown."""
    if not config.daemon.clustered or all(p.key in live.pairs for p in pairs):
        return
    from syncd.cluster.coordinator import cluster_url
    from syncd.cluster.database import read_pauses, where
    from syncd.errors import SyncdError

    try:
        url = cluster_url(config.daemon)
    except SyncdError as exc:  # its URL file unreadable here
        live.cluster_error = f"cluster: cannot read the pauses: {exc}"
        return
    try:
        live.cluster_paused = read_pauses(url, DAEMON_TIMEOUT_S)
    except Exception as exc:  # psycopg's errors: status answers without the database
        reason = " ".join(str(exc).split()) or type(exc).__name__  # libpq's message spans lines
        live.cluster_error = (
            f"cluster database {where(url)}: cannot read the pauses ({reason}); "
            "a pair paused cluster-wide may show as not paused"
        )


def daemon_lines(live: Live) -> list[str]:
    """One line per daemon that answered, or one saying none did."""
    if not live.daemons:
        where = ", ".join(map(str, live.silent)) or "no socket"
        return [f"daemon: not running (no answer on {where}): no scheduled or watcher runs"]
    return [
        f"daemon: pid {d.get('pid')} (syncd {d.get('version')}) on {d.get('socket')}, "
        f"up {duration(float(d.get('uptime_s') or 0))}, running {', '.join(d.get('running') or []) or 'nothing'}"
        for d in live.daemons
    ]


# -- one pair ----------------------------------------------------------------------------------


def status_row(pair: PairConfig, live: Live, *, verbose: bool) -> dict[str, Any]:
    """What ``status`` says of one pair (the ``--json`` row): exact names, escaped only when
    printed. ``served`` says whether a daemon answered for the pair; ``paused``,
    ``paused_since``, ``running`` (null, or the run's phase, reason, actions, done,
    started_at), ``queued`` and ``next_run`` (epoch seconds; null without a daemon or when
    paused) are live."""
    from syncd.control import paused_since

    daemon_row = live.pairs.get(pair.key)
    since = paused_since(pair.state_dir)
    cluster_pause = live.cluster_paused.get(pair.key) if daemon_row is None else None
    if cluster_pause is not None:
        since = cluster_pause["since"]
    row: dict[str, Any] = {
        "pair": pair.key,
        "served": daemon_row is not None,
        "daemon_pid": live.served_by.get(pair.key),
        "paused": bool(daemon_row["paused"]) if daemon_row is not None else since is not None,
        "paused_since": since,
        "running": daemon_row.get("running") if daemon_row is not None else None,
        "queued": int(daemon_row.get("queued") or 0) if daemon_row is not None else 0,
        "next_run": daemon_row.get("next_run") if daemon_row is not None else None,
        # hosts (syncd.cluster); with no daemon, who paused it cluster-wide (read from the table)
        "cluster": daemon_row.get("cluster") if daemon_row is not None else _paused_by(cluster_pause),
        "interval_s": pair.interval_s,
        "full_scan_interval_s": pair.full_scan_interval_s,
    }
    if row["paused"]:
        row["next_run"] = None
    row.update(_index_part(pair, verbose=verbose))
    return row


def _paused_by(cluster_pause: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if cluster_pause is None else {"paused_by": cluster_pause["by"]}


def _index_part(pair: PairConfig, *, verbose: bool) -> dict[str, Any]:
    store = open_index(pair)
    if store is None:
        return {"state": "never synced"}
    try:
        runs, errors, files = store.runs(1), store.item_errors(), store.count_bases()
        names = store.skipped() if verbose else None
        skipped = len(names) if names is not None else store.count_skipped()
        scans = {side: scan.full_at for side, scan in store.side_scans().items()}
    finally:
        store.close()
    part: dict[str, Any] = {"files": files, "errors": [(e.path, e.error) for e in errors], "skipped": skipped}
    # when each side was last listed in full (syncd.engine.scans); the pair: the older of the two
    part["full_scans"] = scans
    known = [at for at in scans.values() if at is not None]
    part["full_scan_at"] = min(known) if len(known) == 2 else None
    if names is not None:
        part["skipped_names"] = names
    if runs:
        state, message = run_state(runs[0])
        part.update(state=state, last_run=when(runs[0].started_at), counts=runs[0].counts, message=message)
    return part


def run_state(run: RunInfo) -> tuple[str, str]:
    """(state, message) of a run as ``status`` shows it. A run recorded as "running" whose
    process is gone (killed, host rebooted) "died"; one interrupted by an older syncd, which
    recorded "fatal: stopped by KeyboardInterrupt", is "interrupted" (its record is read as
    it is: an index is never rewritten to show it)."""
    if (run.outcome, run.message.partition(":")[0]) == _OLD_INTERRUPTED:
        return "interrupted", INTERRUPTED_MESSAGE
    if run.outcome != "running":
        return run.outcome, run.message
    from syncd.lock import process_alive

    alive = process_alive(run.host, run.pid, run.pid_start)
    if alive:
        return "running", f"pid {run.pid}"
    if alive is False:
        return "died", (
            f"its process (pid {run.pid}) ended without finishing the run (killed?); "
            "finished actions are recorded, the next run goes on from there"
        )
    if run.pid is None:
        return "unknown", "recorded as running by an older syncd, which did not record its process"
    return "running", f"on host {run.host} (pid {run.pid}): not checked from this host"


def status_lines(row: dict[str, Any], *, verbose: bool) -> list[str]:
    """The lines ``status`` prints for one row (not yet escaped)."""
    if "files" not in row:
        return [f"{row['pair']}: {row['state']}", *_live_lines(row)]
    counts_by_kind: dict[str, int] = row.get("counts", {})
    counts = ", ".join(f"{n} {k}" for k, n in sorted(counts_by_kind.items())) or "no changes"
    item_errors: list[tuple[str, str]] = row["errors"]
    lines = [
        f"{row['pair']}: {row.get('state', 'never synced')}, last run {row.get('last_run', '-')} "
        f"({counts}); {row['files']} files in sync; {len(item_errors)} item error(s); "
        f"{row['skipped']} skipped name(s)"
    ]
    if row.get("message"):
        lines.append(f"  {row['message']}")
    if row.get("full_scan_at") is not None:
        every = f" (every {duration(float(row['full_scan_interval_s']))})" if row.get("full_scan_interval_s") else ""
        lines.append(f"  last full scan: {when(float(row['full_scan_at']))}{every}")
    lines += _live_lines(row)
    lines += [f"  error {path}: {error}" for path, error in (item_errors if verbose else item_errors[:10])]
    if len(item_errors) > 10 and not verbose:
        lines.append(f"  ({len(item_errors) - 10} more; syncd status -v lists every item error)")
    lines += [f"  skipped {path}: {reason}" for path, reason in row.get("skipped_names") or []]
    if row["skipped"] and not verbose:
        lines.append("  (syncd status -v lists the skipped names)")
    return lines


def _live_lines(row: dict[str, Any]) -> list[str]:
    """Paused, running now, next run: what the daemon (or the pause mark) says."""
    lines = []
    cluster = row.get("cluster")
    if row.get("paused"):
        since = f" since {when(row['paused_since'])}" if row.get("paused_since") else ""
        by = cluster.get("paused_by") if isinstance(cluster, dict) else None
        everywhere = f" cluster-wide (asked of {by})" if by else ""
        lines.append(f"  paused{everywhere}{since}: no scheduled or watcher runs; `syncd resume {row['pair']}` resumes")
    running = row.get("running")
    if isinstance(running, dict):
        phase = _PHASES.get(str(running.get("phase")), str(running.get("phase")))
        progress = f", {running.get('done', 0)}/{running.get('actions')} actions" if running.get("actions") else ""
        started = f", since {when(running['started_at'])}" if running.get("started_at") else ""
        lines.append(f"  running now: {phase}{progress} (asked by {running.get('reason')}{started})")
    if isinstance(cluster, dict) and "host" in cluster:  # several daemons share the pairs: who ran it, who runs it
        last = f"last run on {cluster['last_host']}" if cluster.get("last_host") else "no run in the cluster yet"
        now = f", running now on {cluster['running_on']}" if cluster.get("running_on") else ""
        lines.append(f"  cluster: {last}{now} (asked {cluster.get('host')})")
    if row.get("queued"):
        lines.append(f"  {row['queued']} more run(s) queued")
    if row.get("next_run") is not None:
        lines.append(f"  next run: {when(float(row['next_run']))} (every {duration(float(row['interval_s']))})")
    return lines


def duration(seconds: float) -> str:
    """``45s``, ``5m``, ``2h05m``, ``3d4h``: a span for people."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m" + (f"{secs:02d}s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" + (f"{minutes:02d}m" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days}d" + (f"{hours}h" if hours else "")
