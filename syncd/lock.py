"""One run per pair at a time: an exclusive flock on ``<state_dir>/lock`` holding the owner pid.

The kernel drops the lock when its process dies (even by kill -9), so a crash never leaves a
stale lock behind; the pid inside only tells a waiting user who holds it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from syncd.errors import LockedError


@contextmanager
def pair_lock(state_dir: Path, label: str) -> Iterator[None]:
    """:raises LockedError: another process holds the lock (the message gives its pid)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
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
