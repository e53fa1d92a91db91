"""Bandwidth limits: rates and timetables parsed, the slot in force picked by a given clock,
and a limiter that makes N bytes take at least N / rate seconds."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timedelta

import pytest

from syncd.bwlimit import Direction, Limiter, Schedule, pair_limiters, parse_bwlimit, parse_rate, throttled

K, M = 1024, 1024 * 1024


def test_rates() -> None:
    assert parse_rate("8M") == 8 * M
    assert parse_rate("512K") == 512 * K
    assert parse_rate("512k") == 512 * K
    assert parse_rate("1.5M") == int(1.5 * M)
    assert parse_rate("1G") == 1024 * M
    assert parse_rate("100000") == 100000
    assert parse_rate("10MiB") == 10 * M
    assert parse_rate("off") is None and parse_rate("0") is None and parse_rate("OFF") is None
    for bad in ("8X", "-1M", "fast", "1M/s", "0.1"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def _at(clock: str, days_after_monday: int = 0) -> datetime:
    """``clock`` on Monday 2026-11-30, or that many days later."""
    hours, minutes = map(int, clock.split(":"))
    return datetime(2026, 11, 30, hours, minutes) + timedelta(days=days_after_monday)


def test_a_plain_rate_holds_all_day() -> None:
    schedule = parse_bwlimit("8M")
    assert [schedule.rate_at(_at(c), d) for c in ("00:00", "12:00", "23:59") for d in Direction] == [8 * M] * 6
    assert parse_bwlimit("off").unlimited() and not schedule.unlimited()


def test_upload_and_download_rates_apart() -> None:
    schedule = parse_bwlimit("10M:512K")
    assert schedule.rate_at(_at("12:00"), Direction.UP) == 10 * M  # to the bucket
    assert schedule.rate_at(_at("12:00"), Direction.DOWN) == 512 * K  # to the files
    half = parse_bwlimit("off:1M")
    assert half.unlimited(Direction.UP) and not half.unlimited(Direction.DOWN) and not half.unlimited()
    table = parse_bwlimit("08:00,1M:off 19:00,off")
    assert table.rate_at(_at("09:00"), Direction.UP) == M and table.rate_at(_at("09:00"), Direction.DOWN) is None
    limits = pair_limiters("u/p", half, None)
    assert list(limits) == [Direction.DOWN] and [limiter.direction for limiter in limits[Direction.DOWN]] == [
        Direction.DOWN
    ]


def test_a_weekly_timetable_picks_the_day_and_time() -> None:
    schedule = parse_bwlimit("Mon-08:00,512K Fri-18:00,off Sat-10:00,1M Sunday-20:00,off")
    at = {  # (time, days after Monday)
        ("07:59", 0): None,  # before Monday 08:00: Sunday 20:00's "off" holds from last week
        ("08:00", 0): 512 * K,
        ("23:00", 3): 512 * K,  # Thursday
        ("18:00", 4): None,  # Friday evening
        ("10:00", 5): M,  # Saturday
        ("19:59", 6): M,  # Sunday
        ("20:00", 6): None,
    }
    for (clock, day), rate in at.items():
        assert schedule.rate_at(_at(clock, day)) == rate, (clock, day)
    assert schedule.weekly and not parse_bwlimit("08:00,1M 19:00,off").weekly


def test_the_timetable_picks_the_slot_in_force() -> None:
    schedule = parse_bwlimit("08:00,512K 19:00,10M 23:00,off")
    at = {
        "00:00": None,  # the last entry (23:00, off) holds past midnight
        "07:59": None,
        "08:00": 512 * K,
        "18:59": 512 * K,
        "19:00": 10 * M,
        "22:59": 10 * M,
        "23:00": None,
        "23:59": None,
    }
    for clock, rate in at.items():
        assert schedule.rate_at(_at(clock)) == rate, clock
    wraps = parse_bwlimit("08:00,1M 20:00,2M")
    assert wraps.rate_at(_at("03:00")) == 2 * M and wraps.rate_at(_at("08:00")) == 1 * M


def test_bad_timetables_say_which_entry() -> None:
    for bad, words in (
        ("25:00,1M", "not a time of day"),
        ("08:00", "is not a rate"),
        ("08:00,1M 07:00,2M", "in order of time"),
        ("08:00,1M 08:00,2M", "each time once"),
        ("08:00,1M noon,2M", "'noon,2M'"),
        ("Mon-08:00,1M 19:00,off", "every timetable entry names a day"),
        ("Fri-08:00,1M Mon-09:00,off", "Monday first"),
        ("Someday-08:00,1M", "is not a day"),
        ("1M:2M:3M", "at most one ':'"),
        ("08:00,1M:fast", "is not a rate"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_bwlimit(bad)


class FakeTime:
    """A clock that moves only when the limiter sleeps."""

    def __init__(self, wall: datetime) -> None:
        self.now = 0.0
        self.wall = wall
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _limiter(text: str, fake: FakeTime) -> Limiter:
    return Limiter(parse_bwlimit(text), clock=lambda: fake.now, wall=lambda: fake.wall, sleep=fake.sleep)


def test_limiter_spreads_bytes_at_the_rate_in_force() -> None:
    fake = FakeTime(datetime(2026, 11, 30, 9, 0))
    limiter = _limiter("08:00,1K 19:00,off", fake)
    for _ in range(4):
        limiter.take(512)
    assert fake.now == pytest.approx(2.0)  # 2048 bytes at 1 KiB/s
    fake.wall = datetime(2026, 11, 30, 20, 0)  # the evening slot: no limit, no waiting
    limiter.take(10 * M)
    assert fake.now == pytest.approx(2.0)


def test_no_burst_is_saved_while_idle() -> None:
    fake = FakeTime(datetime(2026, 11, 30, 12, 0))
    limiter = _limiter("1K", fake)
    fake.now = 1000.0  # long idle
    limiter.take(1024)
    assert fake.slept == [pytest.approx(1.0)]


def test_throttled_reader_keeps_bytes_and_rewinds() -> None:
    fake = FakeTime(datetime(2026, 11, 30, 12, 0))
    data = bytes(range(256)) * 100
    stream = throttled(io.BytesIO(data), [_limiter("4K", fake)])
    first = stream.read(5000)
    assert len(first) == 4096  # at most a quarter second's worth, never less than 4 KiB
    assert stream.tell() == 4096 and stream.seekable()
    stream.seek(0)
    assert stream.read() == data  # read() with no size still gives everything
    assert fake.now >= (4096 + len(data)) / 4096 - 1e-9
    plain = io.BytesIO(data)
    assert throttled(plain, [_limiter("off", fake)]) is plain  # nothing to pay: the stream itself


def _drain(stream: io.RawIOBase | io.BufferedIOBase | object) -> int:
    total = 0
    while chunk := stream.read(1 << 20):  # type: ignore[attr-defined]
        total += len(chunk)
    return total


def test_n_bytes_at_limit_l_take_at_least_n_over_l() -> None:
    """Real clock: a lower bound only, which holds however loaded the machine is."""
    n, rate = 192 * K, 512 * K
    limiter = Limiter(parse_bwlimit("512K"))
    started = time.monotonic()
    assert _drain(throttled(io.BytesIO(b"x" * n), [limiter])) == n
    assert time.monotonic() - started >= n / rate - 1e-3


def test_threads_sharing_a_limiter_share_its_rate() -> None:
    n, rate = 128 * K, 512 * K
    limiter = Limiter(Schedule(parse_bwlimit("512K").slots, "512K"))
    started = time.monotonic()
    threads = [
        threading.Thread(target=_drain, args=(throttled(io.BytesIO(b"y" * (n // 2)), [limiter]),)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert time.monotonic() - started >= n / rate - 1e-3
