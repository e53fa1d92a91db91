"""Nextcloud's file locks, as a client sees them: while one request writes a path, others on that
path get 423 (FileLocked), a MOVE of it a 500 (LockedException). Tests can hold a lock themselves
with :meth:`PathLocks.hold` to get those answers deterministically."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from .names import nfc

LockKey = tuple[str, str]


def lock_key(user: str, path: str) -> LockKey:
    return user, "/".join(nfc(part) for part in path.split("/") if part)


class PathLocks:
    """Exclusive locks on paths from a user's root (``"dir/file.txt"``); never blocking."""

    def __init__(self) -> None:
        self._held: Counter[LockKey] = Counter()
        self._guard = threading.Lock()

    def try_acquire(self, user: str, path: str) -> bool:
        """Take the lock if nobody holds it. :returns: False when it is held."""
        key = lock_key(user, path)
        with self._guard:
            if self._held[key]:
                return False
            self._held[key] += 1
            return True

    def release(self, user: str, path: str) -> None:
        key = lock_key(user, path)
        with self._guard:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    def is_locked(self, user: str, path: str) -> bool:
        with self._guard:
            return self._held[lock_key(user, path)] > 0

    @contextmanager
    def hold(self, user: str, path: str) -> Iterator[None]:
        """Hold ``path`` locked (as a long write would) until the block ends."""
        key = lock_key(user, path)
        with self._guard:
            self._held[key] += 1
        try:
            yield
        finally:
            self.release(user, path)
