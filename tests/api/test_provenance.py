"""GET /v1/lots/{lot}/provenance and /certificate through HTTP, on SQLite and PostgreSQL
(issue #5): a ten-step lineage through transforms from two groves, each gap named with its
reason, what the public and each member may see, and certificates (and their VC form) that
verify offline and refuse a changed byte, another ledger's key and a story re-signed to say
more than its entries show."""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from api import create_app
from ledger import jcs
from ledger.certificates import sign_certificate, verify_certificate
from ledger.credentials import verify_credential
from ledger.entries import parse_envelope
from ledger.errors import InvalidCertificate, LedgerError
from ledger.keys import SigningKey
from ledger.merkle import verify_inclusion
from ledger.notes import NoteVerifier, verifier_for, verify_checkpoint

from .. import conftest
from ..conftest import BACKENDS, LedgerEnv
from ..factories import ORIGIN, Member, post_batch, post_entry, register
from ..supply import STORY_CAST, fresh_ledger, lineage_story, lot, origin, payment

CAST = {**STORY_CAST, "other": ["retailer"], "auditor": ["auditor"]}


@dataclass
class World:
    env: LedgerEnv
    client: FlaskClient
    m: dict[str, Member]
    verifier: NoteVerifier

    def ok(self, envelope: dict[str, Any]) -> str:
        resp = post_entry(self.client, envelope)
        assert resp.status_code == 201, resp.json
        entry_id: str = resp.json["id"]
        return entry_id

    def view(self, lot_id: str, member: Member | None = None) -> dict[str, Any]:
        c = self.client.as_member(member) if member is not None else self.client  # type: ignore[attr-defined]
        resp = c.get(f"/v1/lots/{lot_id}/provenance", unsigned=member is None)
        assert resp.status_code == 200, resp.json
        body: dict[str, Any] = resp.json
        return body

    def certificate(self, lot_id: str, member: Member | None = None, *, vc: bool = False) -> bytes:
        c = self.client.as_member(member) if member is not None else self.client  # type: ignore[attr-defined]
        resp = c.get(f"/v1/lots/{lot_id}/certificate{'?format=vc' if vc else ''}", unsigned=member is None)
        assert resp.status_code == 200, resp.data
        data: bytes = resp.data
        return data


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with fresh_ledger(request.param, tmp_path_factory.mktemp(f"provenance-{request.param}")) as env:
        app = create_app(env.settings, background_sealing=False)
        app.test_client_class = conftest.SigningClient
        client = app.test_client()
        client.signer = env.admin  # type: ignore[attr-defined]
        members = {pid: Member(pid) for pid in CAST}
        resp = post_batch(client, [register(env.admin, members[pid], roles) for pid, roles in CAST.items()])
        assert [r["status"] for r in resp.json["results"]] == [201] * len(CAST), resp.json
        verifier = NoteVerifier.parse(client.get("/v1/ledger").json["verifier_key"])
        try:
            yield World(env, client, members, verifier)
        finally:
            svc = app.extensions["filiera"]
            svc.sealer.stop_background()
            svc.store.dispose()


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def failures(view: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["check"], f["reason"], f.get("lot", f.get("claim", ""))) for c in view["checks"] for f in c["failures"]]


def check_proofs(w: World, view: dict[str, Any]) -> None:
    """Every entry's leaf hash from its envelope, and its proof against the one checkpoint."""
    cp = verify_checkpoint(view["checkpoint"]["note"], verifier=w.verifier, origin=ORIGIN)
    assert (cp.tree_size, cp.root.hex()) == (view["checkpoint"]["tree_size"], view["checkpoint"]["root"])
    for e in view["entries"]:
        env = parse_envelope(e["envelope"], origin=ORIGIN)
        assert (env.id, env.leaf_hash.hex()) == (e["id"], e["leaf_hash"])
        verify_inclusion(leaf_hash=env.leaf_hash, index=e["index"], tree_size=cp.tree_size,
                         proof=[bytes.fromhex(h) for h in e["proof"]], root=cp.root)


