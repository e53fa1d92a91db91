"""One page's state: the daemon's live ``status`` (the same handler the control socket
calls) plus what each pair's index holds (runs, item errors, skipped names, conflicts), read
with the same :class:`~syncd.index.store.Store` calls as ``syncd status``, ``log`` and
``conflicts``. Names stay exact here: the template escapes them where it writes them."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from syncd.config import PairConfig
from syncd.web import plots
from syncd.web.history import (
    DayTotal,
    RunPoint,
    add_to_days,
    day_window,
    merged,
    per_run,
    run_point,
    runs_to_count,
    sum_days,
)

if TYPE_CHECKING:
    from syncd.index.store import RunInfo, Store

log = logging.getLogger("syncd.web")

RUNS_CHARTED = 30
RUNS_STEP = 100  # runs a page reads of each pair once its day totals are known...
RUNS_FIRST_READ = 5000  # ...and at most at the first page: 14 days of a 5-minute interval, and watcher runs
DAYS = 14
ERRORS_SHOWN = 20
SKIPPED_SHOWN = 100
CONFLICTS_SHOWN = 50
RECENT_RUNS_SHOWN = 20
BAD_OUTCOMES = frozenset({"fatal", "aborted", "retry", "item-errors", "locked", "interrupted", "died"})


@dataclass(frozen=True, slots=True)
class Health:
    label: str  # ok, running, queued, paused, item errors, failing: fatal, never synced...
    level: str  # CSS class: ok, busy, paused, warn, bad, none


def health(live: dict[str, Any], last_outcome: str | None, item_errors: int) -> Health:
    """A pair's health in one word or two, from its live status row, the outcome of its last
    run (live, or from the index when the daemon has not run it yet) and its item errors."""
    running = live.get("running")
    if isinstance(running, dict) and running.get("state") == "running":
        return Health("running", "busy")
    if live.get("paused"):
        return Health("paused", "paused")
    if isinstance(running, dict):
        return Health("queued", "busy")
    if last_outcome is None:
        return Health("never synced", "none")
    if last_outcome in ("fatal", "aborted"):
        return Health(f"failing: {last_outcome}", "bad")
    if last_outcome == "item-errors" or item_errors:
        return Health("item errors", "warn")
    if last_outcome == "ok":
        return Health("ok", "ok")
    return Health(last_outcome, "warn")  # retry, locked, interrupted: the next run should do


@dataclass(slots=True)
class PairView:
    key: str
    health: Health
    paused: bool
    paused_since: float | None
    running: dict[str, Any] | None
    last_at: float | None  # when the last run finished (live) or started (index)
    last_outcome: str | None
    last_message: str
    next_run: float | None
    files: int | None  # paths in sync (index bases); None before the first run
    errors: list[tuple[str, str]] = field(default_factory=list)
    error_count: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_count: int = 0
    conflict_count: int = 0
    charts: list[str] = field(default_factory=list)
    problem: str = ""  # the index could not be read

    live_key: str = ""  # see live_key()


@dataclass(frozen=True, slots=True)
class Conflict:
    pair: str
    at: float
    path: str
    side: str | None
    detail: str


@dataclass(slots=True)
class Page:
    pairs: list[PairView]
    day_charts: list[str]
    recent: list[RunPoint]
    conflicts: list[Conflict]
    daemon: dict[str, Any]
    generated_at: float


@dataclass(slots=True)
class _IndexState:
    points: list[RunPoint] = field(default_factory=list)  # the newest finished runs, newest first
    days: dict[date, DayTotal] = field(default_factory=dict)
    last_outcome: str | None = None
    last_started: float | None = None
    last_message: str = ""
    files: int | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_count: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    problem: str = ""


class DayBooks:
    """Each pair's totals per day, kept from one page to the next, so that a page reads only
    the runs that are new since the one before (the first page reads at most
    :data:`RUNS_FIRST_READ` runs of each pair: a pair with more in :data:`DAYS` days shows
    less on its oldest days). Small: a few numbers per pair and day."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._books: dict[str, _Book] = {}

    def read(self, key: str, store: Store, *, now: float, tz: tzinfo) -> tuple[list[RunInfo], dict[date, DayTotal]]:
        """The pair's newest runs (at least :data:`RUNS_CHARTED` when it has them, newest
        first) and its day totals, updated with the runs finished since the last call."""
        with self._lock:
            book = self._books.setdefault(key, _Book())
            if book.upto and (newest := store.runs(1)) and newest[0].id < book.upto:
                book = self._books[key] = _Book()  # a new index (deleted, or moved by a reload): count anew
            limit = RUNS_STEP if book.upto else RUNS_FIRST_READ
            while True:  # read back far enough to reach the last run counted
                runs = store.runs(limit)
                if len(runs) < limit or limit >= RUNS_FIRST_READ or runs[-1].id <= book.upto:
                    break
                limit = min(limit * 8, RUNS_FIRST_READ)
            ids, book.upto = runs_to_count([(r.id, r.ended_at is not None) for r in runs], book.upto)
            chosen = set(ids)
            points = [p for r in runs if r.id in chosen and (p := _point(key, r)) is not None]
            oldest = datetime.fromtimestamp(now, tz).date() - timedelta(days=DAYS)
            book.days = {d: t for d, t in add_to_days(book.days, points, tz).items() if d > oldest}
            return runs, dict(book.days)


