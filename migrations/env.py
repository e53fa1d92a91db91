"""Alembic environment: syncd passes its own connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from syncd.index.schema import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("syncd runs its migrations with a connection; use syncd.index.store")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
