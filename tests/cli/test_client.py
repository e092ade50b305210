"""The Python client (ledger.client) against a real server, as a supplier system uses it:
build, sign, co-sign, submit, read as a member, and check receipts and proofs offline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.client import LedgerClient
from ledger.errors import InvalidProof, LedgerError
from ledger.keys import KeyFile, SigningKey, read_key_file, write_key_file

from ..factories import ORIGIN
from .conftest import ModuleDbs, Server, on, run, start_server, stop


@dataclass
class Live:
    url: str
    data: Path
    admin: KeyFile
    vkey: str
    server: Server


@pytest.fixture(scope="module")
def live(module_dbs: ModuleDbs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("client")
    data, url = work / "data", module_dbs.new("client")
    result = run([*on(data, url), "init", "--origin", ORIGIN, "--admin", "admin"])
    assert result.exit_code == 0, result.output
    vkey = next(ln for ln in result.stdout.splitlines() if "verifier key" in ln).split()[-1]
    server = start_server(data, url, work)
    try:
        yield Live(server.url, data, read_key_file(data / "admin.key"), vkey, server)
    finally:
        stop(server.process)


def _member(live: Live, pid: str, roles: list[str]) -> KeyFile:
    path = live.data / f"{pid}.key"
    write_key_file(path, participant=pid, signing_key=SigningKey.generate())
    kf = read_key_file(path)
    admin = LedgerClient(live.url, key=live.admin, verifier_key=live.vkey)
    env = admin.sign(admin.payload("participant.register", participant={
        "id": pid, "name": f"{pid} S.r.l.", "roles": roles, "keys": [{"public_key": kf.public_key.b64}]}))
    admin.submit(env)
    return kf


def test_submit_and_verify_a_receipt_offline(live: Live) -> None:
    farm = _member(live, "client-farm", ["producer"])
    c = LedgerClient(live.url, key=farm, verifier_key=live.vkey)
    env = c.sign(c.payload("origin", lots=[{"lot": "CL-1", "product": "olives", "quantity": "10", "unit": "kg"}],
                           site="grove", origin={"country": "IT"}))
    receipt = c.submit(env)
    cp = c.verify_receipt(receipt, env)
    assert cp.tree_size > receipt["index"]
    # The same receipt does not prove another entry.
    other = c.sign(c.payload("origin", lots=[{"lot": "CL-2", "product": "olives", "quantity": "1", "unit": "kg"}],
                             site="grove", origin={"country": "IT"}))
    with pytest.raises(InvalidProof):
        c.verify_receipt(receipt, other)
    # Later checkpoints are consistent with the one in the receipt, and the entry is in them.
    c.submit(other)
    head = c.checkpoint()
    c.verify_consistency(cp, head)
    assert c.verify_inclusion(receipt["id"], head) == receipt["index"]


def test_refusals_raise_their_code_and_reads_are_signed(live: Live) -> None:
    farm = _member(live, "client-farm-2", ["producer"])
    mill = _member(live, "client-mill", ["processor"])
    c = LedgerClient(live.url, key=mill, verifier_key=live.vkey)
    with pytest.raises(LedgerError) as err:
        c.submit(c.sign(c.payload("origin", lots=[{"lot": "CL-9", "product": "olives", "quantity": "1", "unit": "kg"}],
                                  site="mill", origin={"country": "IT"})))
    assert err.value.code == "role_not_allowed"
    fc = LedgerClient(live.url, key=farm, verifier_key=live.vkey)
    r = fc.submit(fc.sign(fc.payload("origin", lots=[{"lot": "CL-3", "product": "olives", "quantity": "1", "unit": "kg"}],
                                     site="grove", origin={"country": "IT"})))
    assert fc.get(f"/v1/entries/{r['id']}")["index"] == r["index"]
    # Another member does not see it; an anonymous client is refused.
    with pytest.raises(LedgerError) as err:
        c.get(f"/v1/entries/{r['id']}")
    assert err.value.code == "entry_not_found"
    with pytest.raises(LedgerError) as err:
        LedgerClient(live.url, verifier_key=live.vkey).get(f"/v1/entries/{r['id']}")
    assert err.value.code == "signature_required"


def test_co_signed_handoff_and_a_pinned_key_that_does_not_match(live: Live) -> None:
    farm = _member(live, "client-farm-3", ["producer"])
    shop = _member(live, "client-shop", ["retailer"])
    fc = LedgerClient(live.url, key=farm, verifier_key=live.vkey)
    fc.submit(fc.sign(fc.payload("origin", lots=[{"lot": "CL-4", "product": "olives", "quantity": "1", "unit": "kg"}],
                                 site="grove", origin={"country": "IT"})))
    env = fc.sign(fc.payload("handoff", **{"from": farm.participant, "to": shop.participant, "lots": ["CL-4"],
                                           "dispatched_at": "2026-11-01T08:00:00Z"}))
    env = LedgerClient(live.url, key=shop, verifier_key=live.vkey).sign(env)  # the recipient co-signs
    assert {s["signer"] for s in env["signatures"]} == {farm.participant, shop.participant}
    fc.verify_receipt(fc.submit(env), env)
    # A client pinned to another ledger's key refuses this ledger's checkpoints.
    from ledger.notes import verifier_for

    wrong = verifier_for(ORIGIN, SigningKey.generate().public_key.raw).vkey
    with pytest.raises(LedgerError) as err:
        LedgerClient(live.url, verifier_key=wrong).checkpoint()
    assert err.value.code == "no_trusted_signature"


def test_origin_certificates_are_fetched_and_verified_offline(live: Live) -> None:
    farm = _member(live, "client-farm-4", ["producer"])
    cert = _member(live, "client-cert", ["certifier"])
    fc = LedgerClient(live.url, key=farm, verifier_key=live.vkey)
    lot = "urn:epc:id:sgtin:0614141.107346.2017"
    r = fc.submit(fc.sign(fc.payload("origin", lots=[{"lot": lot, "product": "olives", "quantity": "1", "unit": "kg"}],
                                     site="grove", origin={"country": "IT"}, claims=["organic"])))
    anonymous = LedgerClient(live.url, verifier_key=live.vkey)
    document, verified = anonymous.certificate(lot)
    assert (verified.certified, [f.reason for f in verified.provenance.failures()]) == (False, ["claim_unattested"])
    cc = LedgerClient(live.url, key=cert, verifier_key=live.vkey)
    cc.submit(cc.sign(cc.payload("attestation", subject=r["id"], claims=["organic"])))
    for vc in (False, True):
        document, verified = fc.certificate(lot, vc=vc)
        assert (verified.certified, verified.scope, verified.lot) == (True, "client-farm-4", lot)
        assert fc.verify_certificate(document).certified
    assert fc.provenance(lot)["origins"][0]["claims"][0]["attested_by"][0]["certifier"] == "client-cert"
    document["credentialSubject"]["verdict"] = "not_certified"
    with pytest.raises(LedgerError) as err:
        anonymous.verify_certificate(document)
    assert err.value.code == "invalid_certificate"
    with pytest.raises(LedgerError) as err:
        anonymous.certificate("NO-SUCH-LOT")
    assert err.value.code == "lot_not_found"
