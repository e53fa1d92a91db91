"""The first index schema: entries, runs, item errors, hash cache, history.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("a_etag", sa.Text(), nullable=False),
        sa.Column("b_etag", sa.Text(), nullable=False),
        sa.Column("a_mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("b_mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("a_inode", sa.BigInteger()),
        sa.Column("b_remote_id", sa.Text()),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float()),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("bytes_moved", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_table(
        "item_errors",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("next_retry", sa.Float(), nullable=False),
    )
    op.create_table(
        "hash_cache",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("side", sa.String(10)),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_history_at", "history", ["at"])


def downgrade() -> None:
    op.drop_index("ix_history_at", table_name="history")
    for table in ("history", "hash_cache", "item_errors", "runs", "entries"):
        op.drop_table(table)
