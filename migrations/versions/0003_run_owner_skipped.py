"""Who runs a run (so `status` can tell a dead run from a running one); names skipped by a pair.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows of older runs keep NULL: they ended long ago, or their process is gone.
    op.add_column("runs", sa.Column("host", sa.Text()))
    op.add_column("runs", sa.Column("pid", sa.Integer()))
    op.add_column("runs", sa.Column("pid_start", sa.Text()))
    op.create_table(
        "skipped",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("skipped")
    with op.batch_alter_table("runs") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("pid_start")
        batch.drop_column("pid")
        batch.drop_column("host")
