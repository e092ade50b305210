"""Webhook subscriptions through HTTP (docs/webhooks.md), on SQLite and PostgreSQL: members
register, list and delete their own; the secret is shown once and stored only sealed; URLs
that aim at the server's own network are refused unless the operator allows them.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from ledger.storage import schema as t
from ledger.webhook_secrets import SecretBox
from ledger.webhooks import MAX_SUBSCRIPTIONS

from ..conftest import LedgerEnv, SigningClient
from ..factories import Member, post_entry, register
from ..webhooks import signed

RETAILER = Member("mercato-milano")
CARRIER = Member("trasporti-adriatica")


def make_app(ledger_env: LedgerEnv, *, allow_private: bool) -> Flask:
    from api import create_app

    settings = dataclasses.replace(ledger_env.settings, webhook_allow_private=allow_private)
    application = create_app(settings, background_sealing=False)
    application.test_client_class = SigningClient
    c = application.test_client()
    for member, roles in ((RETAILER, ["retailer"]), (CARRIER, ["carrier"])):
        assert post_entry(c, register(ledger_env.admin, member, roles)).status_code == 201
    return application


@pytest.fixture
def app(ledger_env: LedgerEnv) -> Iterator[Flask]:
    application = make_app(ledger_env, allow_private=True)
    yield application
    application.extensions["filiera"].store.dispose()


@pytest.fixture
def strict_app(ledger_env: LedgerEnv) -> Iterator[Flask]:
    application = make_app(ledger_env, allow_private=False)
    yield application
    application.extensions["filiera"].store.dispose()


def test_a_member_registers_lists_and_deletes_a_webhook(app: Flask, ledger_env: LedgerEnv) -> None:
    c = app.test_client()
    resp = signed(c, "POST", "/v1/webhooks", RETAILER, {
        "url": "http://127.0.0.1:9/hook", "types": ["shipment", "payment"], "description": "ERP receiving",
    })
    assert resp.status_code == 201, resp.json
    created = resp.json
    assert resp.headers["Cache-Control"] == "no-store"
    assert created["id"].startswith("wh_") and len(created["id"]) == 27
    assert created["types"] == ["shipment", "payment"] and created["status"] == "active"
    # Standard Webhooks: whsec_ and the base64 of 24 to 64 random bytes.
    secret = created["secret"]
    assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:], validate=True)) <= 64
    # From now on: the cursor is after the last sealed entry.
    assert created["after"] == str(int(c.get("/v1/ledger").json["tree_size"]) - 1)

    listed = signed(c, "GET", "/v1/webhooks", RETAILER).json["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0] and secret not in str(listed)
    assert listed[0]["pending"] == 0 and listed[0]["last_delivered_at"] is None
    # Another member sees none of it and cannot delete it.
    assert signed(c, "GET", "/v1/webhooks", CARRIER).json["webhooks"] == []
    gone = signed(c, "DELETE", f"/v1/webhooks/{created['id']}", CARRIER)
    assert gone.status_code == 404 and gone.json["code"] == "webhook_not_found"

    assert signed(c, "DELETE", f"/v1/webhooks/{created['id']}", RETAILER).status_code == 204
    assert signed(c, "GET", "/v1/webhooks", RETAILER).json["webhooks"] == []
    again = signed(c, "DELETE", f"/v1/webhooks/{created['id']}", RETAILER)
    assert again.status_code == 404


def test_the_secret_is_stored_only_sealed_with_a_0600_key_file(app: Flask, ledger_env: LedgerEnv) -> None:
    c = app.test_client()
    created = signed(c, "POST", "/v1/webhooks", RETAILER, {"url": "http://127.0.0.1:9/h", "types": ["delivery"]}).json
    store = app.extensions["filiera"].store
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t.webhook_subscriptions))]
    assert len(rows) == 1
    # Neither the secret nor the key it is made of is anywhere in the row.
    raw = base64.b64decode(created["secret"][6:])
    text = repr(rows)
    assert created["secret"] not in text and created["secret"][6:] not in text and raw.hex() not in text
    key_file = ledger_env.settings.webhook_key_file
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert SecretBox.open(key_file).unseal(created["id"], rows[0]["secret"]) == created["secret"]


def test_after_zero_backfills_from_the_start(app: Flask) -> None:
    c = app.test_client()
    created = signed(c, "POST", "/v1/webhooks", RETAILER, {"url": "http://127.0.0.1:9/h", "types": ["shipment"], "after": "0"}).json
    assert created["after"] == "0"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback-v6"),
        ("http://localhost/hook", "localhost"),
        ("http://10.0.0.7/hook", "private"),
        ("http://192.168.1.1/hook", "private-192"),
        ("http://169.254.169.254/latest/meta-data", "cloud-metadata"),
        ("http://[::ffff:127.0.0.1]/hook", "v4-mapped-loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "shared-cgnat"),
        ("ftp://example.com/hook", "not-http"),
        ("http://user:pw@example.com/hook", "credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("example.com/hook", "relative"),
    ],
)
def test_urls_into_the_servers_network_are_refused(strict_app: Flask, url: str, why: str) -> None:
    c = strict_app.test_client()
    resp = signed(c, "POST", "/v1/webhooks", RETAILER, {"url": url, "types": ["shipment"]})
    assert resp.status_code == 400, why
    assert resp.json["code"] == "webhook_url_refused" and resp.json["fields"] == ["url"]
    assert signed(c, "GET", "/v1/webhooks", RETAILER).json["webhooks"] == []


def test_a_public_url_is_accepted_when_private_ones_are_refused(strict_app: Flask) -> None:
    c = strict_app.test_client()
    resp = signed(c, "POST", "/v1/webhooks", RETAILER, {"url": "https://93.184.215.14/hooks", "types": ["payment"]})
    assert resp.status_code == 201, resp.json


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"types": ["shipment"]}, ["url"]),
        ({"url": "http://127.0.0.1/h"}, ["types"]),
        ({"url": "http://127.0.0.1/h", "types": []}, ["types"]),
        ({"url": "http://127.0.0.1/h", "types": ["shipment", "shipment"]}, ["types"]),
        ({"url": "http://127.0.0.1/h", "types": ["invoice"]}, ["types"]),
        ({"url": "http://127.0.0.1/h", "types": ["shipment"], "secret": "whsec_mine"}, ["secret"]),
        ({"url": "http://127.0.0.1/h", "types": ["shipment"], "description": "x" * 201}, ["description"]),
        ({"url": "http://127.0.0.1/h", "types": ["shipment"], "after": "1.2.3"}, ["after"]),
        ({"url": "http://127.0.0.1/" + "a" * 2000, "types": ["shipment"]}, ["url"]),
        ({"url": 7, "types": ["shipment"]}, ["url"]),
    ],
    ids=["no-url", "no-types", "empty-types", "repeated-type", "unknown-type", "own-secret", "long-description", "bad-cursor", "long-url", "url-not-text"],
)
def test_bad_subscriptions_are_refused_and_write_nothing(app: Flask, body: dict[str, object], fields: list[str]) -> None:
    c = app.test_client()
    resp = signed(c, "POST", "/v1/webhooks", RETAILER, body)
    assert resp.status_code == 400 and resp.json["code"] == "invalid_webhook"
    assert resp.json["fields"] == fields
    assert signed(c, "GET", "/v1/webhooks", RETAILER).json["webhooks"] == []


def test_unsigned_or_tampered_requests_are_refused(app: Flask) -> None:
    c = app.test_client()
    body = {"url": "http://127.0.0.1/h", "types": ["shipment"]}
    assert c.post("/v1/webhooks", json=body).status_code == 401
    assert c.get("/v1/webhooks", unsigned=True).status_code == 401
    assert c.delete("/v1/webhooks/wh_x").status_code == 401
    # A signed request whose body was swapped on the way: the Content-Digest no longer matches.
    import json as _json

    from ledger.httpsig import sign_request

    data = _json.dumps(body).encode()
    headers = sign_request("POST", "http://localhost/v1/webhooks", RETAILER.key, body=data)
    headers["Content-Type"] = "application/json"
    evil = _json.dumps({**body, "url": "http://127.0.0.1/evil"}).encode()
    resp = c.open("/v1/webhooks", method="POST", data=evil, headers=headers, unsigned=True)
    assert resp.status_code == 401
    assert signed(c, "GET", "/v1/webhooks", RETAILER).json["webhooks"] == []


def test_a_member_has_at_most_twenty_subscriptions(app: Flask) -> None:
    c = app.test_client()
    for i in range(MAX_SUBSCRIPTIONS):
        assert signed(c, "POST", "/v1/webhooks", RETAILER, {"url": f"http://127.0.0.1/h{i}", "types": ["shipment"]}).status_code == 201
    resp = signed(c, "POST", "/v1/webhooks", RETAILER, {"url": "http://127.0.0.1/h", "types": ["shipment"]})
    assert resp.status_code == 409 and resp.json["code"] == "too_many_webhooks" and resp.json["limit"] == MAX_SUBSCRIPTIONS
    # Another member's limit is their own.
    assert signed(c, "POST", "/v1/webhooks", CARRIER, {"url": "http://127.0.0.1/h", "types": ["shipment"]}).status_code == 201
