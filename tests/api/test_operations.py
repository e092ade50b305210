"""Operations through the Flask app (issue #7): metrics, request ids and logs, health for load
balancers, rate limits and their 429, security headers. The same behaviour through a real
`filiera serve` with several workers is tests/integration/test_serve_limits.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from api.ratelimit_store import SqlStorage
from api.requestlog import JsonFormatter
from ledger.clock import FixedClock
from ledger.config import Settings
from ledger.errors import ConfigurationError
from ledger.httpsig import sign_request
from ledger.keys import SigningKey, write_key_file

from ..conftest import Db, LedgerEnv, SigningClient
from ..factories import Member, envelope, payload, post_entry, register

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _app(settings: Settings, **kwargs: Any) -> Flask:
    app = create_app(settings, background_sealing=False, **kwargs)
    app.test_client_class = SigningClient
    return app


@pytest.fixture
def make_app(ledger_env: LedgerEnv) -> Iterator[Any]:
    """Apps over the test's ledger with other settings; each disposed at teardown."""
    made: list[Flask] = []

    def make(clock: FixedClock | None = None, **overrides: Any) -> Flask:
        app = _app(replace(ledger_env.settings, **overrides), clock=clock)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["filiera"].store.dispose()


def _signed(app: Flask, member: Member | None) -> SigningClient:
    client = app.test_client()
    assert isinstance(client, SigningClient)
    client.signer = member
    return client