@dataclass(slots=True)
class _Book:
    upto: int = 0  # every run of the pair with an id up to this is counted (or never will be)
    days: dict[date, DayTotal] = field(default_factory=dict)


def _point(key: str, run: RunInfo) -> RunPoint | None:
    return run_point(
        key,
        started_at=run.started_at,
        ended_at=run.ended_at,
        counts=run.counts,
        bytes_moved=run.bytes_moved,
        outcome=run.outcome,
    )


def read_index(pair: PairConfig, books: DayBooks, *, now: float, tz: tzinfo) -> _IndexState:
    """What ``pair``'s index holds, as ``status`` reads it; empty before its first run. An
    index that cannot be read is a ``problem`` shown on the page, never an error of the page."""
    from syncd.index.store import Store

    state = _IndexState()
    if not pair.index_path.exists():
        return state
    if not index_ready(pair):
        state.problem = "the index is being created or upgraded; the next run shows it"
        return state
    try:
        store = Store.open(pair.index_path)
        try:
            runs, state.days = books.read(pair.key, store, now=now, tz=tz)
            state.errors = [(e.path, e.error) for e in store.item_errors()]
            state.files = store.count_bases()
            state.skipped_count = store.count_skipped()
            state.skipped = store.skipped()[:SKIPPED_SHOWN]
            history = list(store.history(CONFLICTS_SHOWN, "conflict"))
        finally:
            store.close()
    except Exception as exc:  # SyncdError, OSError, sqlite3.Error and the like: the page shows it, the daemon goes on
        log.warning("cannot read the index of %s: %s", pair.key, exc)
        state.problem = f"cannot read the index: {exc}"
        return state
    state.conflicts = [Conflict(pair.key, h.at, h.path, h.side, h.detail) for h in history]
    if runs:
        last = runs[0]
        state.last_outcome, state.last_started, state.last_message = last.outcome, last.started_at, last.message
    state.points = [p for r in runs[:RUNS_CHARTED] if (p := _point(pair.key, r)) is not None]
    return state


def index_ready(pair: PairConfig) -> bool:
    """The pair's index exists at the schema this syncd writes. The page only reads: it must
    never be the one to create or migrate an index (:meth:`Store.open` would, in a child
    process, for every pair the daemon has not prepared yet)."""
    import sqlite3

    from syncd.index.store import HEAD_REVISION

    try:
        with contextlib.closing(sqlite3.connect(f"{pair.index_path.as_uri()}?mode=ro", uri=True, timeout=2)) as db:
            rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    return [row[0] for row in rows] == [HEAD_REVISION]


def pair_view(pair: PairConfig, live: dict[str, Any], index: _IndexState) -> PairView:
    last_live = live.get("last") if isinstance(live.get("last"), dict) else None
    outcome: str | None
    if last_live is not None:
        outcome, at, message = str(last_live.get("outcome")), last_live.get("finished_at"), last_live.get("message")
    else:
        outcome, at, message = index.last_outcome, index.last_started, index.last_message
    running = live.get("running") if isinstance(live.get("running"), dict) else None
    view = PairView(
        key=pair.key,
        health=health(live, outcome, len(index.errors)),
        paused=bool(live.get("paused")),
        paused_since=_number(live.get("paused_since")),
        running=running,
        last_at=float(at) if isinstance(at, int | float) else None,
        last_outcome=outcome,
        last_message=str(message or ""),
        next_run=_number(live.get("next_run")),
        files=index.files,
        errors=index.errors[:ERRORS_SHOWN],
        error_count=len(index.errors),
        skipped=index.skipped,
        skipped_count=index.skipped_count,
        conflict_count=len(index.conflicts),
        problem=index.problem,
        live_key=live_key(live),
    )
    view.charts = run_charts(per_run(index.points, RUNS_CHARTED))
    return view


