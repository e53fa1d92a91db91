"""The only code that touches the index database.

One SQLite file per pair (WAL mode), or a PostgreSQL URL. The schema is brought to the newest
Alembic revision on open; Alembic itself is imported only when an upgrade is needed, so a
no-change sync does not pay for it. Bulk reads use SQLAlchemy Core (tuples, not ORM objects).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, inspect, select, text, update
from sqlalchemy.exc import OperationalError

from syncd.errors import FatalError
from syncd.index import schema
from syncd.models import Base

HEAD_REVISION = "0002"  # tests check this equals the newest revision in migrations/

ENTRIES = schema.entries
RUNS = schema.runs
ITEM_ERRORS = schema.item_errors
HASH_CACHE = schema.hash_cache
HISTORY = schema.history
FOLDER_ETAGS = schema.folder_etags
BASE_COLUMNS = (
    "path", "size", "content_hash", "a_etag", "b_etag", "a_mtime_ns", "b_mtime_ns", "a_inode", "b_remote_id"
)

BACKOFF_FIRST_S = 60.0
BACKOFF_MAX_S = 6 * 3600.0


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


def _base_row(base: Base) -> dict[str, Any]:
    return {
        "path": base.path,
        "size": base.size,
        "content_hash": base.content_hash,
        "a_etag": base.a_etag,
        "b_etag": base.b_etag,
        "a_mtime_ns": base.a_mtime_ns,
        "b_mtime_ns": base.b_mtime_ns,
        "a_inode": base.a_inode,
        "b_remote_id": base.b_remote_id,
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def migrations_dir() -> str:
    return str(resources.files("syncd.migrations"))


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Run the Alembic revisions up to ``revision`` on ``conn``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_dir())
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


class Store:
    """The index of one pair."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn = engine.connect()

    @classmethod
    def open(cls, target: str | Path) -> Store:
        """Open (and create or upgrade) the index at a file path or a database URL.

        :raises FatalError: the database cannot be opened or upgraded.
        """
        url = str(target)
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{url}"
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            with engine.begin() as conn:
                if current_revision(conn) != HEAD_REVISION:
                    upgrade(conn)
        except OperationalError as exc:
            raise FatalError(f"index {target}: cannot open: {exc.orig}") from exc
        return cls(engine)

    def close(self) -> None:
        self._conn.close()
        self.engine.dispose()

    def _write(self, *statements: Any) -> None:
        for statement in statements:
            self._conn.execute(statement)
        self._conn.commit()

    # -- bases -----------------------------------------------------------------------------

    def load_bases(self) -> dict[str, Base]:
        """Every base, read through the driver's own cursor: this runs on every sync, and
        plain tuples cost a tenth of SQLAlchemy result rows for a large tree."""
        cursor = self._conn.connection.cursor()
        try:
            cursor.execute(f"SELECT {', '.join(BASE_COLUMNS)} FROM entries")
            bases = {row[0]: Base(*row) for row in cursor.fetchall()}
        finally:
            cursor.close()
        self._conn.commit()
        return bases

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
        for start in range(0, len(doomed), 500):  # bounded IN lists
            chunk = doomed[start : start + 500]
            self._conn.execute(delete(ENTRIES).where(ENTRIES.c.path.in_(chunk)))
            self._conn.execute(delete(ITEM_ERRORS).where(ITEM_ERRORS.c.path.in_(chunk)))
        if bases:
            self._conn.execute(insert(ENTRIES), [_base_row(b) for b in bases])
        now = time.time()
        rows = [
            {"run_id": run_id, "at": now, "action": a, "path": p, "side": s, "detail": d}
            for a, p, s, d in history
        ]
        if rows:
            self._conn.execute(insert(HISTORY), rows)
        self._conn.commit()

    def count_bases(self) -> int:
        total = self._conn.execute(select(func.count()).select_from(ENTRIES)).scalar_one()
        self._conn.commit()
        return int(total)

    # -- hash cache ------------------------------------------------------------------------

    def load_hash_cache(self) -> dict[str, tuple[str, str]]:
        rows = self._conn.execute(select(HASH_CACHE.c.path, HASH_CACHE.c.etag, HASH_CACHE.c.content_hash))
        cache = {row[0]: (row[1], row[2]) for row in rows}
        self._conn.commit()
        return cache

    def save_hashes(self, hashes: Iterable[tuple[str, str, str]]) -> None:
        """Store (path, etag, hash) rows in one transaction."""
        rows = [{"path": p, "etag": e, "content_hash": h} for p, e, h in hashes]
        if not rows:
            return
        self._conn.execute(delete(HASH_CACHE).where(HASH_CACHE.c.path.in_([r["path"] for r in rows])))
        self._conn.execute(insert(HASH_CACHE), rows)
        self._conn.commit()

    # -- folder etags ----------------------------------------------------------------------

    def load_folder_etags(self, side: str) -> dict[str, str]:
        rows = self._conn.execute(select(FOLDER_ETAGS.c.path, FOLDER_ETAGS.c.etag).where(FOLDER_ETAGS.c.side == side))
        etags = {row[0]: row[1] for row in rows}
        self._conn.commit()
        return etags

    def save_folder_etags(self, side: str, etags: dict[str, str]) -> None:
        self._conn.execute(delete(FOLDER_ETAGS).where(FOLDER_ETAGS.c.side == side))
        if etags:
            self._conn.execute(insert(FOLDER_ETAGS), [{"side": side, "path": p, "etag": e} for p, e in etags.items()])
        self._conn.commit()

    # -- runs, errors, history -------------------------------------------------------------

    def start_run(self) -> int:
        result = self._conn.execute(
            insert(RUNS).values(
                started_at=time.time(), outcome="running", counts="{}", errors=0, bytes_moved=0, message=""
            )
        )
        self._conn.commit()
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish_run(
        self, run_id: int, *, outcome: str, counts: dict[str, int], errors: int, bytes_moved: int, message: str
    ) -> None:
        self._write(
            update(RUNS)
            .where(RUNS.c.id == run_id)
            .values(
                ended_at=time.time(),
                outcome=outcome,
                counts=json.dumps(counts),
                errors=errors,
                bytes_moved=bytes_moved,
                message=message,
            )
        )

    def runs(self, limit: int = 10) -> list[RunInfo]:
        c = RUNS.c
        rows = self._conn.execute(
            select(c.id, c.started_at, c.ended_at, c.outcome, c.counts, c.errors, c.bytes_moved, c.message)
            .order_by(c.id.desc())
            .limit(limit)
        ).all()
        self._conn.commit()
        return [RunInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7]) for r in rows]

    def record_item_error(self, path: str, error: str, now: float) -> ItemErrorInfo:
        """Count one more failure of ``path``; the next retry backs off exponentially."""
        row = self._conn.execute(
            select(ITEM_ERRORS.c.attempts, ITEM_ERRORS.c.first_seen).where(ITEM_ERRORS.c.path == path)
        ).first()
        attempts = 1 if row is None else row[0] + 1
        first_seen = now if row is None else row[1]
        next_retry = now + min(BACKOFF_FIRST_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
        self._write(
            delete(ITEM_ERRORS).where(ITEM_ERRORS.c.path == path),
            insert(ITEM_ERRORS).values(
                path=path, error=error, attempts=attempts, first_seen=first_seen, next_retry=next_retry
            ),
        )
        return ItemErrorInfo(path, error, attempts, next_retry)

    def clear_item_error(self, path: str) -> None:
        self._write(delete(ITEM_ERRORS).where(ITEM_ERRORS.c.path == path))

    def item_errors(self) -> list[ItemErrorInfo]:
        c = ITEM_ERRORS.c
        rows = self._conn.execute(select(c.path, c.error, c.attempts, c.next_retry).order_by(c.path)).all()
        self._conn.commit()
        return [ItemErrorInfo(*r) for r in rows]

    def history(self, limit: int = 50, action: str | None = None) -> Iterator[HistoryItem]:
        c = HISTORY.c
        query = select(c.run_id, c.at, c.action, c.path, c.side, c.detail).order_by(c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(c.action == action)
        rows = self._conn.execute(query).all()
        self._conn.commit()
        for row in rows:
            yield HistoryItem(*row)
