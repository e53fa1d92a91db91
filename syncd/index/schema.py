"""The index's tables (SQLAlchemy 2 declarative models). Only ``syncd.index`` imports this.

The schema is created and changed only by the Alembic revisions in ``migrations/``; a test
checks that upgrading to head yields exactly these models, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Model(DeclarativeBase):
    pass


class EntryRow(Model):
    """The base of one path: the state both sides agreed on after its last successful sync."""

    __tablename__ = "entries"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    a_etag: Mapped[str] = mapped_column(Text)
    b_etag: Mapped[str] = mapped_column(Text)
    a_mtime_ns: Mapped[int] = mapped_column(BigInteger)
    b_mtime_ns: Mapped[int] = mapped_column(BigInteger)
    a_inode: Mapped[int | None] = mapped_column(BigInteger)
    b_remote_id: Mapped[str | None] = mapped_column(Text)


class RunRow(Model):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[float] = mapped_column()
    ended_at: Mapped[float | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(20))  # "running" until it ends
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON: action kind -> number
    errors: Mapped[int] = mapped_column(Integer, default=0)
    bytes_moved: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")


class ItemErrorRow(Model):
    """A path whose last action failed, with its retry backoff."""

    __tablename__ = "item_errors"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[float] = mapped_column()
    next_retry: Mapped[float] = mapped_column()


class HashCacheRow(Model):
    """Content hashes of files side A, valid while the file's etag is unchanged."""

    __tablename__ = "hash_cache"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    etag: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))


class HistoryRow(Model):
    """What changed when, for `syncd log` and `syncd conflicts`."""

    __tablename__ = "history"
    __table_args__ = (Index("ix_history_at", "at"), Index("ix_history_action", "action"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column()
    action: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(Text)
    side: Mapped[str | None] = mapped_column(String(10))
    detail: Mapped[str] = mapped_column(Text, default="")


class FolderEtagRow(Model):
    """Folder etags seen at the last complete listing (remotes with tree etags re-list only
    the folders whose etag changed)."""

    __tablename__ = "folder_etags"
    side: Mapped[str] = mapped_column(String(10), primary_key=True)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    etag: Mapped[str] = mapped_column(Text)
