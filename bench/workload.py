"""Databases, ledgers and signed entries for the benchmarks.

Entries are built exactly as a client builds them (``ledger.entries.sign_payload``), always
before any clock starts, so that client-side signing never competes with the server for the
same two cores while it is being measured.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ledger.encoding import format_time
from ledger.entries import sign_payload
from ledger.keys import SigningKey

__all__ = [
    "ORIGIN",
    "Database",
    "database",
    "init_ledger_cli",
    "member_ids",
    "register_envelope",
    "key_add_envelope",
    "key_add_bodies",
    "register_bodies",
    "clean_env",
]

ORIGIN = "bench.filiera.example"
REPO = Path(__file__).resolve().parents[1]
FILIERA = Path(sys.executable).with_name("filiera")


@dataclass(frozen=True)
class Database:
    backend: str  # "sqlite" | "postgresql"
    url: str
    data_dir: Path


@contextmanager
def database(backend: str, *, pg_url: str, workdir: Path) -> Iterator[Database]:
    """An empty database: a SQLite file in a fresh temp dir, or a fresh PostgreSQL schema.

    The PostgreSQL schema is dropped afterwards, whatever happens.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=workdir))
    try:
        if backend == "sqlite":
            yield Database(backend, f"sqlite:///{data_dir / 'filiera.db'}", data_dir)
            return
        from sqlalchemy import create_engine

        from ledger.config import normalise_database_url

        schema = "bench_" + uuid.uuid4().hex[:12]
        admin = create_engine(normalise_database_url(pg_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in pg_url else "?"
        try:
            yield Database(backend, f"{pg_url}{sep}options=-csearch_path%3D{schema}", data_dir)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def init_ledger_cli(db: Database) -> SigningKey:
    """``filiera init`` as a user runs it; returns the admin's signing key."""
    from ledger.keys import read_key_file

    subprocess.run(
        [str(FILIERA), "--data-dir", str(db.data_dir), "--database-url", db.url, "init", "--origin", ORIGIN],
        check=True,
        capture_output=True,
        cwd=REPO,
        env=clean_env(),
    )
    return read_key_file(db.data_dir / "admin.key").signing_key


def clean_env() -> dict[str, str]:
    """This environment without FILIERA_* variables, so that only the command line decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FILIERA_")}


def _now() -> str:
    return format_time(datetime.now(timezone.utc))


def _payload(type_: str, author: str, **fields: Any) -> dict[str, Any]:
    return {
        "ledger": ORIGIN,
        "type": type_,
        "author": author,
        "time": _now(),
        "nonce": secrets.token_urlsafe(18),
        **fields,
    }


def member_ids(count: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(count)]


def register_envelope(admin: SigningKey, member: str, key: SigningKey) -> dict[str, Any]:
    """``participant.register`` of ``member`` by the admin: one signature."""
    p = _payload(
        "participant.register",
        "admin",
        participant={
            "id": member,
            "name": f"{member} S.p.A.",
            "roles": ["producer"],
            "keys": [{"public_key": key.public_key.b64}],
        },
    )
    return sign_payload(p, [("admin", admin)])


def key_add_envelope(member: str, key: SigningKey) -> dict[str, Any]:
    """``key.add`` of a fresh key by ``member`` itself: two signatures (owner and new key)."""
    new = SigningKey.generate()
    p = _payload("key.add", member, participant=member, public_key=new.public_key.b64)
    return sign_payload(p, [(member, key), (member, new)])


def key_add_bodies(members: list[tuple[str, bytes]], count: int) -> list[bytes]:
    """``count`` single-entry request bodies, round-robin over ``members`` (id, key seed)."""
    import json

    keys = [(m, SigningKey(seed)) for m, seed in members]
    return [
        json.dumps(key_add_envelope(*keys[i % len(keys)]), separators=(",", ":")).encode()
        for i in range(count)
    ]


def register_bodies(admin_seed: bytes, first: int, count: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` registrations of new members ``prefix{first..}`` (envelopes, as JSON objects)."""
    admin = SigningKey(admin_seed)
    return [
        register_envelope(admin, mid, SigningKey.generate())
        for mid in member_ids(first + count, prefix)[first:]
    ]
