"""The index's tables, as SQLAlchemy Core models (``Table`` objects on one ``MetaData``).

Core, not the ORM: the index is read in bulk as tuples, and importing the ORM alone would
cost a no-change sync more than its work. The schema is created and changed only by the
Alembic revisions in ``migrations/``; a test checks that upgrading to head yields exactly
these tables, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# The base of one path: the state both sides agreed on after its last successful sync.
entries = Table(
    "entries",
    metadata,
    Column("path", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content_hash", String(64)),
    Column("a_etag", Text, nullable=False),
    Column("b_etag", Text, nullable=False),
    Column("a_mtime_ns", BigInteger, nullable=False),
    Column("b_mtime_ns", BigInteger, nullable=False),
    Column("a_inode", BigInteger),
    Column("b_remote_id", Text),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("outcome", String(20), nullable=False),  # "running" until it ends
    Column("counts", Text, nullable=False),  # JSON: action kind -> number
    Column("errors", Integer, nullable=False),
    Column("bytes_moved", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    # Who runs it (revision 0003): a "running" row whose process is gone died mid-run.
    Column("host", Text),
    Column("pid", Integer),
    Column("pid_start", Text),  # "<boot id>:<start time>": tells the process from a later one with its pid
)

# A path whose last action failed, with its retry backoff.
item_errors = Table(
    "item_errors",
    metadata,
    Column("path", Text, primary_key=True),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("next_retry", Float, nullable=False),
)

# Content hashes of files on side A, valid while the file's etag is unchanged.
hash_cache = Table(
    "hash_cache",
    metadata,
    Column("path", Text, primary_key=True),
    Column("etag", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
)

# What changed when, for `syncd log` and `syncd conflicts`.
history = Table(
    "history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("action", String(20), nullable=False),
    Column("path", Text, nullable=False),
    Column("side", String(10)),
    Column("detail", Text, nullable=False),
    Index("ix_history_at", "at"),
    Index("ix_history_action", "action"),
)

# Folder etags seen at the last complete listing: remotes whose folder etags change when
# anything below changes re-list only the folders whose etag changed.
folder_etags = Table(
    "folder_etags",
    metadata,
    Column("side", String(10), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("etag", Text, nullable=False),
)

# Names a pair cannot sync (unsafe, refused by a side), kept so that a run reports only the
# newly skipped ones and `syncd status` counts them.
skipped = Table(
    "skipped",
    metadata,
    Column("path", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
)

# How each side was last scanned (revision 0004): when it was last listed in full, and the
# etag of the marker object syncd last wrote there (a side only syncd writes: see
# syncd.engine.scans). NULL marker: unknown (never written, or a run was writing there).
side_scans = Table(
    "side_scans",
    metadata,
    Column("side", String(10), primary_key=True),
    Column("full_at", Float),
    Column("marker", Text),
)
