"""Recent runs as the dashboard plots them: one point per run, totals per day. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def per_day(points: Iterable[RunPoint], *, days: int, now: float, tz: tzinfo) -> list[DayTotal]:
    """Totals of each of the last ``days`` calendar days in ``tz`` (today last), a day with
    no run included as zeros so that a gap shows as a gap. A run counts on the day it started."""
    today = datetime.fromtimestamp(now, tz).date()
    first = today - timedelta(days=max(1, days) - 1)
    sums: dict[date, list[float]] = {first + timedelta(days=i): [0, 0, 0, 0.0] for i in range(max(1, days))}
    for point in points:
        day = datetime.fromtimestamp(point.started_at, tz).date()
        if day in sums:
            total = sums[day]
            total[0] += 1
            total[1] += point.files
            total[2] += point.bytes_moved
            total[3] += point.seconds
    return [DayTotal(day, int(s[0]), int(s[1]), int(s[2]), s[3]) for day, s in sorted(sums.items())]


def merged(groups: Iterable[Sequence[RunPoint]]) -> list[RunPoint]:
    """Every pair's points as one list, in start order."""
    return sorted((p for group in groups for p in group), key=lambda p: p.started_at)
