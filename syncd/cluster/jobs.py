"""Pure: how a run request becomes a procrastinate job and back, and which runs fold together.

A job's args are plain JSON: ``{"pair": "alice/default", "reason": "watch", "hints": [...] | None,
"force": false}``. Its ``lock`` is the pair's key (procrastinate never runs two jobs holding one
lock at once, on any host); its ``queueing_lock`` is the pair's key too (``#force`` added for a
forced run), so a second request while one waits folds into the waiting job: the two requests'
hints are merged into its args (:func:`merged_args`), as :class:`syncd.scheduler.RunCoordinator`
merges them in one process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncd.config import DaemonSection, PairConfig
from syncd.engine.scans import phase
from syncd.scheduler import RunRequest

TASK_NAME = "syncd.sync_pair"
QUEUE = "syncd"  # the shared line: any daemon takes its jobs


def home_queue(host: str) -> str:
    """The line of the jobs of pairs ``host`` ran last: a pair stays on the daemon whose index
    of it is current (each host keeps its own); it moves when that daemon is gone."""
    return f"{QUEUE}@{host}"


def job_args(key: str, request: RunRequest) -> dict[str, Any]:
    """The job's args for a run of pair ``key``. A scheduled run lists both sides in full: a
    watcher on one host does not see another host's writes, so no host vouches for a side."""
    hints = None if request.hints is None else sorted(request.hints)
    return {"pair": key, "reason": request.reason, "hints": hints, "force": request.force}


def request_of(args: Mapping[str, Any]) -> tuple[str, RunRequest]:
    """(pair key, request) of a job's args. :raises ValueError: args no syncd job has."""
    key, hints = args.get("pair"), args.get("hints")
    if not isinstance(key, str) or not (hints is None or isinstance(hints, list)):
        raise ValueError(f"not a syncd job: {dict(args)!r}")
    request = RunRequest(
        str(args.get("reason") or "schedule"),
        force=bool(args.get("force")),
        hints=None if hints is None else frozenset(str(h) for h in hints),
    )
    return key, request


def merged_args(waiting: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """The args of one job doing what both do, or None when they cannot share a run."""
    key, first = request_of(waiting)
    other_key, second = request_of(new)
    merged = first.merged(second) if key == other_key else None
    return None if merged is None else job_args(key, merged)


def queueing_lock(key: str, request: RunRequest) -> str:
    """Requests with the same queueing lock fold into one waiting job."""
    return f"{key}#force" if request.force else key


def period_slot(key: str, interval_s: float, now: float) -> int:
    """The scheduled firing of pair ``key`` nearest to ``now`` (epoch seconds): every daemon
    fires at the same phase of the interval (:func:`syncd.engine.scans.phase`), so the first
    one to claim the slot defers the run and the others, a moment later, find it taken. The
    nearest, not the last: a host whose clock runs a little behind still names the same slot."""
    offset = phase(key, interval_s)
    return int(round((now - offset) / interval_s) * interval_s + offset)


def unreachable(pair: PairConfig) -> str | None:
    """Why this host cannot run ``pair`` (a local folder of one of its sides is missing
    here), or None. Such a job is retried, and so taken by another daemon."""
    for side, settings in (("files", pair.files), ("bucket", pair.bucket)):
        root = getattr(settings, "path", None)
        if isinstance(root, str | Path) and not os.path.isdir(root):
            return f"{side} folder {root} is missing on this host"
    return None


def host_name(daemon: DaemonSection) -> str:
    """This daemon's name in the cluster: ``[daemon] host_name``, else ``$SYNCD_HOST_NAME``
    (several daemons on one host, or a Kubernetes pod's name), else the host's name."""
    return daemon.host_name or os.environ.get("SYNCD_HOST_NAME") or socket.gethostname()