# --- the story ---------------------------------------------------------------------------


def test_a_ten_step_lineage_from_two_groves_is_certified_with_proofs(world: World) -> None:
    s = lineage_story(world.ok, world.m, uid("P"))
    view = world.view(s["final"])
    assert (view["verdict"], view["status"], view["custodian"], view["scope"]) == ("certified", "held", "shop", "public")
    assert all(c["passed"] for c in view["checks"])
    assert [x["lot"] for x in view["lineage"]] == [*reversed(s["made"]), *s["harvest"]]
    assert [x["kind"] for x in view["lineage"]].count("transform") == 10
    assert [o["entry"] for o in view["origins"]] == s["origins"]
    assert [(o["producer"], o["country"], o["claims"][0]["claim"], o["claims"][0]["attested_by"][0]["certifier"]) for o in view["origins"]] == [
        ("farm", "IT", "organic", "cert"), ("farm2", "IT", "organic", "cert")]
    assert view["claims"] == ["organic"]
    chains = {c["lot"]: c for c in view["custody"]}
    b1 = chains[s["harvest"][2]]
    assert [(st["from"], st["to"], st["status"]) for st in b1["steps"]] == [("farm2", "carrier", "accepted"), ("carrier", "mill", "accepted")]
    assert [st["handoff"] for st in b1["steps"]] == s["carrier_legs"]
    assert all(st["dispatched_at"] and st["received_at"] and st["receipt"] for st in b1["steps"])
    assert b1["steps"][0]["index"] < b1["steps"][1]["index"]
    assert (b1["status"], b1["consumed_by"]) == ("consumed", view["lineage"][-4]["made_by"])
    assert chains[s["harvest"][0]]["steps"][0]["cosigned"] is True
    assert view["participants"]["farm"] == "farm S.p.A."
    # 2 origins, 2 attestations, 4 handoffs, 4 receipts... every one proven in one checkpoint.
    assert len(view["entries"]) == len({e["id"] for e in view["entries"]}) == 2 + 2 + 10 + 5 + 4
    check_proofs(world, view)


def test_a_missing_receipt_is_a_gap(world: World) -> None:
    s = lineage_story(world.ok, world.m, uid("P"), steps=2, receive_last=False)
    view = world.view(s["final"])
    assert (view["verdict"], view["status"], view["custodian"]) == ("not_certified", "in_transit", None)
    assert failures(view) == [("handoffs_received", "receipt_missing", s["final"])]
    gap = view["checks"][3]["failures"][0]
    assert gap["entry"] == s["last_handoff"] and "no receipt" in gap["detail"]


def test_an_unattested_claim_is_a_gap(world: World) -> None:
    s = lineage_story(world.ok, world.m, uid("P"), steps=2, claims2=("organic", "PDO Terra di Bari"))
    view = world.view(s["final"])
    assert view["verdict"] == "not_certified"
    assert failures(view) == [("claims_attested", "claim_unattested", "PDO Terra di Bari")]
    assert view["checks"][1]["failures"][0]["entry"] == s["origins"][1]


def test_a_lineage_beyond_the_limit_has_unknown_origins(world: World) -> None:
    s = lineage_story(world.ok, world.m, uid("P"), steps=4)
    small = create_app(dataclasses.replace(world.env.settings, provenance_max_lots=3), background_sealing=False)
    try:
        resp = small.test_client().get(f"/v1/lots/{s['final']}/provenance")
    finally:
        small.extensions["filiera"].store.dispose()
    view = resp.json
    assert view["verdict"] == "not_certified"
    unknown = [f for f in failures(view) if f[1] == "origin_unknown"]
    assert [f[0] for f in unknown] == ["origins_known"] and unknown[0][2] == s["made"][0]
    assert view["origins"] == []  # the story does not reach a single origin
    check_proofs(world, view)
    assert world.view(s["final"])["verdict"] == "certified"


