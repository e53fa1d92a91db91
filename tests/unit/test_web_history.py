"""The dashboard's aggregation of runs: per run and per calendar day (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from syncd.index.store import RunInfo
from syncd.web.dashboard import RUNS_FIRST_READ, RUNS_STEP, DayBooks, Health, health, live_key
from syncd.web.history import (
    DayTotal,
    RunPoint,
    add_to_days,
    day_window,
    merged,
    per_day,
    per_run,
    run_point,
    runs_to_count,
    sum_days,
)


def at(day: int, hour: int, minute: int = 0, tz: timezone = UTC) -> float:
    return datetime(2024, 5, day, hour, minute, tzinfo=tz).timestamp()


def point(pair: str, started: float, files: int = 1, size: int = 10, seconds: float = 2.0) -> RunPoint:
    return RunPoint(pair, started, seconds, files, size, "ok")


def test_run_point_counts_every_action_and_skips_unfinished_runs() -> None:
    done = run_point(
        "a/b", started_at=100.0, ended_at=103.5, counts={"copy": 3, "delete": 2}, bytes_moved=7, outcome="ok"
    )
    assert done == RunPoint("a/b", 100.0, 3.5, 5, 7, "ok")
    assert run_point("a/b", started_at=100.0, ended_at=None, counts={}, bytes_moved=0, outcome="running") is None
    clock_went_back = run_point("a/b", started_at=100.0, ended_at=99.0, counts={}, bytes_moved=0, outcome="ok")
    assert clock_went_back is not None and clock_went_back.seconds == 0.0


def test_per_run_keeps_the_newest_in_start_order() -> None:
    points = [point("a/x", float(t)) for t in (5, 1, 4, 2, 3)]
    assert [p.started_at for p in per_run(points, 3)] == [3.0, 4.0, 5.0]
    assert per_run(points, 0) == []
    assert [p.started_at for p in per_run(points, 99)] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_per_day_sums_each_calendar_day_and_shows_empty_days_as_zero() -> None:
    points = [
        point("a/x", at(10, 9), files=2, size=100, seconds=1.0),
        point("b/y", at(10, 23, 59), files=3, size=50, seconds=2.0),
        point("a/x", at(12, 0, 1), files=1, size=1, seconds=0.5),
        point("a/x", at(1, 12), files=99, size=99),  # before the window: not counted
    ]
    days = per_day(points, days=3, now=at(12, 18), tz=UTC)
    assert [d.day for d in days] == [date(2024, 5, 10), date(2024, 5, 11), date(2024, 5, 12)]
    assert [(d.runs, d.files, d.bytes_moved, d.seconds) for d in days] == [
        (2, 5, 150, 3.0),
        (0, 0, 0, 0.0),
        (1, 1, 1, 0.5),
    ]


def test_per_day_uses_the_given_time_zone_for_day_boundaries() -> None:
    east = timezone(timedelta(hours=3))
    late = point("a/x", at(10, 22))  # 22:00 UTC is 01:00 the next day at UTC+3
    assert [d.runs for d in per_day([late], days=2, now=at(11, 12), tz=UTC)] == [1, 0]
    assert [d.runs for d in per_day([late], days=2, now=at(11, 12), tz=east)] == [0, 1]


def test_merged_orders_every_pairs_runs_by_start() -> None:
    a = [point("a/x", 3.0), point("a/x", 1.0)]
    b = [point("b/y", 2.0)]
    assert [(p.pair, p.started_at) for p in merged([a, b])] == [("a/x", 1.0), ("b/y", 2.0), ("a/x", 3.0)]


def test_health_words() -> None:
    running = {"running": {"state": "running"}}
    assert health({**running, "paused": True}, "ok", 0) == Health("running", "busy")  # a run in flight finishes
    assert health({"paused": True}, "ok", 0) == Health("paused", "paused")
    assert health({"running": {"state": "queued"}}, "ok", 0) == Health("queued", "busy")
    assert health({}, None, 0) == Health("never synced", "none")
    assert health({}, "ok", 0) == Health("ok", "ok")
    assert health({}, "ok", 2) == Health("item errors", "warn")
    assert health({}, "item-errors", 0) == Health("item errors", "warn")
    assert health({}, "fatal", 0) == Health("failing: fatal", "bad")
    assert health({}, "aborted", 0) == Health("failing: aborted", "bad")
    assert health({}, "retry", 0) == Health("retry", "warn")


def test_live_key_changes_with_what_the_page_shows_but_not_with_progress() -> None:
    idle = {"pair": "a/x", "paused": False, "last": {"finished_at": 10.0}}
    busy = {**idle, "running": {"state": "running", "done": 1, "actions": 9}}
    further = {**idle, "running": {"state": "running", "done": 5, "actions": 9}}
    assert live_key(busy) == live_key(further)
    assert len({live_key(idle), live_key(busy), live_key({**idle, "paused": True})}) == 3
    assert live_key(idle) != live_key({**idle, "last": {"finished_at": 11.0}})


def test_runs_to_count_waits_for_the_newest_and_drops_dead_runs() -> None:
    assert runs_to_count([], 0) == ([], 0)
    assert runs_to_count([(3, True), (1, True), (2, True)], 0) == ([1, 2, 3], 3)
    assert runs_to_count([(1, True), (2, True), (3, False)], 0) == ([1, 2], 2)  # 3 still runs: it waits
    assert runs_to_count([(1, True), (2, True), (3, True)], 2) == ([3], 3)  # counted once
    assert runs_to_count([(1, False), (2, True)], 0) == ([2], 2)  # 1 died: never counted
    assert runs_to_count([(5, False)], 5) == ([], 5)
    assert runs_to_count([(6, False)], 5) == ([], 5)


def test_day_totals_add_up_across_reads_and_pairs() -> None:
    first = add_to_days({}, [point("a/x", at(10, 9), files=2, size=10)], UTC)
    both = add_to_days(first, [point("a/x", at(10, 10), files=1, size=5), point("a/x", at(11, 1))], UTC)
    assert first == {date(2024, 5, 10): DayTotal(date(2024, 5, 10), 1, 2, 10, 2.0)}  # not changed in place
    other = add_to_days({}, [point("b/y", at(11, 2), files=7, size=70)], UTC)
    total = sum_days([both, other])
    assert total[date(2024, 5, 10)] == DayTotal(date(2024, 5, 10), 2, 3, 15, 4.0)
    assert total[date(2024, 5, 11)] == DayTotal(date(2024, 5, 11), 2, 8, 80, 4.0)
    window = day_window(total, days=3, now=at(12, 8), tz=UTC)
    assert [(d.day.day, d.runs) for d in window] == [(10, 2), (11, 2), (12, 0)]


class FakeStore:
    """The one Store call DayBooks makes: ``runs(limit)``, newest first."""

    def __init__(self) -> None:
        self.rows: list[RunInfo] = []
        self.reads: list[int] = []

    def add(self, started: float, *, files: int = 1, finished: bool = True) -> None:
        ended = started + 1.0 if finished else None
        self.rows.append(
            RunInfo(len(self.rows) + 1, started, ended, "ok" if finished else "running", {"copy": files}, 0, 0, "")
        )

    def finish_last(self) -> None:
        last = self.rows[-1]
        self.rows[-1] = RunInfo(last.id, last.started_at, last.started_at + 1.0, "ok", last.counts, 0, 0, "")

    def runs(self, limit: int = 10) -> list[RunInfo]:
        self.reads.append(limit)
        return self.rows[::-1][:limit]


def files_on(books: DayBooks, store: FakeStore, now: float) -> dict[int, int]:
    _runs, days = books.read("a/x", store, now=now, tz=UTC)  # type: ignore[arg-type]
    return {day.day: total.files for day, total in days.items()}


def test_day_books_read_only_what_is_new_and_count_each_run_once() -> None:
    store, books, now = FakeStore(), DayBooks(), at(12, 12)
    for hour in range(10):
        store.add(at(11, hour), files=2)
    assert files_on(books, store, now) == {11: 20}
    assert store.reads == [RUNS_FIRST_READ]
    store.add(at(12, 9), files=3)
    store.add(at(12, 10), files=1, finished=False)  # still running
    assert files_on(books, store, now) == {11: 20, 12: 3}
    assert store.reads[-1] == RUNS_STEP  # from now on only the newest runs are read
    assert files_on(books, store, now) == {11: 20, 12: 3}  # nothing counted twice
    store.finish_last()
    assert files_on(books, store, now) == {11: 20, 12: 4}  # counted once it ended
    for minute in range(RUNS_STEP + 50):  # more new runs than one step: it reads further back
        store.add(at(12, 11) + minute)
    assert files_on(books, store, now) == {11: 20, 12: 4 + RUNS_STEP + 50}
    old_days = files_on(books, store, at(12, 12) + 13 * 86400)
    assert old_days == {12: 4 + RUNS_STEP + 50}  # days out of the window are forgotten


def test_day_books_start_over_on_a_new_index() -> None:
    books, store = DayBooks(), FakeStore()
    for hour in range(5):
        store.add(at(11, hour))
    assert files_on(books, store, at(12, 0)) == {11: 5}
    fresh = FakeStore()  # the index was deleted: ids start again at 1
    fresh.add(at(11, 20), files=4)
    assert files_on(books, fresh, at(12, 0)) == {11: 4}
