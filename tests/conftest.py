"""Fixtures: a fresh ledger per test on SQLite (a temp file) and on PostgreSQL (a fresh schema
in the server at FILIERA_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test).

PostgreSQL is part of the suite: if it cannot be reached the PostgreSQL tests fail, they are
not skipped (set FILIERA_SKIP_PG=1 to deselect them knowingly on a laptop without it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ledger.config import Settings
from ledger.keys import read_key_file

from .factories import ORIGIN, Member

PG_URL = os.environ.get("FILIERA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SKIP_PG = os.environ.get("FILIERA_SKIP_PG") == "1"
BACKENDS = ["sqlite"] + ([] if SKIP_PG else ["postgresql"])
VECTORS = Path(__file__).parent / "vectors"


def _pg_admin_engine() -> Any:
    from sqlalchemy import create_engine

    from ledger.config import normalise_database_url

    return create_engine(normalise_database_url(PG_URL), isolation_level="AUTOCOMMIT")


@dataclass
class Db:
    backend: str
    url: str


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path / 'filiera.db'}")
        return
    schema, url = new_pg_schema("t_")
    try:
        yield Db("postgresql", url)
    finally:
        drop_pg_schema(schema)


def new_pg_schema(prefix: str) -> tuple[str, str]:
    """A fresh, empty schema in the test PostgreSQL server, and a URL whose connections use it.

    PostgreSQL is part of the suite: an unreachable server fails the test, never skips it."""
    schema = prefix + uuid.uuid4().hex[:12]
    engine = _pg_admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is part of the suite but {PG_URL} is unreachable: {exc}")
    finally:
        engine.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(schema: str) -> None:
    engine = _pg_admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        engine.dispose()


@dataclass
class LedgerEnv:
    settings: Settings
    admin: Member
    ledger_key: Any
    backend: str


@pytest.fixture
def ledger_env(db: Db, tmp_path: Path) -> LedgerEnv:
    """A freshly initialised ledger (genesis sealed) with its admin's key."""
    from api.cli import init_ledger

    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        ledger_key_file=tmp_path / "data" / "ledger.key",
        database_url=db.url,
        seal_interval=0.0,
    )
    init_ledger(settings, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    admin_file = read_key_file(settings.data_dir / "admin.key")
    return LedgerEnv(
        settings=settings,
        admin=Member("admin", admin_file.signing_key),
        ledger_key=read_key_file(settings.ledger_key_file).signing_key,
        backend=db.backend,
    )


@pytest.fixture
def app(ledger_env: LedgerEnv) -> Iterator[Flask]:
    from api import create_app

    application = create_app(ledger_env.settings, background_sealing=False)
    yield application
    svc = application.extensions["filiera"]
    svc.sealer.stop_background()
    svc.store.dispose()


class SigningClient(FlaskClient):
    """A test client that signs GET requests (RFC 9421) as ``signer``, as a member's system
    would; ``unsigned=True`` sends one request bare, ``as_member(m)`` signs as another member."""

    signer: Member | None = None

    def as_member(self, member: Member | None) -> SigningClient:
        other = type(self)(self.application, self.response_wrapper, use_cookies=False)
        other.signer = member
        return other

    def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        unsigned = kwargs.pop("unsigned", False)
        method = str(kwargs.get("method", "GET")).upper()
        if unsigned or self.signer is None or method not in ("GET", "HEAD") or not args or not isinstance(args[0], str):
            return super().open(*args, **kwargs)
        from flask.testing import EnvironBuilder

        from ledger.httpsig import sign_request

        builder = EnvironBuilder(self.application, *args, **kwargs)
        try:
            url = signed_url(builder)
            for name, value in sign_request(method, url, self.signer.key).items():
                builder.headers[name] = value
            return super().open(builder)
        finally:
            builder.close()


def signed_url(builder: Any) -> str:
    """The absolute URL a client sends for ``builder`` (a werkzeug EnvironBuilder), with its
    percent-encoding: what it signs as RFC 9421 ``@target-uri`` (``request.url`` is an IRI)."""
    request = builder.get_request()
    return str(request.host_url).rstrip("/") + request.environ["REQUEST_URI"]


@pytest.fixture
def client(app: Flask, ledger_env: LedgerEnv) -> FlaskClient:
    """Requests come from the ledger's admin (who may read everything), signed."""
    app.test_client_class = SigningClient
    c = app.test_client()
    assert isinstance(c, SigningClient)
    c.signer = ledger_env.admin
    return c
