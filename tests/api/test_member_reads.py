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


@pytest.mark.parametrize(
    ("path", "iri"),
    [("/v1/participants?after=citt%C3%A0", "/v1/participants?after=città"),
     ("/v1/participants?after=a%2Fb", "/v1/participants?after=a/b")],
    ids=["utf8-in-query", "escaped-slash-in-query"],
)
def test_the_signed_target_is_the_uri_as_sent(client: FlaskClient, ledger_env: LedgerEnv, path: str, iri: str) -> None:
    """RFC 9421 ``@target-uri`` is the URI as the client sent it, percent-encoding and all,
    not Werkzeug's decoded ``request.url`` (an IRI: "%C3%A0" read as "à", "%2F" as "/")."""
    resp = _signed(client, ledger_env.admin, path)
    assert (resp.status_code, resp.json["code"]) == (400, "invalid_page")  # signed, then refused as a cursor
    headers = sign_request("GET", "http://localhost" + iri.replace("à", "%E0"), ledger_env.admin.key)
    resp = client.get(path, headers=headers, unsigned=True)
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


def test_custodians_see_attestations_and_contract_parties_see_deliveries(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    from ..supply import attestation, handoff, lot, origin

    farm, cert, carrier, shop, mill, other = (Member(x) for x in ("grove", "biocert", "trasporti", "negozio", "frantoio-2", "estraneo"))
    for m, roles in ((farm, ["producer"]), (cert, ["certifier"]), (carrier, ["carrier"]), (shop, ["retailer", "buyer"]), (mill, ["processor"]), (other, ["retailer"])):
        assert client.post("/v1/entries", json=register(ledger_env.admin, m, roles)).status_code == 201
    assert client.post("/v1/entries", json=origin(farm, lot("V-1"))).status_code == 201
    att = client.post("/v1/entries", json=attestation(cert, "V-1", ["organic"]))
    assert att.status_code == 201, att.json
    assert _signed(client, farm, f"/v1/entries/{att.json['id']}").status_code == 200
    assert _signed(client, other, f"/v1/entries/{att.json['id']}").status_code == 404
    # The farm sells to the shop; the carrier's leg names the contract, so the shop follows it.
    assert client.post("/v1/entries", json=contract(shop, farm, "C-V-1")).status_code == 201
    assert client.post("/v1/entries", json=handoff(farm, carrier, ["V-1"], cosign=True, contract="C-V-1")).status_code == 201
    leg = client.post("/v1/entries", json=handoff(carrier, mill, ["V-1"], contract="C-V-1"))
    assert leg.status_code == 201, leg.json
    assert _signed(client, shop, f"/v1/entries/{leg.json['id']}").status_code == 200
    assert _signed(client, other, f"/v1/entries/{leg.json['id']}").status_code == 404


def test_a_queued_entry_is_followed_only_by_its_author_and_signers(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    m, other = Member("queued-author"), Member("queued-other")
    for x in (m, other):
        assert client.post("/v1/entries", json=register(ledger_env.admin, x, ["producer"])).status_code == 201
    from ..supply import lot, origin

    r = client.post("/v1/entries", json=origin(m, lot("Q-1")), headers={"Prefer": "respond-async"})
    assert r.status_code == 202
    assert _signed(client, m, f"/v1/entries/{r.json['id']}").status_code == 202
    hidden = _signed(client, other, f"/v1/entries/{r.json['id']}")
    assert (hidden.status_code, hidden.json["code"]) == (404, "entry_not_found")
    unknown = _signed(client, other, "/v1/entries/" + "ab" * 32)
    assert unknown.json["detail"].replace("ab" * 32, "") == hidden.json["detail"].replace(r.json["id"], "")


def test_lots_go_only_to_custody_roles_and_payments_to_trade_roles(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    from ..supply import handoff, lot, origin, payment

    farm, cert = Member("grove-2"), Member("biocert-2")
    for m, roles in ((farm, ["producer"]), (cert, ["certifier"])):
        assert client.post("/v1/entries", json=register(ledger_env.admin, m, roles)).status_code == 201
    assert client.post("/v1/entries", json=origin(farm, lot("W-1"))).status_code == 201
    r = client.post("/v1/entries", json=handoff(farm, cert, ["W-1"]))
    assert (r.status_code, r.json["code"], r.json["field"]) == (403, "role_not_allowed", "to")
    r = client.post("/v1/entries", json=payment(farm, cert, "10.00"))
    assert (r.status_code, r.json["code"], r.json["field"]) == (403, "role_not_allowed", "payee")
