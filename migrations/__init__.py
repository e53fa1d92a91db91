"""Alembic revisions of the index schema (installed as the package ``syncd.migrations``)."""