def scrape(client: FlaskClient) -> Samples:
    resp = client.get("/metrics", unsigned=True)
    assert resp.status_code == 200, resp.data
    assert resp.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_count_entries_seals_and_requests(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    before = scrape(client)
    member = Member("frantoio")
    env = register(ledger_env.admin, member, ["processor"])
    assert post_entry(client, env).status_code == 201
    assert post_entry(client, env).status_code == 200
    refused = post_entry(client, register(ledger_env.admin, member, ["processor"]))  # again
    assert refused.status_code == 409
    code = refused.get_json()["code"]
    assert client.get("/v1/proofs/inclusion?index=1").status_code == 200
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("filiera_entries_total", result="created", code="") == 1
    assert delta("filiera_entries_total", result="exists", code="") == 1
    assert delta("filiera_entries_total", result="refused", code=code) == 1
    assert delta("filiera_seal_duration_seconds_count") == 1
    assert delta("filiera_block_entries_count") == 1
    assert delta("filiera_block_entries_sum") == 1
    assert delta("filiera_proof_duration_seconds_count", kind="inclusion") == 1
    assert delta("filiera_http_requests_total", method="POST", route="/v1/entries", status="201") == 1
    assert delta("filiera_http_requests_total", method="GET", route="/v1/proofs/inclusion", status="200") == 1
    # The ledger's own gauges come from the database.
    assert value(after, "filiera_tree_size") == 2
    assert value(after, "filiera_block_height") == 1
    assert value(after, "filiera_pending_entries") == 0
    assert value(after, "filiera_database_up") == 1
    # Labels carry route templates, never ids from the path.
    assert not any("frantoio" in str(labels) for _, labels in after)


def test_metrics_show_the_queue_and_its_age(make_app: Any, ledger_env: LedgerEnv) -> None:
    clock = FixedClock(datetime.now(timezone.utc))
    client = _signed(make_app(clock=clock), ledger_env.admin)
    queued = post_entry(client, register(ledger_env.admin, Member("cantina"), ["producer"]), Prefer="respond-async")
    assert queued.status_code == 202
    clock.advance(timedelta(seconds=42))
    samples = scrape(client)
    assert value(samples, "filiera_pending_entries") == 1
    assert value(samples, "filiera_pending_oldest_age_seconds") == pytest.approx(42, abs=0.01)


@pytest.mark.parametrize(
    ("access", "remote", "headers", "signer", "status"),
    [
        ("local", "127.0.0.1", {}, None, 200),
        ("local", "::1", {}, None, 200),
        ("local", "203.0.113.9", {}, None, 404),
        # A proxy on the same host: loopback address, but the request came from outside.
        ("local", "127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, None, 404),
        ("off", "127.0.0.1", {}, None, 404),
        ("public", "203.0.113.9", {}, None, 200),
        ("auditors", "203.0.113.9", {}, None, 401),
        ("auditors", "203.0.113.9", {}, "member", 403),
        ("auditors", "203.0.113.9", {}, "admin", 200),
    ],
    ids=["loopback", "loopback-v6", "remote", "proxied", "off", "public", "auditors-unsigned",
         "auditors-member", "auditors-admin"],
)
def test_who_may_read_the_metrics(
    make_app: Any, ledger_env: LedgerEnv, access: str, remote: str, headers: dict[str, str], signer: str | None, status: int
) -> None:
    app = make_app(metrics=access)
    admin = _signed(app, ledger_env.admin)
    member = Member("oleificio")
    assert post_entry(admin, register(ledger_env.admin, member, ["producer"])).status_code == 201
    who = {"admin": ledger_env.admin, "member": member, None: None}[signer]
    resp = _signed(app, who).get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert resp.status_code == status, resp.data
    if status != 200:
        assert resp.mimetype == "application/problem+json"
        expected = {401: "signature_required", 403: "auditors_only", 404: "route_not_found"}[status]
        assert resp.get_json()["code"] == expected


# --- request ids and request lines ---------------------------------------------------------


def test_every_response_carries_a_request_id(client: FlaskClient) -> None:
    first = client.get("/v1/ledger").headers["X-Request-Id"]
    second = client.get("/v1/ledger").headers["X-Request-Id"]
    assert first != second and len(first) == 32
    kept = client.get("/v1/ledger", headers={"X-Request-Id": "lb-7f3a.2:9_x"})
    assert kept.headers["X-Request-Id"] == "lb-7f3a.2:9_x"
    for hostile in ("x" * 65, "<script>", "a b", "-leading-dash", "é"):
        replaced = client.get("/v1/ledger", headers={"X-Request-Id": hostile}).headers["X-Request-Id"]
        assert replaced != hostile and len(replaced) == 32


def test_request_line_names_the_route_and_the_member_not_the_path(
    client: FlaskClient, ledger_env: LedgerEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = register(ledger_env.admin, Member("frantoio"), ["processor"])
    entry_id = post_entry(client, env).get_json()["id"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="filiera.request"):
        resp = client.get(f"/v1/entries/{entry_id}?secret=1", headers={"X-Request-Id": "trace-1"})
    assert resp.status_code == 200
    (line,) = [r for r in caplog.records if r.name == "filiera.request"]
    assert line.request_id == "trace-1"  # type: ignore[attr-defined]
    assert line.route == "/v1/entries/<entry_id>"  # type: ignore[attr-defined]
    assert (line.method, line.status, line.member) == ("GET", 200, "admin")  # type: ignore[attr-defined]
    assert line.client_ip is None  # type: ignore[attr-defined]
    formatted = JsonFormatter().format(line)
    doc = json.loads(formatted)
    assert {"time", "level", "logger", "message", "request_id", "method", "route", "status", "duration_ms", "member"} <= set(doc)
    assert entry_id not in formatted and "secret" not in formatted and "127.0.0.1" not in formatted


def test_client_addresses_are_logged_only_when_asked(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(log_client_ips=True)
    with caplog.at_level(logging.INFO, logger="filiera.request"):
        app.test_client().get("/v1/ledger", environ_base={"REMOTE_ADDR": "198.51.100.4"})
    (line,) = [r for r in caplog.records if r.name == "filiera.request"]
    assert line.client_ip == "198.51.100.4"  # type: ignore[attr-defined]


def test_json_formatter_keeps_tracebacks_on_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("filiera.api", logging.ERROR, __file__, 1, "internal error %s", ("abc",), None)
        import sys

        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text
    doc = json.loads(text)
    assert doc["message"] == "internal error abc" and "RuntimeError: boom" in doc["exc"]
    assert doc["time"].endswith("Z")


# --- health ----------------------------------------------------------------------------------


def test_liveness_and_readiness(client: FlaskClient) -> None:
    live = client.get("/v1/health/live", unsigned=True)
    assert (live.status_code, live.get_json()) == (200, {"status": "ok"})
    ready = client.get("/v1/health/ready", unsigned=True)
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "genesis": "ok", "queue": "ok"}
    assert (body["tree_size"], body["pending"], body["oldest_pending_age"]) == (1, 0, None)
    legacy = client.get("/v1/health", unsigned=True).get_json()
    assert legacy == {"status": "ok", "database": "ok", "height": 0, "tree_size": 1}


def test_readiness_fails_when_the_queue_stalls(make_app: Any, ledger_env: LedgerEnv) -> None:
    clock = FixedClock(datetime.now(timezone.utc))
    app = make_app(clock=clock, ready_max_pending_age=30.0)
    client = _signed(app, ledger_env.admin)
    assert post_entry(client, register(ledger_env.admin, Member("cantina"), ["producer"]), Prefer="respond-async").status_code == 202
    clock.advance(timedelta(seconds=29))
    assert client.get("/v1/health/ready").status_code == 200
    clock.advance(timedelta(seconds=2))
    stalled = client.get("/v1/health/ready")
    assert stalled.status_code == 503
    assert stalled.get_json()["checks"]["queue"].startswith("stalled")
    # Liveness does not care: restarting would not help a queue that waits for the database.
    assert client.get("/v1/health/live").status_code == 200
    app.extensions["filiera"].sealer.seal_pending()
    assert client.get("/v1/health/ready").status_code == 200


def test_readiness_fails_without_genesis(tmp_path: Path) -> None:
    from api.cli import _migrate

    settings = Settings.from_env(
        {}, data_dir=tmp_path, ledger_key_file=tmp_path / "ledger.key",
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
    )
    _migrate(settings).dispose()
    write_key_file(settings.ledger_key_file, participant="ledger", signing_key=SigningKey.generate())
    app = _app(settings)
    try:
        resp = app.test_client().get("/v1/health/ready")
    finally:
        app.extensions["filiera"].store.dispose()
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["genesis"].startswith("missing")


def test_readiness_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    from api.cli import init_ledger

    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", ledger_key_file=tmp_path / "data" / "ledger.key",
        database_url=f"sqlite:///{tmp_path / 'db' / 'filiera.db'}",
    )
    (tmp_path / "db").mkdir()
    init_ledger(settings, origin="ops.example", admin="admin", admin_name="Admin")
    app = _app(settings)
    client = app.test_client()
    try:
        assert client.get("/v1/health/ready").status_code == 200
        # The database's directory goes away (a lost mount); pooled connections would still
        # hold the old file open, so the pool is emptied as a restart of the database would.
        shutil.move(tmp_path / "db", tmp_path / "elsewhere")
        app.extensions["filiera"].store.engine.dispose()
        resp = client.get("/v1/health/ready")
        assert resp.status_code == 503
        assert resp.get_json()["checks"]["database"] == "unreachable"
        assert client.get("/v1/health").status_code == 503
        assert client.get("/v1/health/live").status_code == 200
    finally:
        app.extensions["filiera"].store.dispose()


# --- rate limits -----------------------------------------------------------------------------


def test_rate_limit_per_address_answers_429_with_retry_after(make_app: Any, tmp_path: Path) -> None:
    app = make_app(rate_limit_ip="3/minute", rate_limit_storage=f"sql+sqlite:///{tmp_path / 'rl.sqlite'}")
    client = app.test_client()
    statuses = [client.get("/v1/ledger").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    resp = client.get("/v1/checkpoint")  # one limit for every route
    assert resp.status_code == 429
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert (body["code"], body["status"], body["scope"]) == ("rate_limited", 429, "ip")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # Probes and scrapes are never limited; another address has its own count.
    assert client.get("/v1/health/ready").status_code == 200
    assert client.get("/v1/health/live").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/ledger", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200
    assert value(scrape(client), "filiera_rate_limited_total", scope="ip") >= 2


def test_rate_limit_per_member_follows_the_signature_not_the_address(
    make_app: Any, ledger_env: LedgerEnv, tmp_path: Path
) -> None:
    app = make_app(
        rate_limit_member="2/minute", rate_limit_ip="50/minute",
        rate_limit_storage=f"sql+sqlite:///{tmp_path / 'rl.sqlite'}",
    )
    admin = _signed(app, ledger_env.admin)
    addresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    statuses = [admin.get("/v1/participants", environ_base={"REMOTE_ADDR": a}).status_code for a in addresses]
    assert statuses == [200, 200, 429]
    refused = admin.get("/v1/participants")
    assert refused.get_json()["scope"] == "member"
    # Unsigned requests from the same address still have the address's own allowance.
    assert app.test_client().get("/v1/ledger", environ_base={"REMOTE_ADDR": addresses[0]}).status_code == 200
    # A signature that does not verify is not a member's: it neither spends nor escapes the
    # member's count, and the route refuses it as usual.
    stranger = _signed(app, Member("admin", SigningKey.generate()))
    assert stranger.get("/v1/participants").status_code == 401


def test_signed_submissions_count_against_the_member(make_app: Any, ledger_env: LedgerEnv, tmp_path: Path) -> None:
    """A client that signs its POSTs (ledger.client with a key) spends its member's allowance,
    not its address's: docs/operations.md tells bulk integrations to do so."""
    app = make_app(
        rate_limit_member="2/minute", rate_limit_ip="1/minute",
        rate_limit_storage=f"sql+sqlite:///{tmp_path / 'rl.sqlite'}",
    )
    client = app.test_client()
    statuses = []
    for name in ("cantina", "frantoio", "oleificio"):
        body = json.dumps(register(ledger_env.admin, Member(name), ["producer"])).encode()
        headers = sign_request("POST", "http://localhost/v1/entries", ledger_env.admin.key, body=body)
        resp = client.post("/v1/entries", data=body, headers={**headers, "Content-Type": "application/json"})
        statuses.append(resp.status_code)
    assert statuses == [201, 201, 429]
    assert client.post("/v1/entries", json={}).status_code == 400  # the address's one request


def test_rate_limits_off(make_app: Any, tmp_path: Path) -> None:
    app = make_app(rate_limit_ip="off", rate_limit_member="off", rate_limit_storage=f"sql+sqlite:///{tmp_path / 'rl.sqlite'}")
    client = app.test_client()
    assert {client.get("/v1/ledger").status_code for _ in range(20)} == {200}


def test_without_a_shared_store_limits_are_off_and_say_so(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="filiera.ratelimits"):
        app = make_app(rate_limit_ip="1/minute")
    assert any("rate limits are off" in r.getMessage() for r in caplog.records)
    client = app.test_client()
    assert {client.get("/v1/ledger").status_code for _ in range(3)} == {200}


@pytest.mark.parametrize("overrides", [
    {"rate_limit_ip": "lots"},
    {"rate_limit_member": "5/fortnight"},
    {"rate_limit_ip": "1/second;5/minute"},
    {"rate_limit_storage": "nosuch://x"},
    {"rate_limit_storage": "async+memory://"},
], ids=["not-a-rate", "unknown-unit", "two-rates", "unknown-storage", "async-storage"])
def test_bad_rate_limit_settings_refuse_to_start(ledger_env: LedgerEnv, tmp_path: Path, overrides: dict[str, str]) -> None:
    settings = replace(ledger_env.settings, run_dir=tmp_path, **overrides)
    with pytest.raises(ConfigurationError):
        create_app(settings, background_sealing=False)


def test_sql_storage_counts_every_concurrent_hit(db: Db) -> None:
    """The shared store (api/ratelimit_store.py) on either database: hits from many threads
    (and so from many processes, each statement being atomic) are all counted, and a window
    that ends starts again from the next hit."""
    storage = SqlStorage(f"sql+{db.url}")
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            counts = list(pool.map(lambda _: storage.incr("k", 60), range(80)))
        assert sorted(counts) == list(range(1, 81))
        assert storage.get("k") == 80
        assert 59 <= storage.get_expiry("k") - time.time() <= 60
        assert storage.incr("short", 0) == 1  # expires at once
        assert storage.incr("short", 60) == 1  # a new window
        storage.clear("k")
        assert storage.get("k") == 0
        assert storage.check()
    finally:
        storage.engine.dispose()


# --- settings and headers --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "bad"), [
    ("FILIERA_LOG_FORMAT", "xml"),
    ("FILIERA_METRICS", "everyone"),
    ("FILIERA_LOG_CLIENT_IPS", "maybe"),
    ("FILIERA_TRUSTED_PROXIES", "-1"),
    ("FILIERA_TRUSTED_PROXIES", "one"),
    ("FILIERA_READY_MAX_PENDING_AGE", "0"),
])
def test_operational_settings_are_checked(name: str, bad: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({name: bad})


def test_trusted_proxy_gives_the_client_address(make_app: Any, tmp_path: Path) -> None:
    """Behind one proxy, limits count the address the proxy saw, not the proxy's own."""
    app = make_app(trusted_proxies=1, rate_limit_ip="1/minute", rate_limit_storage=f"sql+sqlite:///{tmp_path / 'rl.sqlite'}")
    client = app.test_client()
    first = client.get("/v1/ledger", headers={"X-Forwarded-For": "203.0.113.1"})
    second = client.get("/v1/ledger", headers={"X-Forwarded-For": "203.0.113.2"})
    again = client.get("/v1/ledger", headers={"X-Forwarded-For": "203.0.113.1"})
    assert (first.status_code, second.status_code, again.status_code) == (200, 200, 429)
    # A client cannot pick its address: only the last hop, added by our proxy, is believed.
    spoofed = client.get("/v1/ledger", headers={"X-Forwarded-For": "192.0.2.50, 203.0.113.1"})
    assert spoofed.status_code == 429


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for resp in (client.get("/v1/ledger"), client.get("/v1/no-such-thing")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
