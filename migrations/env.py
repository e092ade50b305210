"""Alembic environment: migrations target ``ledger/storage/schema.py``.

Run through ``ledger.storage.migrate`` (``filiera init`` / ``filiera migrate``), which passes
the connection in ``config.attributes["connection"]``; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from ledger.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` call
    raise SystemExit("run migrations with `filiera migrate`, not bare alembic")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
