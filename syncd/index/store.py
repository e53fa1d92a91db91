"""The only code that touches the index database.

One SQLite file per pair (WAL mode), or any SQLAlchemy URL (PostgreSQL: several hosts sharing
the work). The tables are the SQLAlchemy models of :mod:`syncd.index.schema`, created and
changed only by the Alembic revisions in ``migrations/``.

The statements here are plain SQL with ``:name`` parameters, run by one of two executors:
the stdlib ``sqlite3`` driver for SQLite files, or a SQLAlchemy connection for any other URL.
SQLite is syncd's everyday case and the SQLAlchemy import alone costs more than a no-change
sync of 10,000 files does, so SQLAlchemy and Alembic are imported only to create or upgrade a
schema, or for another database. Both executors run the same SQL, tested on both databases.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

from syncd.errors import FatalError
from syncd.lock import process_identity
from syncd.models import Base

_PATH = itemgetter(0)

HEAD_REVISION = "0004"  # tests check this equals the newest revision in migrations/

BASE_COLUMNS = (
    "path",
    "size",
    "content_hash",
    "a_etag",
    "b_etag",
    "a_mtime_ns",
    "b_mtime_ns",
    "a_inode",
    "b_remote_id",
)
BACKOFF_FIRST_S = 60.0
BACKOFF_MAX_S = 6 * 3600.0
IN_CHUNK = 500  # bounded IN (...) lists


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    started_at: float
    ended_at: float | None
    outcome: str
    counts: dict[str, int]
    errors: int
    bytes_moved: int
    message: str
    host: str | None = None  # who runs (or ran) it: see syncd.lock.process_alive
    pid: int | None = None
    pid_start: str | None = None


@dataclass(frozen=True, slots=True)
class SideScan:
    full_at: float | None  # when the side was last listed in full (None: never recorded)
    marker: str | None  # the etag of the marker syncd last wrote there (None: unknown)


@dataclass(frozen=True, slots=True)
class HistoryItem:
    run_id: int
    at: float
    action: str
    path: str
    side: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class ItemErrorInfo:
    path: str
    error: str
    attempts: int
    next_retry: float


class _Executor(Protocol):
    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...
    def run(self, sql: str, params: dict[str, Any] | None = None) -> None: ...
    def run_many(self, sql: str, rows: Sequence[dict[str, Any]]) -> None: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class _SqliteExecutor:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=10.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params or {}).fetchall()

    def run(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.conn.execute(sql, params or {})

    def run_many(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        self.conn.executemany(sql, rows)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class _AlchemyExecutor:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self.conn = self.engine.connect()

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        return [tuple(r) for r in self.conn.execute(text(sql), params or {})]

    def run(self, sql: str, params: dict[str, Any] | None = None) -> None:
        from sqlalchemy import text

        self.conn.execute(text(sql), params or {})

    def run_many(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        from sqlalchemy import text

        self.conn.execute(text(sql), list(rows))

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def migrations_dir() -> str:
    from importlib import resources  # only to migrate: it costs a no-change sync 15 ms

    return str(resources.files("syncd.migrations"))


def upgrade(conn: Any, revision: str = "head") -> None:
    """Run the Alembic revisions up to ``revision`` on a SQLAlchemy connection."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_dir())
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


_UPGRADE_LOCK = threading.Lock()  # Alembic keeps its context in module globals: one upgrade at a time


MIGRATE_LOCK_WAIT_S = 60.0  # how long a second migrator waits for the first one's write lock


def upgrade_url(url: str) -> None:
    """Create or upgrade the schema at ``url`` in this process, all revisions in one
    transaction: a migration killed halfway leaves the schema as it was. :raises FatalError:"""
    from alembic.util import CommandError
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": MIGRATE_LOCK_WAIT_S})
        _transactional_sqlite_ddl(engine)
    else:
        engine = create_engine(url)
    try:
        with _UPGRADE_LOCK, engine.begin() as conn:
            upgrade(conn)
    except (SQLAlchemyError, CommandError) as exc:  # CommandError: e.g. an index from a newer syncd
        raise FatalError(f"index {url}: cannot create or upgrade the schema: {exc}") from exc
    finally:
        engine.dispose()