# --- who sees what -------------------------------------------------------------------------


def commercial_story(w: World, *, country2: str = "IT") -> dict[str, Any]:
    cid = uid("C")
    s = lineage_story(w.ok, w.m, uid("P"), steps=2, contract_id=cid, country2=country2)
    s["payment"] = w.ok(payment(w.m["shop"], w.m["bottler"], contract=cid))
    s["contract"] = cid
    return s


def test_the_public_view_shows_no_contract_price_or_payment(world: World) -> None:
    s = commercial_story(world)
    public = world.view(s["final"])
    text = json.dumps(public)
    assert "contracts" not in public and "payments" not in public
    assert "4250.00" not in text and s["payment"] not in text
    assert {e["type"] for e in public["entries"]} <= {"origin", "transform", "handoff", "receipt", "attestation"}
    assert [c["check"] for c in public["checks"]][-1] == "handoffs_received"
    assert all(st["contract"] is None for c in public["custody"] for st in c["steps"])
    assert b"4250.00" not in world.certificate(s["final"])

    for who in ("shop", "bottler", "auditor"):
        mine = world.view(s["final"], world.m[who])
        assert mine["scope"] == who
        assert [c["contract"] for c in mine["contracts"]] == [s["contract"]]
        assert mine["contracts"][0]["terms"]["price"] == "4250.00"
        assert [p["entry"] for p in mine["payments"]] == [s["payment"]]
        assert mine["checks"][-1] == {"check": "contract_requirements", "passed": True, "failures": []}
        assert mine["custody"][0]["steps"][-1]["contract"] == s["contract"]
        check_proofs(world, mine)
    stranger = world.view(s["final"], world.m["other"])
    assert "contracts" not in stranger and "4250.00" not in json.dumps(stranger)


def test_an_unmet_contract_requirement_is_shown_to_its_parties(world: World) -> None:
    s = commercial_story(world, country2="ES")
    assert world.view(s["final"])["verdict"] == "certified"  # the public has no contract to check
    shop = world.view(s["final"], world.m["shop"])
    assert shop["verdict"] == "not_certified"
    gap = shop["checks"][-1]["failures"]
    assert [(g["reason"], g["contract"], g["lot"], g["country"], g["entry"]) for g in gap] == [
        ("contract_country", s["contract"], s["final"], "ES", s["origins"][1])]
    doc = jcs.loads(world.certificate(s["final"], world.m["shop"]))
    verified = verify_certificate(doc, world.verifier)
    assert (verified.certified, verified.scope) == (False, "shop")


def test_lot_ids_with_colons_and_slashes_work(world: World) -> None:
    epc, nested = f"urn:epc:id:sgtin:0614141.{secrets.randbelow(10**6)}.2017", f"{uid('A')}/b/c"
    world.ok(origin(world.m["farm"], lot(epc), lot(nested)))
    for lot_id in (epc, nested):
        assert world.view(lot_id)["lot"] == lot_id
        assert verify_certificate(jcs.loads(world.certificate(lot_id)), world.verifier).lot == lot_id


@pytest.mark.parametrize("path", ["/v1/lots/NO-SUCH-LOT/provenance", "/v1/lots/NO-SUCH-LOT/certificate"])
def test_an_unknown_lot_is_a_404_problem(world: World, path: str) -> None:
    resp = world.client.get(path, unsigned=True)
    assert (resp.status_code, resp.mimetype, resp.json["code"], resp.json["lot"]) == (404, "application/problem+json", "lot_not_found", "NO-SUCH-LOT")


@pytest.mark.parametrize("path", ["/v1/lots/-bad/provenance", "/v1/lots/ok/certificate?format=pdf", "/v1/lots/ok/certificate?x=1"])
def test_a_malformed_request_is_a_400_problem(world: World, path: str) -> None:
    resp = world.client.get(path, unsigned=True)
    assert resp.status_code == 400 and resp.json["code"] in ("invalid_field", "invalid_page")


