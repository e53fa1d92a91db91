"""Nextcloud's brute-force protection, per client IP: failed logins are answered more and more
slowly (about 0.1 s x 2^failures, at most 25 s), and from the 12th failed attempt on every request
from that IP, with the right password too, gets 429 until an admin resets it. ``status.php`` is
not throttled. Delays are scaled by ``delay_scale`` (near zero by default: tests must not wait)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

FAILURES_BEFORE_BLOCK = 11
MAX_DELAY_S = 25.0


class LoginThrottle:
    def __init__(self, *, delay_scale: float = 0.0005, sleep: Callable[[float], None] = time.sleep) -> None:
        self.delay_scale = delay_scale
        self.sleep = sleep
        self._failures: Counter[str] = Counter()
        self._guard = threading.Lock()

    def blocked(self, ip: str) -> bool:
        with self._guard:
            return self._failures[ip] >= FAILURES_BEFORE_BLOCK

    def failures(self, ip: str) -> int:
        with self._guard:
            return self._failures[ip]

    def record_failure(self, ip: str) -> None:
        """Count a failed login and wait as long as Nextcloud would (scaled) before answering."""
        with self._guard:
            earlier = self._failures[ip]
            self._failures[ip] += 1
        delay = min(MAX_DELAY_S, 0.1 * 2**earlier) * self.delay_scale
        if delay > 0:
            self.sleep(delay)

    def reset(self, ip: str | None = None) -> None:
        """``occ security:bruteforce:reset <ip>``; all addresses when ``ip`` is None."""
        with self._guard:
            if ip is None:
                self._failures.clear()
            else:
                self._failures.pop(ip, None)
