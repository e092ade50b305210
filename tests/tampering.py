"""Copies of a ledger's database to tamper with, as someone with write access to it would
(TESTPLAN T2): a copy holding the same rows, a transaction on it, and one with the append-only
triggers gone. Shared by tests/cli/test_tamper.py (fixed edits) and the random tamper suite
(tests/integration/tamper_ledger.py and the modules that use it).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, create_engine

from ledger.config import Settings, normalise_database_url
from ledger.storage.migrate import upgrade
from ledger.storage.schema import LOG_TABLES

from .cli.conftest import ModuleDbs
from .conftest import _pg_admin_engine

__all__ = ["ledger_settings", "sqlite_path", "copy_sqlite", "clone", "connect", "tampered", "allow_null"]


def ledger_settings(data: Path, url: str) -> Settings:
    """The settings of the ledger in ``data`` on ``url``, sealing at once (no batching wait)."""
    return Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=url, seal_interval=0.0)


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///`` URL names."""
    return url.split("///", 1)[1]


def copy_sqlite(src: str | Path, dst: str | Path) -> None:
    """``dst`` becomes a copy of the SQLite database ``src`` (SQLite's online backup, so the
    WAL's content is included)."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    source.close()
    target.close()


def clone(dbs: ModuleDbs, url: str, name: str, tables: Sequence[str]) -> str:
    """A new database holding the rows of ``url``: SQLite a backup of the file, PostgreSQL a
    fresh schema from the migrations (triggers on) filled by INSERT ... SELECT of ``tables``."""
    new_url = dbs.new(name)
    if dbs.backend == "sqlite":
        copy_sqlite(sqlite_path(url), sqlite_path(new_url))
        return new_url
    engine = create_engine(normalise_database_url(new_url))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    new, old = dbs.schema(new_url), dbs.schema(url)
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            for table in tables:
                conn.exec_driver_sql(f"INSERT INTO {new}.{table} SELECT * FROM {old}.{table}")
    finally:
        admin.dispose()
    return new_url


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """One transaction on ``url``, committed at the end."""
    engine = create_engine(normalise_database_url(url))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def tampered(url: str) -> Iterator[Connection]:
    """A transaction on a copy with the append-only triggers gone."""
    with connect(url) as conn:
        if conn.dialect.name == "sqlite":
            for (name,) in list(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")):
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            for table in LOG_TABLES:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield conn


def allow_null(url: str, table: str, column: str) -> None:
    """Take NOT NULL off one column, as a byte flip that turns a value into NULL goes past it:
    on SQLite by editing the schema's text (as a hex editor could), on PostgreSQL by ALTER."""
    if not url.startswith("sqlite"):
        with tampered(url) as conn:
            conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")
        return
    db = sqlite3.connect(sqlite_path(url))
    try:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        new = re.sub(rf"(\n\t{column} [A-Z]+(\(\d+\))?) NOT NULL", r"\1", sql)
        assert new != sql, sql
        (version,) = db.execute("PRAGMA schema_version").fetchone()
        db.execute("PRAGMA writable_schema = ON")
        db.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (new, table))
        db.execute(f"PRAGMA schema_version = {version + 1}")
        db.commit()
    finally:
        db.close()