def test_a_bad_signature_is_refused_not_read_as_public(world: World) -> None:
    resp = world.client.get("/v1/lots/x/provenance", headers={"Signature-Input": "filiera=()", "Signature": "filiera=:AA==:"}, unsigned=True)
    assert resp.status_code == 401 and resp.json["code"] == "request_signature_invalid"


# --- how it reads ---------------------------------------------------------------------------


def statements(world: World, lot_id: str, member: Member | None = None) -> list[tuple[str, Any]]:
    """The SQL statements, with their parameters, of the (warm) provenance view of ``lot_id``."""
    world.view(lot_id, member)  # the first read of a ledger caches its genesis policy
    engine = world.client.application.extensions["filiera"].store.engine
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        world.view(lot_id, member)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_the_reads_of_a_provenance_do_not_grow_with_its_lineage(world: World) -> None:
    # Per lot, per entry or per proof node, a read would make a long story slow on a
    # database a network away; all of them are batched in a fixed number of statements.
    short = lineage_story(world.ok, world.m, uid("P"), steps=1)
    deep = lineage_story(world.ok, world.m, uid("P"), steps=40)
    assert len(world.view(deep["final"])["entries"]) == 2 + 2 + 40 + 5 + 4
    few, many = len(statements(world, short["final"])), len(statements(world, deep["final"]))
    assert few == many <= 10, (few, many)
    s = commercial_story(world)
    assert len(statements(world, s["final"])) == few
    # A signed read checks the signature first (the key, the member, the nonce and now and then
    # a prune of old nonces: up to 7 statements with their transaction), then reads the
    # contracts, payments and what the member may see.
    assert len(statements(world, s["final"], world.m["shop"])) <= few + 7 + 3


def test_on_postgresql_every_read_of_a_provenance_probes_an_index_per_key(world: World) -> None:
    # Whatever the planner's statistics say, none (tables never analysed) or some: a join it
    # may plan as a hash or merge of whole tables makes the read grow with the ledger.
    if world.env.backend != "postgresql":
        pytest.skip("PostgreSQL plans")
    s = commercial_story(world)
    engine = world.client.application.extensions["filiera"].store.engine
    reads = [(q, p) for q, p in statements(world, s["final"], world.m["shop"]) if q.lstrip().startswith(("SELECT", "WITH"))]
    assert len(reads) >= 8
    with engine.connect() as conn:
        # Nor may a cost estimate in the millions (no statistics) make it JIT-compile a
        # statement that runs in a millisecond.
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        for analysed in (False, True):
            if analysed:  # this ledger's tables only (the search path), not the whole database
                conn.exec_driver_sql(
                    "ANALYZE lots, lot_lineage, lot_handoffs, handoffs, attestations, contracts, payments,"
                    " entry_parties, entries, merkle_nodes, participants, blocks, cosignatures"
                )
            for query, params in reads:
                plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + query, params).scalars())
                assert "Hash Join" not in plan and "Merge Join" not in plan, (analysed, query, plan)


# --- certificates ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issued(world: World) -> dict[str, Any]:
    """A certified story and a gap story, with their certificates as served."""
    good = lineage_story(world.ok, world.m, uid("P"), steps=3)
    gap = lineage_story(world.ok, world.m, uid("P"), steps=2, receive_last=False)
    return {"good": good, "gap": gap, "good_cert": world.certificate(good["final"]), "gap_cert": world.certificate(gap["final"])}


