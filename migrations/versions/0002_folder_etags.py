"""Folder etags for subtree skipping; history looked up by action (`syncd conflicts`).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "folder_etags",
        sa.Column("side", sa.String(10), primary_key=True),
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("etag", sa.Text(), nullable=False),
    )
    op.create_index("ix_history_action", "history", ["action"])


def downgrade() -> None:
    op.drop_index("ix_history_action", table_name="history")
    op.drop_table("folder_etags")
