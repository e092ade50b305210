"""A read-only node (``FILIERA_READ_ONLY=1``; docs/operations.md, "Scaling out"), on SQLite and
PostgreSQL: an app over the same database as a primary, reading what the primary wrote and
writing nothing at all. The streaming replica itself is tests/integration/test_replica.py.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from ledger.config import Settings
from ledger.errors import ConfigurationError
from ledger.httpsig import sign_request
from ledger.keys import SigningKey, read_key_file
from ledger.storage import schema as t
from ledger.storage.store import make_engine

from ..conftest import Db, SigningClient, signed_url
from ..factories import Member, key_add

ORIGIN = "demo.filiera.example"
PRIMARY = "https://ledger.example.com"


@dataclass
class Pair:
    settings: Settings
    primary: Flask
    replica: Flask
    admin: Member
    lot: str

    def client(self, app: Flask, signer: Member | None = None) -> SigningClient:
        app.test_client_class = SigningClient
        c = app.test_client()
        assert isinstance(c, SigningClient)
        c.signer = signer
        return c


@pytest.fixture
def pair(db: Db, tmp_path: Path) -> Iterator[Pair]:
    """A `filiera demo` ledger (3 lots), a primary app and a read-only app over it."""
    from api import create_app
    from api.demo import build_demo

    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", ledger_key_file=tmp_path / "data" / "ledger.key",
        database_url=db.url, seal_interval=0.0,
    )
    assert build_demo(settings, origin=ORIGIN, if_missing=False, lots=3) is not None
    primary = create_app(settings, background_sealing=False)
    replica = create_app(dataclasses.replace(settings, read_only=True, primary_url=PRIMARY))
    store = primary.extensions["filiera"].store
    with store.read() as conn:
        lot = conn.execute(select(t.lots.c.lot).order_by(t.lots.c.lot).limit(1)).scalar_one()
    admin = Member("admin", read_key_file(settings.data_dir / "admin.key").signing_key)
    yield Pair(settings, primary, replica, admin, lot)
    for app in (primary, replica):
        app.extensions["filiera"].sealer.stop_background()
        app.extensions["filiera"].store.dispose()


def row_counts(settings: Settings) -> dict[str, int]:
    """Rows in every table of the ledger's database: what a write would change."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in t.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def test_a_read_only_node_serves_what_the_primary_serves_and_writes_nothing(pair: Pair) -> None:
    primary, replica = pair.client(pair.primary, pair.admin), pair.client(pair.replica, pair.admin)
    lot = pair.lot
    paths = [
        "/v1/checkpoint", "/v1/ledger", "/v1/proofs/inclusion?index=5", "/v1/proofs/consistency?from=3",
        f"/v1/lots/{lot}/provenance", "/v1/analytics/facts?limit=50", "/v1/analytics/kpis",
        "/v1/blocks?limit=5", "/v1/participants?limit=5", "/v1/participants/admin",
    ]
    theirs = {path: primary.get(path).get_data() for path in paths}
    before = row_counts(pair.settings)
    for path in paths:
        ours = replica.get(path)
        assert ours.status_code == 200, (path, ours.get_data(as_text=True))
        assert ours.get_data() == theirs[path], path
    facts = replica.get("/v1/analytics/facts?limit=50").get_json()["facts"]
    assert facts, "the demo's facts feed is empty: nothing was compared"
    cert = replica.get(f"/v1/lots/{lot}/certificate")
    assert cert.status_code == 200, cert.get_data(as_text=True)
    assert cert.get_json()["certificate"]["lot"] == lot
    page = replica.get(f"/p/{lot}", unsigned=True)
    assert page.status_code == 200
    page.close()  # a view is counted when the response closes
    ready = replica.get("/v1/health/ready", unsigned=True)
    assert ready.status_code == 200 and "queue" not in ready.get_json()["checks"]
    # The signed reads' nonces and the page view went nowhere near the ledger's database.
    assert row_counts(pair.settings) == before
    # The same page on the primary is counted: the count above could have changed.
    pair.client(pair.primary).get(f"/p/{lot}").close()
    assert row_counts(pair.settings)["engagement_daily"] == before["engagement_daily"] + 1


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/v1/entries"), ("POST", "/v1/entries/batch"), ("POST", "/v1/webhooks"), ("DELETE", "/v1/webhooks/wh-1")],
)
def test_every_write_is_refused_with_read_only_node_naming_the_primary(pair: Pair, method: str, path: str) -> None:
    producer = Member("admin", pair.admin.key)
    entry = key_add(producer, SigningKey.generate(), origin=ORIGIN)
    body = json.dumps([entry] if path.endswith("batch") else entry)
    before = row_counts(pair.settings)
    resp = pair.client(pair.replica).open(path + "?x=1", method=method, data=body, content_type="application/json")
    assert resp.status_code == 503
    assert resp.mimetype == "application/problem+json"
    problem = resp.get_json()
    assert problem["code"] == "read_only_node"
    assert problem["primary"] == PRIMARY
    assert PRIMARY in problem["detail"]
    assert resp.headers["Location"] == f"{PRIMARY}{path}?x=1"
    assert row_counts(pair.settings) == before
    # The primary takes the same entry.
    if path == "/v1/entries":
        assert pair.client(pair.primary).post(path, data=body, content_type="application/json").status_code == 201


def test_without_a_primary_url_the_refusal_names_none(pair: Pair) -> None:
    from api import create_app

    app = create_app(dataclasses.replace(pair.settings, read_only=True))
    try:
        resp = app.test_client().post("/v1/entries", data="{}", content_type="application/json")
    finally:
        app.extensions["filiera"].store.dispose()
    assert resp.status_code == 503
    assert resp.get_json()["code"] == "read_only_node"
    assert "primary" not in resp.get_json()
    assert "Location" not in resp.headers