def test_a_certificate_verifies_offline(world: World, issued: dict[str, Any]) -> None:
    doc = jcs.loads(issued["good_cert"])
    assert jcs.canonicalize(doc) == issued["good_cert"]  # served as its canonical JSON
    verified = verify_certificate(doc, world.verifier)
    assert (verified.certified, verified.lot, verified.scope) == (True, issued["good"]["final"], "public")
    cert = doc["certificate"]
    assert cert["format"] == "filiera/certificate/v1" and cert["origins"][0]["claims"][0]["claim"] == "organic"
    assert all(e["tlog_proof"].startswith("c2sp.org/tlog-proof@v1\nindex ") for e in cert["entries"])
    assert all(e["tlog_proof"].endswith(cert["checkpoint"]) for e in cert["entries"])


def test_a_gap_gets_a_valid_certificate_that_says_so(world: World, issued: dict[str, Any]) -> None:
    verified = verify_certificate(jcs.loads(issued["gap_cert"]), world.verifier)
    assert (verified.certified, verified.verdict) == (False, "not_certified")
    assert [f.reason for f in verified.provenance.failures()] == ["receipt_missing"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_certificate_with_one_byte_changed_is_refused(world: World, issued: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(issued["good_cert"])
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="position")
    raw[at] = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != raw[at]), label="byte")
    with pytest.raises(LedgerError):
        verify_certificate(jcs.loads(bytes(raw)), world.verifier)


def test_a_certificate_checked_against_another_ledgers_key_is_refused(world: World, issued: dict[str, Any]) -> None:
    doc = jcs.loads(issued["good_cert"])
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(doc, verifier_for(ORIGIN, SigningKey.generate().public_key.raw))
    assert err.value.facts["reason"] == "signature"
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(doc, verifier_for("other.example", world.verifier.public_key))
    assert err.value.facts["reason"] == "ledger"


def test_the_ledger_itself_cannot_certify_more_than_the_entries_show(world: World, issued: dict[str, Any]) -> None:
    """Re-signed with the ledger's own key, a gap story claimed as certified is still refused."""
    cert = jcs.loads(issued["gap_cert"])["certificate"]
    forged = copy.deepcopy(cert)
    forged["verdict"] = "certified"
    for check in forged["checks"]:
        check.update(passed=True, failures=[])
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(sign_certificate(forged, world.env.ledger_key), world.verifier)
    assert (err.value.facts["reason"], err.value.facts["fields"]) == ("story", ["checks", "verdict"])
    swapped = copy.deepcopy(cert)
    swapped["entries"][0]["tlog_proof"], swapped["entries"][1]["tlog_proof"] = cert["entries"][1]["tlog_proof"], cert["entries"][0]["tlog_proof"]
    with pytest.raises(InvalidCertificate) as err:
        verify_certificate(sign_certificate(swapped, world.env.ledger_key), world.verifier)
    assert err.value.facts["reason"] == "proof"


def test_the_vc_form_verifies_and_a_tampered_one_fails(world: World, issued: dict[str, Any]) -> None:
    final = issued["good"]["final"]
    vc = jcs.loads(world.certificate(final, vc=True))
    assert vc["type"] == ["VerifiableCredential", "FilieraOriginCertificate"]
    assert vc["proof"]["cryptosuite"] == "eddsa-jcs-2022" and vc["proof"]["proofValue"].startswith("z")
    assert vc["issuer"].startswith("did:key:z6Mk") and vc["proof"]["verificationMethod"].startswith(vc["issuer"] + "#")
    assert verify_credential(vc, world.verifier).certified
    for change in (
        lambda d: d["credentialSubject"].update(verdict="not_certified"),
        lambda d: d["credentialSubject"]["certificate"].update(product="truffles"),
        lambda d: d.update(validFrom="2020-01-01T00:00:00Z"),
    ):
        bad = copy.deepcopy(vc)
        change(bad)
        with pytest.raises(InvalidCertificate):
            verify_credential(bad, world.verifier)
    with pytest.raises(InvalidCertificate) as err:
        verify_credential(vc, verifier_for(ORIGIN, SigningKey.generate().public_key.raw))
    assert err.value.facts["reason"] == "key"
