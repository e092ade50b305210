"""Backups and a verified restore, as docs/operations.md tells operators to do them.

SQLite: an online backup (the ``sqlite3`` shell's ``.backup``, or Python's
``sqlite3.Connection.backup``) taken while entries are being sealed; PostgreSQL: ``pg_dump
--format=custom`` restored with ``pg_restore`` into another database. Each restored copy must
pass ``filiera verify --ledger-key --trusted-checkpoint`` with a checkpoint saved before the
backup; a backup older than a checkpoint handed out since must fail it (``truncated``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import DatabaseError

from ledger.config import Settings, normalise_database_url
from ledger.keys import read_key_file
from ledger.sealing import Sealer
from ledger.storage.store import Store

from ..conftest import PG_URL
from ..factories import Member, register
from .conftest import on, run

DEMO_ORIGIN = "demo.filiera.example"


def _demo(data: Path, url: str) -> tuple[str, Path]:
    """A small demo ledger; returns its ledger public key and a checkpoint saved by verify."""
    result = run([*on(data, url), "demo", "--lots", "4"])
    assert result.exit_code == 0, result.output
    checkpoint = data / "checkpoint-before.txt"
    saved = run([*on(data, url), "verify", "--save-checkpoint", str(checkpoint)])
    assert saved.exit_code == 0, saved.output
    return read_key_file(data / "ledger.key").signing_key.public_key.b64, checkpoint


def _verify(url: str, ledger_key: str, checkpoint: Path, data: Path) -> tuple[int, dict[str, Any]]:
    """`filiera verify` of a restored copy, anchored in the published key and a checkpoint."""
    result = run(["--data-dir", str(data), "--database-url", url, "verify", "--json",
                  "--ledger-key", ledger_key, "--trusted-checkpoint", str(checkpoint)])
    return result.exit_code, json.loads(result.stdout)


def _append(data: Path, url: str, n: int, prefix: str) -> None:
    """Seal ``n`` more entries (registrations by the demo's admin), as the server would."""
    settings = Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=url)
    admin = Member("admin", read_key_file(data / "admin.key").signing_key)
    sealer = Sealer(Store.open(settings), signing_key=read_key_file(data / "ledger.key").signing_key)
    try:
        for i in range(n):
            env = register(admin, Member(f"{prefix}{i}"), ["producer"], origin=DEMO_ORIGIN)
            assert sealer.submit(env).status == "created"
    finally:
        sealer.store.dispose()


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _python_backup(src: Path, dst: Path) -> None:
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _shell_backup(src: Path, dst: Path) -> None:
    subprocess.run(["sqlite3", str(src), f".backup {dst}"], check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("method", ["python", "sqlite3-shell"])
def test_sqlite_online_backup_restores_and_verifies(tmp_path: Path, method: str) -> None:
    if method == "sqlite3-shell" and shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 shell is not installed (docs/operations.md gives the Python form too)")
    backup = _python_backup if method == "python" else _shell_backup
    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path / 'live' / 'filiera.db'}"
    (tmp_path / "live").mkdir()
    ledger_key, before = _demo(data, url)

    # The backup is taken while another thread keeps sealing entries into the live database.
    writer = threading.Thread(target=_append, args=(data, url, 20, "during"))
    writer.start()
    try:
        backup(_sqlite_path(url), tmp_path / "backup.db")
    finally:
        writer.join()

    restore = tmp_path / "restore"
    restore.mkdir()
    shutil.copy(tmp_path / "backup.db", restore / "filiera.db")
    code, report = _verify(f"sqlite:///{restore / 'filiera.db'}", ledger_key, before, restore)
    assert code == 0, report
    assert report["ok"] is True and report["entries"] >= 1

    # Entries sealed after the backup, and a checkpoint of them handed out: the old backup
    # is now known to be short, and verify says so instead of passing it.
    _append(data, url, 3, "after")
    after = data / "checkpoint-after.txt"
    assert run([*on(data, url), "verify", "--save-checkpoint", str(after)]).exit_code == 0
    code, report = _verify(f"sqlite:///{restore / 'filiera.db'}", ledger_key, after, restore)
    assert code == 1
    assert report["reason"] == "truncated", report


def test_postgresql_dump_restores_into_another_database_and_verifies(tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.fail("pg_dump and pg_restore are part of the suite's PostgreSQL set-up")
    from ..conftest import drop_pg_schema, new_pg_schema

    schema, url = new_pg_schema("b_")
    restored_db = "restore_" + uuid.uuid4().hex[:10]
    server = make_url(normalise_database_url(PG_URL))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    data = tmp_path / "data"
    try:
        ledger_key, before = _demo(data, url)
        libpq = server.set(drivername="postgresql")
        source = libpq.render_as_string(hide_password=False)
        dump = tmp_path / "filiera.dump"
        subprocess.run(
            ["pg_dump", "--format=custom", f"--schema={schema}", "--file", str(dump), source],
            check=True, capture_output=True, timeout=120,
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {restored_db}")
        target = libpq.set(database=restored_db).render_as_string(hide_password=False)
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", target, str(dump)],
            check=True, capture_output=True, timeout=120,
        )
        restored_url = f"{target}?options=-csearch_path%3D{schema}"
        code, report = _verify(restored_url, ledger_key, before, tmp_path)
        assert code == 0, report
        assert report["ok"] is True
        # The append-only triggers came back with the data: the restored log refuses edits.
        engine = create_engine(normalise_database_url(restored_url))
        try:
            with pytest.raises(DatabaseError, match="append-only"):
                with engine.begin() as conn:
                    conn.exec_driver_sql("DELETE FROM entries")
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {restored_db} WITH (FORCE)")
        admin.dispose()
        drop_pg_schema(schema)


def test_backup_documented_in_operations_is_what_this_file_runs() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    for command in (
        '.backup var/filiera-$(date +%F).db',
        "sqlite3.connect(",
        "pg_dump --format=custom",
        "pg_restore --no-owner --exit-on-error",
        "--trusted-checkpoint",
    ):
        assert command in doc, command
