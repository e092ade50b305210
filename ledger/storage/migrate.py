"""Schema migrations: Alembic, driven from code (``filiera init`` and ``filiera migrate``).

Every database, SQLite or PostgreSQL, gets its schema from ``migrations/`` (never
``metadata.create_all``), so the append-only triggers are always installed.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "upgrade", "is_current", "head_revision"]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database's schema to ``revision`` (idempotent)."""
    cfg = alembic_config()
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def is_current(engine: Engine) -> bool:
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current == head_revision()
