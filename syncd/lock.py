"""One run per pair at a time: an exclusive flock on ``<state_dir>/lock`` holding the owner pid.

The kernel drops the lock when its process dies (even by kill -9), so a crash never leaves a
stale lock behind; the pid inside only tells a waiting user who holds it.

The index records who runs a run (:func:`process_identity`), so that ``syncd status`` can tell
a run in progress from one whose process died (:func:`process_alive`) without touching the lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from syncd.errors import FatalError, LockedError


@contextmanager
def pair_lock(state_dir: Path, label: str) -> Iterator[None]:
    """Hold the pair's lock for the ``with`` body.

    :raises LockedError: another process holds the lock (the message gives its pid).
    :raises FatalError: the state folder cannot be created or written (e.g. read-only).
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FatalError(
            f"{label}: cannot use the state folder {state_dir}: {exc.strerror or exc} "
            "(syncd must be able to write there; `syncd check` tests it)"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"{label}: another sync of this pair is running (pid {owner})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def process_identity(pid: int | None = None) -> tuple[str, int, str | None]:
    """(host name, pid, start token) of process ``pid`` (this one by default). The token,
    ``"<boot id>:<start time in clock ticks>"``, tells the process from a later one that got
    the same pid; None where /proc cannot say (not Linux, hidden /proc, process gone)."""
    pid = os.getpid() if pid is None else pid
    return socket.gethostname(), pid, _start_token(pid)


def process_alive(host: str | None, pid: int | None, start: str | None) -> bool | None:
    """Whether the process recorded as (``host``, ``pid``, ``start``) still runs.

    None when it cannot be known from here: another host ran it, or no pid was recorded.
    A process with that pid but another start token is a later one: the recorded one is gone;
    so is a zombie (it died, its parent has not reaped it yet).
    """
    if pid is None or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    fields = _proc_stat(pid)
    if fields is None:  # no /proc to ask: the pid exists, take it as the same process
        return True
    if fields[0] == "Z":
        return False
    return start is None or _start_token(pid) in (None, start)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the process name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            # the name in (...) may hold spaces and parentheses: fields count from the last ")"
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def _start_token(pid: int) -> str | None:
    fields = _proc_stat(pid)
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            boot_id = boot.read().strip()
    except OSError:
        return None
    if fields is None or len(fields) < 20:
        return None
    return f"{boot_id}:{fields[19]}"  # field 22 of stat, starttime
