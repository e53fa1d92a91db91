"""Bandwidth limits: ``bwlimit`` in ``[daemon]`` (all pairs together) and per pair.

A limit is a rate in bytes per second (``"8M"``, ``"512K"``, ``"1.5M"``, ``"100000"``; K, M,
G are powers of 1024, as in rclone), ``"off"``, or a daily timetable of ``HH:MM,RATE``
entries (``"08:00,512K 19:00,10M 23:00,off"``): each rate holds from its time until the next
entry's, and the last one holds past midnight until the first one's time.

The engine wraps every stream it moves between the two sides in a :class:`ThrottledReader`
of the pair's :class:`Limiter` and the daemon's: uploads and downloads of every remote type
are limited in one place. A limiter is shared by every transfer that uses it (threads of a
run, runs of pairs at once): :func:`shared_limiter` keeps one per name in this process.

Parsing and picking a slot are pure; :class:`Limiter` reads a clock and sleeps.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, cast

_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)
_SLOT_RE = re.compile(r"^(\d{1,2}):(\d{2}),(.+)$")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_PIECE = 4096  # bytes: a throttled read never asks for less (nor waits much longer than a quarter second)


def parse_rate(text: str) -> int | None:
    """``"8M"`` -> 8388608 bytes/s; ``"off"`` (or ``"0"``) -> None. :raises ValueError:"""
    cleaned = text.strip()
    if cleaned.lower() in ("off", "0", ""):
        return None
    match = _RATE_RE.match(cleaned)
    if not match:
        raise ValueError(f"{text!r} is not a rate (bytes/s such as 512K, 8M, 1.5G, or off)")
    rate = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if rate < 1:
        raise ValueError(f"{text!r} is below 1 byte/s (use off for no limit)")
    return rate


@dataclass(frozen=True, slots=True)
class Slot:
    start_min: int  # minutes after midnight, local time
    rate: int | None  # bytes/s; None: no limit


@dataclass(frozen=True, slots=True)
class Schedule:
    """A limit over the day: one slot (a plain rate) or a timetable, sorted by start."""

    slots: tuple[Slot, ...]
    text: str  # as configured, for messages

    def rate_at(self, minute_of_day: int) -> int | None:
        """The rate in force ``minute_of_day`` minutes after midnight (bytes/s, None: no limit)."""
        current = self.slots[-1]  # before the first entry, the last one still holds from the day before
        for slot in self.slots:
            if slot.start_min <= minute_of_day:
                current = slot
        return current.rate

    @property
    def unlimited(self) -> bool:
        return all(slot.rate is None for slot in self.slots)


def parse_bwlimit(text: str) -> Schedule:
    """A ``bwlimit`` value: a rate, ``off``, or a timetable ``"08:00,512K 19:00,10M 23:00,off"``.

    :raises ValueError: saying which entry is wrong.
    """
    entries = text.split()
    if len(entries) <= 1 and "," not in text:
        return Schedule((Slot(0, parse_rate(text)),), text)
    slots = []
    for entry in entries:
        match = _SLOT_RE.match(entry)
        if not match:
            raise ValueError(f"{entry!r}: a timetable entry is HH:MM,RATE (e.g. 08:00,512K)")
        hours, minutes = int(match.group(1)), int(match.group(2))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{entry!r}: {hours:02d}:{minutes:02d} is not a time of day")
        slots.append(Slot(hours * 60 + minutes, parse_rate(match.group(3))))
    starts = [slot.start_min for slot in slots]
    if starts != sorted(set(starts)):
        raise ValueError(f"{text!r}: timetable entries must be in order of time, each time once")
    return Schedule(tuple(slots), text)


def minute_of_day(when: datetime) -> int:
    return when.hour * 60 + when.minute


class Limiter:
    """A shared allowance of bytes per second: :meth:`take` waits until ``n`` more bytes fit.

    No burst is saved up while idle: bytes taken from the moment the limiter is first used
    are spread at most at the rate in force, so ``N`` bytes take at least ``N / rate``
    seconds, however many threads share the limiter.
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.schedule = schedule
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._lock = threading.Lock()
        self._free_at = 0.0  # monotonic time at which the bytes taken so far have been paid for

    def rate(self) -> int | None:
        return self.schedule.rate_at(minute_of_day(self._wall()))

    def take(self, n: int) -> None:
        """Reserve ``n`` bytes at the rate in force and wait until they are paid for."""
        rate = self.rate()
        with self._lock:
            now = self._clock()
            if rate is None:
                self._free_at = now
                return
            self._free_at = max(self._free_at, now) + n / rate
            wait = self._free_at - now
        if wait > 0:
            self._sleep(wait)

    def piece(self) -> int | None:
        """How many bytes one read should ask for: about a quarter second's worth."""
        rate = self.rate()
        return None if rate is None else max(MIN_PIECE, rate // 4)


class ThrottledReader(io.RawIOBase):
    """A stream whose reads are paid for by each of ``limiters`` (the pair's, the daemon's).
    Seeking and telling are the wrapped stream's (a writer may rewind it to retry)."""

    def __init__(self, stream: BinaryIO, limiters: Sequence[Limiter]) -> None:
        super().__init__()
        self._stream = stream
        self._limiters = tuple(limiters)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._stream.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def _piece(self) -> int:
        pieces = [p for p in (limiter.piece() for limiter in self._limiters) if p is not None]
        return min(pieces, default=1 << 20)

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (at most a quarter second's worth at once); all of them when
        ``n`` is negative, as a file's read() gives."""
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(self._piece()), b""))
        data = self._stream.read(min(n, self._piece()))
        for limiter in self._limiters:
            limiter.take(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def throttled(stream: BinaryIO, limiters: Sequence[Limiter]) -> BinaryIO:
    """``stream`` itself when no limiter limits it now, else a :class:`ThrottledReader`."""
    active = [limiter for limiter in limiters if not limiter.schedule.unlimited]
    if not active:
        return stream
    return cast(BinaryIO, ThrottledReader(stream, active))


_SHARED: dict[str, Limiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(name: str, schedule: Schedule) -> Limiter:
    """The process's one limiter called ``name`` ("daemon", or a pair's key), made anew when
    its schedule changed (a reloaded config)."""
    with _SHARED_LOCK:
        current = _SHARED.get(name)
        if current is None or current.schedule != schedule:
            current = _SHARED[name] = Limiter(schedule)
        return current


def pair_limiters(key: str, own: Schedule | None, daemon: Schedule | None) -> tuple[Limiter, ...]:
    """The limiters a pair's transfers pay: the daemon's (shared by every pair) and its own."""
    named = (("daemon", daemon), (f"pair {key}", own))
    return tuple(shared_limiter(name, s) for name, s in named if s is not None and not s.unlimited)