def run_charts(points: Sequence[RunPoint]) -> list[str]:
    """Files, bytes and seconds of each run, as three charts."""
    first = _clock(points[0].started_at) if points else ""
    last = _clock(points[-1].started_at) if points else ""

    def bars(value: str) -> list[plots.Bar]:
        return [
            plots.Bar(f"{_clock(p.started_at)} {p.outcome}", float(getattr(p, value)), p.outcome in BAD_OUTCOMES)
            for p in points
        ]

    return [
        plots.bar_chart(bars("files"), title="files per run", first=first, last=last),
        plots.bar_chart(bars("bytes_moved"), title="bytes per run", fmt=plots.size, first=first, last=last),
        plots.bar_chart(bars("seconds"), title="run duration", fmt=plots.seconds, first=first, last=last),
    ]


def day_charts(days: Sequence[DayTotal]) -> list[str]:
    """Files, bytes and run time of every pair together, per day."""
    first = days[0].day.isoformat() if days else ""
    last = days[-1].day.isoformat() if days else ""

    def bars(value: str) -> list[plots.Bar]:
        return [plots.Bar(d.day.isoformat(), float(getattr(d, value))) for d in days]

    return [
        plots.bar_chart(bars("files"), title="files per day", first=first, last=last),
        plots.bar_chart(bars("bytes_moved"), title="bytes per day", fmt=plots.size, first=first, last=last),
        plots.bar_chart(bars("seconds"), title="sync time per day", fmt=plots.seconds, first=first, last=last),
    ]


def build_page(
    status: dict[str, Any], pairs: Sequence[PairConfig], books: DayBooks, *, now: float | None = None
) -> Page:
    """The whole page: ``status`` is the daemon's ``status`` result (``{"daemon", "pairs"}``)."""
    now = time.time() if now is None else now
    tz = local_zone()
    rows = {str(row.get("pair")): row for row in status.get("pairs", []) if isinstance(row, dict)}
    views, points, days, conflicts = [], [], [], []
    for pair in pairs:
        index = read_index(pair, books, now=now, tz=tz)
        views.append(pair_view(pair, rows.get(pair.key, {}), index))
        points.append(index.points)
        days.append(index.days)
        conflicts += index.conflicts
    return Page(
        pairs=views,
        day_charts=day_charts(day_window(sum_days(days), days=DAYS, now=now, tz=tz)),
        recent=merged(points)[::-1][:RECENT_RUNS_SHOWN],
        conflicts=sorted(conflicts, key=lambda c: c.at, reverse=True)[:CONFLICTS_SHOWN],
        daemon=dict(status.get("daemon") or {}),
        generated_at=now,
    )


def live_key(row: dict[str, Any]) -> str:
    """Changes whenever the page would show the pair otherwise, save a run's progress: paused
    or not, a run queued, running or not, the end of the last run. The page holds the key it
    was rendered with and reloads when the polled one differs."""
    running = row.get("running") if isinstance(row.get("running"), dict) else None
    last = row.get("last") if isinstance(row.get("last"), dict) else None
    finished = last.get("finished_at") if last else None
    ended = f"{finished:.3f}" if isinstance(finished, int | float) else "-"
    return f"{bool(row.get('paused'))}|{running.get('state') if running else '-'}|{ended}"


def live_json(status: dict[str, Any]) -> dict[str, Any]:
    """What the page's script polls, from the daemon's ``status`` alone (no index read):
    each pair's :func:`live_key` and run progress, exact names."""
    out = []
    for row in status.get("pairs", []):
        if not isinstance(row, dict):
            continue
        last = row.get("last") if isinstance(row.get("last"), dict) else None
        out.append(
            {
                "pair": row.get("pair"),
                "key": live_key(row),
                "paused": bool(row.get("paused")),
                "running": row.get("running"),
                "last_outcome": last.get("outcome") if last else None,
                "last_finished_at": last.get("finished_at") if last else None,
                "next_run": row.get("next_run"),
            }
        )
    return {"pairs": out, "running": (status.get("daemon") or {}).get("running", [])}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def _clock(stamp: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(stamp))
