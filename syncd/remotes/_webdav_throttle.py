"""One gate per server origin, shared by every remote of the process: closed by a 429.

Nextcloud answers ``429 Too Many Requests`` to every request from a client address once it
saw too many failed logins from it (about 11), the right password included, and it sends no
Retry-After. One syncd host serves many users from one address, so a 429 concerns the whole
host: the gate of that origin closes for a growing time (30 s, doubling up to an hour; a
Retry-After, when a server sends one, sets it), and every request to a closed gate fails at
once with a TransientError naming the host and until when, without sending anything.
An answer other than 429 reopens the backoff from its start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from syncd.errors import TransientError

FIRST_CLOSE_S = 30.0
MAX_CLOSE_S = 3600.0
clock: Callable[[], float] = time.monotonic  # tests replace it


@dataclass(slots=True)
class _Gate:
    closed_until: float = 0.0
    next_close_s: float = FIRST_CLOSE_S


_gates: dict[str, _Gate] = {}
_lock = threading.Lock()


def check_open(origin: str, label: str) -> None:
    """:raises TransientError: ``origin`` throttled us and its gate is still closed."""
    with _lock:
        gate = _gates.get(origin)
        remaining = gate.closed_until - clock() if gate is not None else 0.0
    if remaining > 0:
        raise TransientError(f"{label}: {_closed_message(origin, remaining)}; nothing sent")


def close(origin: str, retry_after_s: float | None, label: str) -> TransientError:
    """A 429 from ``origin``: close its gate. :returns: the error for the request that got it."""
    with _lock:
        gate = _gates.setdefault(origin, _Gate())
        wait = retry_after_s if retry_after_s is not None and retry_after_s > 0 else gate.next_close_s
        wait = min(wait, MAX_CLOSE_S)
        gate.closed_until = max(gate.closed_until, clock() + wait)
        gate.next_close_s = min(gate.next_close_s * 2, MAX_CLOSE_S)
    return TransientError(f"{label}: {_closed_message(origin, wait)}")


def passed(origin: str) -> None:
    """``origin`` answered something other than 429: the next 429 starts the backoff anew."""
    if origin in _gates:  # the common case (never throttled) takes no lock
        with _lock:
            gate = _gates.get(origin)
            if gate is not None and gate.closed_until <= clock():
                del _gates[origin]


def reset() -> None:
    """Open every gate (tests)."""
    with _lock:
        _gates.clear()


def _closed_message(origin: str, seconds: float) -> str:
    until = datetime.now() + timedelta(seconds=seconds)
    host = urlsplit(origin).netloc or origin
    return (
        f"{host} answered 429 Too Many Requests (Nextcloud blocks an address after repeated failed logins); "
        f"no requests to it until {until:%H:%M:%S} ({seconds:.0f} s)"
    )