def _transactional_sqlite_ddl(engine: Any) -> None:
    """Make ``engine.begin()`` a real ``BEGIN IMMEDIATE`` on SQLite.

    The stdlib driver opens a transaction before DML only, so by default every CREATE TABLE of
    a migration commits on its own: a process killed between two of them leaves tables without
    their ``alembic_version`` row, and every later upgrade fails on "table already exists".
    IMMEDIATE also takes the write lock before Alembic reads the current revision, so two
    processes upgrading one file (e.g. an orphaned migrator and the next run's) take turns and
    the second finds the schema at head.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say when a transaction starts

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


MIGRATE_TIMEOUT_S = 600.0


def upgrade_sqlite(path: Path) -> None:
    """Create or upgrade a SQLite index: in a child process unless this one has Alembic
    loaded already (see :mod:`syncd.index.migrate`). :raises FatalError:"""
    if "alembic" in sys.modules:
        upgrade_url(f"sqlite:///{path}")
        return
    import subprocess

    try:
        done = subprocess.run(
            # -P: no current folder (nor script folder) on the child's import path. With -m
            # alone Python puts the cwd first, and a `syncd/` package planted where an admin
            # (or root) runs `syncd now` would run as them; syncd must import only itself.
            [sys.executable, "-P", "-m", "syncd.index.migrate", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=MIGRATE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise FatalError(f"index {path}: schema upgrade took more than {MIGRATE_TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise FatalError(f"index {path}: cannot start the schema upgrade: {exc}") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise FatalError(lines[-1] if lines else f"index {path}: schema upgrade failed (exit {done.returncode})")


# A new index at head, kept in memory once this process made one: the next new index is a
# copy of it (a page copy, ~1 ms) instead of a child process importing Alembic (~1 s of CPU):
# a daemon that starts serving 1,000 new users makes 1 child, not 1,000.
_EMPTY_INDEX: dict[str, sqlite3.Connection] = {}  # revision -> an empty index at it, in memory
_EMPTY_INDEX_LOCK = threading.Lock()


def _keep_empty_index(db: _Executor) -> None:
    if not isinstance(db, _SqliteExecutor) or _revision(db) != HEAD_REVISION:
        return
    with _EMPTY_INDEX_LOCK:
        if HEAD_REVISION not in _EMPTY_INDEX:
            memory = sqlite3.connect(":memory:", check_same_thread=False)
            db.conn.backup(memory)
            _EMPTY_INDEX[HEAD_REVISION] = memory


def _copy_empty_index(db: _Executor) -> bool:
    """Make the new (empty) index ``db`` a copy of the kept one; False if none is kept yet."""
    if not isinstance(db, _SqliteExecutor):
        return False
    with _EMPTY_INDEX_LOCK:
        empty = _EMPTY_INDEX.get(HEAD_REVISION)
        if empty is None:
            return False
        empty.backup(db.conn)
    db.conn.execute("PRAGMA journal_mode=WAL")  # the copy's header is the in-memory source's
    return _revision(db) == HEAD_REVISION


def _sqlite_path(target: str | Path) -> Path | None:
    text = str(target)
    if text.startswith("sqlite:///"):
        return Path(text[len("sqlite:///") :])
    return None if "://" in text else Path(text)


class Store:
    """The index of one pair."""

    def __init__(self, db: _Executor) -> None:
        self.db = db

    @classmethod
    def open(cls, target: str | Path) -> Store:
        """Open (and create or upgrade) the index at a file path or a database URL.

        :raises FatalError: the database cannot be opened or upgraded.
        """
        path = _sqlite_path(target)
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                new = not path.exists()
                db: _Executor = _SqliteExecutor(path)
                if _revision(db) != HEAD_REVISION and not (new and _copy_empty_index(db)):
                    upgrade_sqlite(path)
                    if new:
                        _keep_empty_index(db)
            else:
                db = _AlchemyExecutor(str(target))
                if _revision(db) != HEAD_REVISION:
                    upgrade_url(str(target))
        except (sqlite3.Error, OSError) as exc:
            raise FatalError(f"index {target}: cannot open: {exc}") from exc
        return cls(db)

    def close(self) -> None:
        self.db.close()

    # -- bases -----------------------------------------------------------------------------

    def load_bases(self, under: Iterable[str] | None = None) -> dict[str, Base]:
        """Every base, or (``under``) only those of these paths and of everything below them."""
        select = f"SELECT {', '.join(BASE_COLUMNS)} FROM entries"
        if under is None:
            rows = self.db.rows(select)
        else:
            rows = []
            for path in sorted(set(under)):
                # "p/" <= key < "p0" is every key below folder p ('0' follows '/'), with an index
                rows += self.db.rows(
                    f"{select} WHERE path = :p OR (path >= :low AND path < :high)",
                    {"p": path, "low": path + "/", "high": path + "0"},
                )
        self.db.commit()
        # in C: each row becomes a Base by tuple.__new__ (as Base._make does), keyed by its path
        return dict(zip(map(_PATH, rows), map(tuple.__new__, repeat(Base), rows), strict=True))

    def count_bases(self) -> int:
        (count,) = self.db.rows("SELECT count(*) FROM entries")[0]
        self.db.commit()
        return int(count)

    def commit_actions(
        self,
        run_id: int,
        *,
        put: Iterable[Base] = (),
        drop: Iterable[str] = (),
        history: Iterable[tuple[str, str, str | None, str]] = (),
    ) -> None:
        """Record finished actions in one transaction: new bases, bases to forget, and
        (action, path, side, detail) history rows. Only finished work is ever passed here."""
        bases = list(put)
        doomed = [b.path for b in bases] + list(drop)
        self._delete_paths("entries", doomed)
        self._delete_paths("item_errors", doomed)
        if bases:
            columns = ", ".join(BASE_COLUMNS)
            values = ", ".join(f":{c}" for c in BASE_COLUMNS)
            self.db.run_many(
                f"INSERT INTO entries ({columns}) VALUES ({values})",
                [{c: getattr(b, c) for c in BASE_COLUMNS} for b in bases],
            )
        now = time.time()
        rows = [{"run_id": run_id, "at": now, "action": a, "path": p, "side": s, "detail": d} for a, p, s, d in history]
        if rows:
            self.db.run_many(
                "INSERT INTO history (run_id, at, action, path, side, detail) "
                "VALUES (:run_id, :at, :action, :path, :side, :detail)",
                rows,
            )
        self.db.commit()

    def _delete_paths(self, table: str, paths: Sequence[str]) -> None:
        for start in range(0, len(paths), IN_CHUNK):
            chunk = paths[start : start + IN_CHUNK]
            names = ", ".join(f":p{i}" for i in range(len(chunk)))
            self.db.run(f"DELETE FROM {table} WHERE path IN ({names})", {f"p{i}": p for i, p in enumerate(chunk)})

    # -- hash cache ------------------------------------------------------------------------

    def load_hash_cache(self, paths: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Cached (etag, hash) of these paths."""
        cache: dict[str, tuple[str, str]] = {}
        for start in range(0, len(paths), IN_CHUNK):
            chunk = paths[start : start + IN_CHUNK]
            names = ", ".join(f":p{i}" for i in range(len(chunk)))
            rows = self.db.rows(
                f"SELECT path, etag, content_hash FROM hash_cache WHERE path IN ({names})",
                {f"p{i}": p for i, p in enumerate(chunk)},
            )
            cache.update((row[0], (row[1], row[2])) for row in rows)
        self.db.commit()
        return cache

    def save_hashes(self, hashes: Iterable[tuple[str, str, str]]) -> None:
        """Store (path, etag, hash) rows in one transaction."""
        rows = [{"path": p, "etag": e, "content_hash": h} for p, e, h in hashes]
        if not rows:
            return
        self._delete_paths("hash_cache", [r["path"] for r in rows])
        self.db.run_many("INSERT INTO hash_cache (path, etag, content_hash) VALUES (:path, :etag, :content_hash)", rows)
        self.db.commit()

    # -- folder etags ----------------------------------------------------------------------

    def load_folder_etags(self, side: str) -> dict[str, str]:
        rows = self.db.rows("SELECT path, etag FROM folder_etags WHERE side = :side", {"side": side})
        self.db.commit()
        return {row[0]: row[1] for row in rows}

    def save_folder_etags(self, side: str, etags: dict[str, str]) -> None:
        self.db.run("DELETE FROM folder_etags WHERE side = :side", {"side": side})
        if etags:
            self.db.run_many(
                "INSERT INTO folder_etags (side, path, etag) VALUES (:side, :path, :etag)",
                [{"side": side, "path": p, "etag": e} for p, e in etags.items()],
            )
        self.db.commit()

    # -- how each side was scanned (syncd.engine.scans) ----------------------------------------

    def side_scans(self) -> dict[str, SideScan]:
        """Per side ("files", "bucket"): when it was last listed in full, and its marker's kept etag."""
        rows = self.db.rows("SELECT side, full_at, marker FROM side_scans")
        self.db.commit()
        return {side: SideScan(full_at, marker) for side, full_at, marker in rows}

    def save_full_scans(self, sides: Iterable[str], at: float) -> None:
        """Note that ``sides`` were listed in full at ``at`` (one transaction)."""
        for side in sides:
            self._upsert_scan(side, "full_at", at)
        self.db.commit()

    def save_marker(self, side: str, marker: str | None) -> None:
        """Keep the etag of the marker syncd wrote on ``side`` (None: unknown, list next time)."""
        self._upsert_scan(side, "marker", marker)
        self.db.commit()

    def _upsert_scan(self, side: str, column: str, value: float | str | None) -> None:
        self.db.run(
            f"INSERT INTO side_scans (side, {column}) VALUES (:side, :value) "
            f"ON CONFLICT (side) DO UPDATE SET {column} = excluded.{column}",
            {"side": side, "value": value},
        )

    # -- runs, errors, history -------------------------------------------------------------

    def start_run(self) -> int:
        """Record a run as "running" by this process (host, pid and its start token)."""
        host, pid, pid_start = process_identity()
        (run_id,) = self.db.rows(
            "INSERT INTO runs (started_at, outcome, counts, errors, bytes_moved, message, host, pid, pid_start) "
            "VALUES (:at, 'running', '{}', 0, 0, '', :host, :pid, :pid_start) RETURNING id",
            {"at": time.time(), "host": host, "pid": pid, "pid_start": pid_start},
        )[0]
        self.db.commit()
        return int(run_id)

    def finish_run(
        self, run_id: int, *, outcome: str, counts: dict[str, int], errors: int, bytes_moved: int, message: str
    ) -> None:
        self.db.run(
            "UPDATE runs SET ended_at = :ended, outcome = :outcome, counts = :counts, errors = :errors, "
            "bytes_moved = :bytes, message = :message WHERE id = :id",
            {
                "ended": time.time(),
                "outcome": outcome,
                "counts": json.dumps(counts),
                "errors": errors,
                "bytes": bytes_moved,
                "message": message,
                "id": run_id,
            },
        )
        self.db.commit()

    def runs(self, limit: int = 10) -> list[RunInfo]:
        rows = self.db.rows(
            "SELECT id, started_at, ended_at, outcome, counts, errors, bytes_moved, message, host, pid, pid_start "
            "FROM runs ORDER BY id DESC LIMIT :limit",
            {"limit": limit},
        )
        self.db.commit()
        return [RunInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:]) for r in rows]

    def record_item_error(self, path: str, error: str, now: float) -> ItemErrorInfo:
        """Count one more failure of ``path``; the next retry backs off exponentially."""
        found = self.db.rows("SELECT attempts, first_seen FROM item_errors WHERE path = :path", {"path": path})
        attempts = 1 if not found else found[0][0] + 1
        first_seen = now if not found else found[0][1]
        next_retry = now + min(BACKOFF_FIRST_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
        self.db.run("DELETE FROM item_errors WHERE path = :path", {"path": path})
        self.db.run(
            "INSERT INTO item_errors (path, error, attempts, first_seen, next_retry) "
            "VALUES (:path, :error, :attempts, :first_seen, :next_retry)",
            {"path": path, "error": error, "attempts": attempts, "first_seen": first_seen, "next_retry": next_retry},
        )
        self.db.commit()
        return ItemErrorInfo(path, error, attempts, next_retry)

    def clear_item_error(self, path: str) -> None:
        self.db.run("DELETE FROM item_errors WHERE path = :path", {"path": path})
        self.db.commit()

    def item_errors(self) -> list[ItemErrorInfo]:
        rows = self.db.rows("SELECT path, error, attempts, next_retry FROM item_errors ORDER BY path")
        self.db.commit()
        return [ItemErrorInfo(*r) for r in rows]

    # -- skipped names ---------------------------------------------------------------------

    def skipped(self) -> list[tuple[str, str]]:
        """Every (path, reason) the pair skips, in path order."""
        rows = self.db.rows("SELECT path, reason FROM skipped ORDER BY path")
        self.db.commit()
        return [(row[0], row[1]) for row in rows]

    def count_skipped(self) -> int:
        (count,) = self.db.rows("SELECT count(*) FROM skipped")[0]
        self.db.commit()
        return int(count)

    def note_skipped(
        self, found: Iterable[tuple[str, str]], *, under: Iterable[str] | None = None, save: bool = True
    ) -> list[tuple[str, str]]:
        """Take ``found`` as the names the pair skips now: all of them after a full run, or
        (``under``) those of these paths and everything below them after a hinted run; the
        skipped names elsewhere stay as they are. ``save`` False (a dry run) changes nothing.

        :returns: the (path, reason) pairs not skipped before, or skipped for another
            reason, in path order: what a run reports; the others were reported already.
        """
        now = dict(found)
        known = dict(self._skipped_rows(under))
        newly = sorted((path, reason) for path, reason in now.items() if known.get(path) != reason)
        if save:
            self._delete_paths("skipped", [path for path, reason in known.items() if now.get(path) != reason])
            if newly:
                self.db.run_many(
                    "INSERT INTO skipped (path, reason, first_seen) VALUES (:path, :reason, :at)",
                    [{"path": path, "reason": reason, "at": time.time()} for path, reason in newly],
                )
        self.db.commit()
        return newly

    def _skipped_rows(self, under: Iterable[str] | None) -> list[tuple[str, str]]:
        if under is None:
            return [(r[0], r[1]) for r in self.db.rows("SELECT path, reason FROM skipped")]
        rows: list[tuple[str, str]] = []
        for path in sorted(set(under)):
            rows += [
                (r[0], r[1])
                for r in self.db.rows(  # the bounds as in load_bases
                    "SELECT path, reason FROM skipped WHERE path = :p OR (path >= :low AND path < :high)",
                    {"p": path, "low": path + "/", "high": path + "0"},
                )
            ]
        return rows

    def history(self, limit: int = 50, action: str | None = None) -> Iterator[HistoryItem]:
        where = "WHERE action = :action " if action is not None else ""
        rows = self.db.rows(
            f"SELECT run_id, at, action, path, side, detail FROM history {where}ORDER BY id DESC LIMIT :limit",
            {"limit": limit, "action": action},
        )
        self.db.commit()
        for row in rows:
            yield HistoryItem(*row)


def _revision(db: _Executor) -> str | None:
    """The schema's Alembic revision, or None for a database with no schema yet."""
    try:
        rows = db.rows("SELECT version_num FROM alembic_version")
    except Exception as exc:  # no such table: SQLite raises OperationalError, PostgreSQL ProgrammingError
        if "alembic_version" not in str(exc):
            raise
        rows = []
    db.commit() if rows else _rollback(db)
    return str(rows[0][0]) if rows else None


def _rollback(db: _Executor) -> None:
    """End the failed transaction (PostgreSQL refuses further statements until then)."""
    if isinstance(db, _AlchemyExecutor):
        db.conn.rollback()
    else:
        db.commit()