def test_unknown_routes_and_methods_keep_their_404_and_405(pair: Pair) -> None:
    c = pair.client(pair.replica)
    assert c.post("/v1/nowhere").status_code == 404
    wrong = c.put("/v1/entries", data="{}", content_type="application/json")
    assert wrong.status_code == 405 and wrong.get_json()["code"] == "method_not_allowed"
    assert c.post("/v1/checkpoint").status_code == 405


def test_a_signed_read_replayed_to_the_same_read_only_node_is_refused(pair: Pair) -> None:
    from flask.testing import EnvironBuilder

    builder = EnvironBuilder(pair.replica, "/v1/analytics/facts?limit=1")
    try:
        headers = sign_request("GET", signed_url(builder), pair.admin.key)
    finally:
        builder.close()
    c: FlaskClient = pair.replica.test_client()
    assert c.get("/v1/analytics/facts?limit=1", headers=headers).status_code == 200
    again = c.get("/v1/analytics/facts?limit=1", headers=headers)
    assert again.status_code == 401
    assert again.get_json()["code"] == "request_replayed"


def test_a_read_only_node_is_ready_while_the_primarys_queue_is_stalled(pair: Pair) -> None:
    from api import create_app

    settings = dataclasses.replace(pair.settings, ready_max_pending_age=0.01)
    primary = create_app(settings, background_sealing=False)
    replica = create_app(dataclasses.replace(settings, read_only=True))
    try:
        queued = primary.extensions["filiera"].sealer.submit(
            key_add(Member("admin", pair.admin.key), SigningKey.generate(), origin=ORIGIN), wait=False
        )
        assert queued.status == "pending"
        time.sleep(0.05)
        assert primary.test_client().get("/v1/health/ready").status_code == 503
        ready = replica.test_client().get("/v1/health/ready")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["pending"] == 1
    finally:
        for app in (primary, replica):
            app.extensions["filiera"].store.dispose()


@pytest.mark.parametrize(
    "env, read_only, primary",
    [
        ({}, False, ""),
        ({"FILIERA_READ_ONLY": "1"}, True, ""),
        ({"FILIERA_READ_ONLY": "0", "FILIERA_PRIMARY_URL": "https://w.example/"}, False, "https://w.example"),
        ({"FILIERA_READ_ONLY": "yes", "FILIERA_PRIMARY_URL": "http://10.0.0.1:8000"}, True, "http://10.0.0.1:8000"),
    ],
)
def test_settings_read_only_and_primary_url(env: dict[str, str], read_only: bool, primary: str) -> None:
    settings = Settings.from_env(env)
    assert (settings.read_only, settings.primary_url) == (read_only, primary)


@pytest.mark.parametrize(
    "env",
    [{"FILIERA_READ_ONLY": "maybe"}, {"FILIERA_PRIMARY_URL": "ledger.example.com"}, {"FILIERA_PRIMARY_URL": "https://x.example/?a=1"}],
)
def test_bad_read_only_settings_are_refused(env: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def _gauges(client: FlaskClient) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {
        s.name: s.value
        for family in text_string_to_metric_families(resp.get_data(as_text=True))
        for s in family.samples
        if not s.labels
    }


def test_the_replication_lag_is_a_metric_and_fails_readiness_past_its_limit(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standby's lag (faked here: the real standby is tests/integration/test_replica.py)
    is reported by /metrics and the readiness body; past FILIERA_READY_MAX_REPLICA_LAG the node
    is not ready. A primary's readiness neither reads nor reports it."""
    from api import create_app
    from ledger.storage.store import Store

    # Neither SQLite nor a PostgreSQL primary is a standby: no lag, no gauge, no check.
    store = pair.replica.extensions["filiera"].store
    with store.read() as conn:
        assert store.replica_lag(conn) is None
    ready = pair.replica.test_client().get("/v1/health/ready")
    assert ready.status_code == 200 and "replica_lag" not in ready.get_json()["checks"]
    assert ready.get_json()["replica_lag"] is None
    assert "filiera_replica_lag_seconds" not in _gauges(pair.replica.test_client())

    lag = {"seconds": 2.5}
    monkeypatch.setattr(Store, "replica_lag", lambda self, conn: lag["seconds"])
    replica = create_app(dataclasses.replace(pair.settings, read_only=True, ready_max_replica_lag=10.0))
    try:
        client = replica.test_client()
        ready = client.get("/v1/health/ready")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["checks"]["replica_lag"] == "ok" and ready.get_json()["replica_lag"] == 2.5
        assert _gauges(client)["filiera_replica_lag_seconds"] == 2.5

        lag["seconds"] = 10.5
        behind = client.get("/v1/health/ready")
        assert behind.status_code == 503
        body = behind.get_json()
        assert body["status"] == "unavailable" and body["database"] == "ok"
        assert body["checks"]["replica_lag"] == "behind: the standby's replay lags its primary by 10 s (limit 10 s)"
        assert body["replica_lag"] == 10.5 and body["tree_size"] is not None
        assert _gauges(client)["filiera_replica_lag_seconds"] == 10.5

        # The primary's nodes are ready whatever their database says of a lag.
        primary_ready = pair.primary.test_client().get("/v1/health/ready")
        assert primary_ready.status_code == 200
        assert "replica_lag" not in primary_ready.get_json() and "replica_lag" not in primary_ready.get_json()["checks"]
    finally:
        replica.extensions["filiera"].store.dispose()


@pytest.mark.parametrize("value", ["0", "-1", "inf", "soon"])
def test_the_replica_lag_limit_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(ConfigurationError, match="FILIERA_READY_MAX_REPLICA_LAG"):
        Settings.from_env({"FILIERA_READY_MAX_REPLICA_LAG": value})
