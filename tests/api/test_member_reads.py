"""Member-only reads (PROTOCOL §6, TESTPLAN T5): RFC 9421 signed requests, replay window,
nonce reuse, coverage, revoked keys, and who sees which entry."""

from __future__ import annotations

import datetime as dt
from typing import Any

import http_message_signatures as hms
import pytest
from flask.testing import FlaskClient

from ledger.httpsig import LABEL, sign_request
from ledger.keys import SigningKey

from ..conftest import LedgerEnv
from ..factories import Member, key_revoke, register
from ..supply import contract

PROTECTED = ["/v1/blocks", "/v1/blocks/0", "/v1/participants", "/v1/participants/admin"]
PUBLIC = ["/v1/health", "/v1/ledger", "/v1/checkpoint", "/v1/proofs/inclusion?index=0", "/openapi.json"]


def _signed(client: FlaskClient, member: Member, path: str, **kw: Any) -> Any:
    url = "http://localhost" + path
    headers = sign_request("GET", url, member.key, **kw)
    return client.get(path, headers=headers, unsigned=True)


def _members(client: FlaskClient, env: LedgerEnv) -> dict[str, Member]:
    ms = {
        "buyer": Member("shop-milano"), "seller": Member("frantoio"), "other": Member("feinkost"),
        "auditor": Member("revisori"),
    }
    roles = {"buyer": ["retailer", "buyer"], "seller": ["processor"], "other": ["retailer"], "auditor": ["auditor"]}
    for k, m in ms.items():
        assert client.post("/v1/entries", json=register(env.admin, m, roles[k])).status_code == 201
    return ms


def test_public_resources_need_no_signature(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    for path in PUBLIC:
        assert client.get(path, unsigned=True).status_code == 200, path


@pytest.mark.parametrize("path", PROTECTED)
def test_member_resources_refuse_unsigned_requests(client: FlaskClient, ledger_env: LedgerEnv, path: str) -> None:
    resp = client.get(path, unsigned=True)
    assert resp.status_code == 401
    assert resp.json["code"] == "signature_required"
    assert resp.headers["WWW-Authenticate"].startswith("Signature")
    assert _signed(client, ledger_env.admin, path).status_code == 200


def test_a_contract_is_visible_to_its_parties_and_auditors_only(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    ms = _members(client, ledger_env)
    r = client.post("/v1/entries", json=contract(ms["buyer"], ms["seller"], "C-2026-001"))
    assert r.status_code == 201, r.json
    path = f"/v1/entries/{r.json['id']}"
    for who in ("buyer", "seller", "auditor"):
        got = _signed(client, ms[who], path)
        assert got.status_code == 200, who
        assert got.json["payload"]["terms"]["price"] == "4250.00"
    got = _signed(client, ms["other"], path)
    assert (got.status_code, got.json["code"]) == (404, "entry_not_found")
    assert _signed(client, ledger_env.admin, path).status_code == 200


def test_stale_and_future_signatures_are_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for created in (now - dt.timedelta(minutes=6), now + dt.timedelta(minutes=2)):
        resp = _signed(client, ledger_env.admin, "/v1/blocks", created=created)
        assert (resp.status_code, resp.json["code"]) == (401, "request_signature_expired"), created
    assert _signed(client, ledger_env.admin, "/v1/blocks", created=now - dt.timedelta(minutes=4)).status_code == 200


def test_a_reused_nonce_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    assert _signed(client, ledger_env.admin, "/v1/blocks", nonce="n" * 20).status_code == 200
    again = _signed(client, ledger_env.admin, "/v1/blocks?limit=5", nonce="n" * 20)
    assert (again.status_code, again.json["code"]) == (401, "request_replayed")
    # Replaying the very same request (same headers) is refused too.
    headers = sign_request("GET", "http://localhost/v1/blocks", ledger_env.admin.key)
    assert client.get("/v1/blocks", headers=headers, unsigned=True).status_code == 200
    assert client.get("/v1/blocks", headers=headers, unsigned=True).json["code"] == "request_replayed"


def test_a_signature_for_another_target_or_method_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    headers = sign_request("GET", "http://localhost/v1/blocks/0", ledger_env.admin.key)
    resp = client.get("/v1/participants", headers=headers, unsigned=True)
    assert (resp.status_code, resp.json["code"]) == (401, "request_signature_invalid")
    headers = sign_request("POST", "http://localhost/v1/blocks", ledger_env.admin.key)
    resp = client.get("/v1/blocks", headers=headers, unsigned=True)
    assert (resp.status_code, resp.json["code"]) == (401, "request_signature_invalid")


def _sign_covering(key: SigningKey, url: str, components: tuple[str, ...], **kw: Any) -> dict[str, str]:
    from ledger import httpsig

    msg = httpsig.Message.of("GET", url, {})
    signer = hms.HTTPMessageSigner(signature_algorithm=httpsig._Ed25519, key_resolver=httpsig._Keys(key=key))
    signer.sign(msg, key_id=key.public_key.key_id, created=dt.datetime.now(dt.timezone.utc),
                nonce=kw.get("nonce", "x" * 24), label=LABEL, covered_component_ids=components)
    return msg.headers.as_dict()


def test_signatures_must_cover_method_and_target(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    url = "http://localhost/v1/blocks"
    for components in (("@method",), ("@target-uri",), ("@authority",)):
        headers = _sign_covering(ledger_env.admin.key, url, components, nonce="c" * 20 + components[0][1:4])
        resp = client.get("/v1/blocks", headers=headers, unsigned=True)
        assert (resp.status_code, resp.json["code"]) == (401, "request_signature_invalid"), components


def test_a_body_needs_a_matching_content_digest(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    body = b'{"x": 1}'
    headers = sign_request("GET", "http://localhost/v1/blocks", ledger_env.admin.key, body=body)
    assert "Content-Digest" in headers
    ok = client.get("/v1/blocks", headers=headers, data=body, unsigned=True)
    assert ok.status_code == 200
    headers = sign_request("GET", "http://localhost/v1/blocks", ledger_env.admin.key, body=body)
    tampered = client.get("/v1/blocks", headers=headers, data=b'{"x": 2}', unsigned=True)
    assert (tampered.status_code, tampered.json["code"]) == (401, "request_signature_invalid")
    headers = sign_request("GET", "http://localhost/v1/blocks", ledger_env.admin.key)
    missing = client.get("/v1/blocks", headers=headers, data=body, unsigned=True)
    assert (missing.status_code, missing.json["code"]) == (401, "request_signature_invalid")


def test_unknown_and_revoked_keys_cannot_read(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    stranger = Member("stranger")
    resp = _signed(client, stranger, "/v1/blocks")
    assert (resp.status_code, resp.json["code"]) == (401, "request_signature_invalid")
    m = Member("rotating")
    assert client.post("/v1/entries", json=register(ledger_env.admin, m, ["producer"])).status_code == 201
    assert _signed(client, m, "/v1/participants/rotating").status_code == 200
    assert client.post("/v1/entries", json=key_revoke(m, m.key_id)).status_code == 201
    resp = _signed(client, m, "/v1/participants/rotating")
    assert (resp.status_code, resp.json["code"]) == (401, "request_signature_invalid")
