"""Bandwidth limits: ``bwlimit`` in ``[daemon]`` (all pairs together) and per pair.

A limit is a rate in bytes per second (``"8M"``, ``"512K"``, ``"1.5M"``, ``"100000"``; K, M,
G are powers of 1024, as in rclone), ``"off"``, an upload and a download rate apart
(``"10M:1M"``: up to the bucket at 10M, down to the files at 1M; ``"off:512K"``), or a
timetable of ``WHEN,RATE`` entries, as rclone's ``--bwlimit``:

* daily, ``HH:MM,RATE`` (``"08:00,512K 19:00,10M 23:00,off"``): each rate holds from its time
  until the next entry's, the last one past midnight until the first one's time;
* weekly, ``Day-HH:MM,RATE`` (``"Mon-08:00,512K Fri-18:00,off"``; Mon..Sun or Monday..Sunday):
  each rate holds until the next entry's, the last one past Sunday into the week after.

The engine wraps every stream it moves between the two sides in a :class:`ThrottledReader`
of the pair's :class:`Limiter` and the daemon's for that direction: uploads and downloads of
every remote type are limited in one place. A limiter is shared by every transfer that uses
it (threads of a run, runs of pairs at once): :func:`shared_limiter` keeps one per name and
direction in this process.

Parsing and picking a slot are pure; :class:`Limiter` reads a clock and sleeps.
"""

from __future__ import annotations

import enum
import io
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, cast

_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)
_SLOT_RE = re.compile(r"^(?:([A-Za-z]+)-)?(\d{1,2}):(\d{2}),(.+)$")
_TIME_RE = re.compile(r"^(?:[A-Za-z]+-)?\d{1,2}:\d{2}$")  # a time alone: a timetable entry missing its rate
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MIN, WEEK_MIN = 24 * 60, 7 * 24 * 60
MIN_PIECE = 4096  # bytes: a throttled read never asks for less (nor waits much longer than a quarter second)


class Direction(enum.Enum):
    """Which way bytes go: up to the bucket, or down to the files (rclone's ``UP:DOWN``)."""

    UP = "up"
    DOWN = "down"


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


def parse_rates(text: str) -> tuple[int | None, int | None]:
    """``"8M"`` -> the same rate up and down; ``"10M:1M"`` -> (up, down). :raises ValueError:"""
    up, colon, down = text.partition(":")
    if not colon:
        rate = parse_rate(text)
        return rate, rate
    if ":" in down:
        raise ValueError(f"{text!r}: at most one ':' (UP:DOWN, e.g. 10M:1M)")
    return parse_rate(up), parse_rate(down)


@dataclass(frozen=True, slots=True)
class Slot:
    start_min: int  # minutes after midnight (a daily timetable) or after Monday 00:00 (weekly), local time
    up: int | None  # bytes/s towards the bucket; None: no limit
    down: int | None  # bytes/s towards the files

    def rate(self, direction: Direction) -> int | None:
        return self.up if direction is Direction.UP else self.down


@dataclass(frozen=True, slots=True)
class Schedule:
    """A limit over the day or the week: one slot (a plain rate) or a timetable, by start."""

    slots: tuple[Slot, ...]
    text: str  # as configured, for messages
    weekly: bool = False

    def rate_at(self, when: datetime, direction: Direction = Direction.UP) -> int | None:
        """The rate in force at local time ``when`` for ``direction`` (bytes/s, None: no limit)."""
        minute = minute_of_day(when) + (when.weekday() * DAY_MIN if self.weekly else 0)
        current = self.slots[-1]  # before the first entry, the last one still holds from the period before
        for slot in self.slots:
            if slot.start_min <= minute:
                current = slot
        return current.rate(direction)

    def unlimited(self, direction: Direction | None = None) -> bool:
        """No slot limits ``direction`` (None: either direction)."""
        directions = tuple(Direction) if direction is None else (direction,)
        return all(slot.rate(d) is None for slot in self.slots for d in directions)


def parse_bwlimit(text: str) -> Schedule:
    """A ``bwlimit`` value: a rate, ``UP:DOWN``, ``off``, or a daily or weekly timetable.

    :raises ValueError: saying which entry is wrong.
    """
    entries = text.split()
    if len(entries) <= 1 and "," not in text:
        if _TIME_RE.match(text.strip()):
            raise ValueError(f"{text!r} is not a rate: a timetable entry is HH:MM,RATE (e.g. 08:00,512K)")
        return Schedule((Slot(0, *parse_rates(text)),), text)
    slots, days = [], set()
    for entry in entries:
        match = _SLOT_RE.match(entry)
        if not match:
            raise ValueError(f"{entry!r}: a timetable entry is HH:MM,RATE or Day-HH:MM,RATE (e.g. Mon-08:00,512K)")
        day, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{entry!r}: {hours:02d}:{minutes:02d} is not a time of day")
        days.add(day is not None)
        slots.append(Slot(_weekday(entry, day) * DAY_MIN + hours * 60 + minutes, *parse_rates(match.group(4))))
    if len(days) > 1:
        raise ValueError(f"{text!r}: either every timetable entry names a day (Mon-08:00,1M) or none does")
    starts = [slot.start_min for slot in slots]
    if starts != sorted(set(starts)):
        raise ValueError(f"{text!r}: timetable entries must be in order of time (Monday first), each time once")
    return Schedule(tuple(slots), text, weekly=days == {True})


def _weekday(entry: str, day: str | None) -> int:
    if day is None:
        return 0
    name = day.lower()
    if name in _DAYS:
        return _DAYS.index(name)
    if name in _FULL_DAYS:
        return _FULL_DAYS.index(name)
    raise ValueError(f"{entry!r}: {day!r} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")


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
        direction: Direction = Direction.UP,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.schedule, self.direction = schedule, direction
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._lock = threading.Lock()
        self._free_at = 0.0  # monotonic time at which the bytes taken so far have been paid for

    def rate(self) -> int | None:
        return self.schedule.rate_at(self._wall(), self.direction)

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
    active = [limiter for limiter in limiters if not limiter.schedule.unlimited(limiter.direction)]
    if not active:
        return stream
    return cast(BinaryIO, ThrottledReader(stream, active))


_SHARED: dict[tuple[str, Direction], Limiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(name: str, schedule: Schedule, direction: Direction) -> Limiter:
    """The process's one limiter called ``name`` ("daemon", or a pair's key) for ``direction``,
    made anew when its schedule changed (a reloaded config)."""
    with _SHARED_LOCK:
        current = _SHARED.get((name, direction))
        if current is None or current.schedule != schedule:
            current = _SHARED[(name, direction)] = Limiter(schedule, direction)
        return current


Bandwidth = dict[Direction, tuple[Limiter, ...]]  # the limiters a transfer that way pays


def pair_limiters(key: str, own: Schedule | None, daemon: Schedule | None) -> Bandwidth:
    """The limiters a pair's transfers pay each way: the daemon's (shared by every pair) and its
    own; a way nothing limits is left out."""
    named = (("daemon", daemon), (f"pair {key}", own))
    limits = {
        direction: tuple(
            shared_limiter(name, s, direction) for name, s in named if s is not None and not s.unlimited(direction)
        )
        for direction in Direction
    }
    return {direction: limiters for direction, limiters in limits.items() if limiters}
