"""When each side was last listed in full, and the etag of its marker (idle pairs cost O(1)).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No rows: an index from before this revision was never marked, and its next run lists in full.
    op.create_table(
        "side_scans",
        sa.Column("side", sa.String(10), primary_key=True),
        sa.Column("full_at", sa.Float()),
        sa.Column("marker", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("side_scans")
