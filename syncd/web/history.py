"""Recent runs as the dashboard plots them: one point per run, totals per day. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo


@dataclass(frozen=True, slots=True)
class RunPoint:
    """One finished run of one pair."""

    pair: str
    started_at: float  # time.time()
    seconds: float
    files: int  # actions done (copies, deletes, moves, conflicts...)
    bytes_moved: int
    outcome: str


@dataclass(frozen=True, slots=True)
class DayTotal:
    day: date
    runs: int
    files: int
    bytes_moved: int
    seconds: float

    def plus(self, runs: int, files: int, bytes_moved: int, seconds: float) -> DayTotal:
        return DayTotal(
            self.day, self.runs + runs, self.files + files, self.bytes_moved + bytes_moved, self.seconds + seconds
        )


def run_point(
    pair: str,
    *,
    started_at: float,
    ended_at: float | None,
    counts: dict[str, int],
    bytes_moved: int,
    outcome: str,
) -> RunPoint | None:
    """The point of one index ``runs`` row; None for a run not finished (no end yet)."""
    if ended_at is None:
        return None
    return RunPoint(pair, started_at, max(0.0, ended_at - started_at), sum(counts.values()), bytes_moved, outcome)


def per_run(points: Iterable[RunPoint], limit: int) -> list[RunPoint]:
    """The newest ``limit`` runs, oldest first (as a chart reads left to right)."""
    newest = sorted(points, key=lambda p: p.started_at, reverse=True)[: max(0, limit)]
    return newest[::-1]


def runs_to_count(runs: Iterable[tuple[int, bool]], upto: int) -> tuple[list[int], int]:
    """Which runs (``(id, finished)``) newer than ``upto`` to add to a pair's day totals now, and
    the new ``upto`` (every run at or below it is counted or never will be). A pair runs once at
    a time, so only its newest run may still be going: it waits, ``upto`` stops below it; an
    older unfinished run died (its process was killed) and is never counted."""
    new = sorted((run_id, done) for run_id, done in runs if run_id > upto)
    if not new:
        return [], upto
    newest, newest_done = new[-1]
    if newest_done:
        return [run_id for run_id, done in new if done], newest
    return [run_id for run_id, done in new[:-1] if done], max(upto, newest - 1)


def add_to_days(days: Mapping[date, DayTotal], points: Iterable[RunPoint], tz: tzinfo) -> dict[date, DayTotal]:
    """``days`` with ``points`` added, each on the calendar day (in ``tz``) it started."""
    out = dict(days)
    for point in points:
        day = datetime.fromtimestamp(point.started_at, tz).date()
        out[day] = out.get(day, DayTotal(day, 0, 0, 0, 0.0)).plus(1, point.files, point.bytes_moved, point.seconds)
    return out


def sum_days(books: Iterable[Mapping[date, DayTotal]]) -> dict[date, DayTotal]:
    """Several pairs' day totals as one."""
    out: dict[date, DayTotal] = {}
    for book in books:
        for day, total in book.items():
            was = out.get(day, DayTotal(day, 0, 0, 0, 0.0))
            out[day] = was.plus(total.runs, total.files, total.bytes_moved, total.seconds)
    return out


def day_window(totals: Mapping[date, DayTotal], *, days: int, now: float, tz: tzinfo) -> list[DayTotal]:
    """The last ``days`` calendar days in ``tz`` (today last), a day with no run as zeros so
    that a gap shows as a gap."""
    today = datetime.fromtimestamp(now, tz).date()
    count = max(1, days)
    window = [today - timedelta(days=count - 1 - i) for i in range(count)]
    return [totals.get(day, DayTotal(day, 0, 0, 0, 0.0)) for day in window]


def per_day(points: Iterable[RunPoint], *, days: int, now: float, tz: tzinfo) -> list[DayTotal]:
    """Totals of each of the last ``days`` calendar days in ``tz`` (today last), zeros for a day
    with no run. A run counts on the day it started."""
    return day_window(add_to_days({}, points, tz), days=days, now=now, tz=tz)


def merged(groups: Iterable[Sequence[RunPoint]]) -> list[RunPoint]:
    """Every pair's points as one list, in start order."""
    return sorted((p for group in groups for p in group), key=lambda p: p.started_at)
