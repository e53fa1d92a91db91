"""The server's clock is injectable: Nextcloud's answers depend on which second a request lands in
(a file keeps its ETag when it is overwritten within the same second with an unchanged mtime; two
deletions of one path in one second leave one trash entry). Tests that need those answers
deterministically pass a :class:`ManualClock`."""

from __future__ import annotations

import threading


class ManualClock:
    """A clock that moves only when told to: ``clock()`` returns the current time in seconds."""

    def __init__(self, start: float = 1_795_996_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def next_second(self) -> None:
        """Move to the start of the next whole second."""
        with self._lock:
            self._now = float(int(self._now) + 1)
