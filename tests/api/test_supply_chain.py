"""Supply-chain and commercial rules through HTTP (PROTOCOL §4 custody and commerce rows).

For every rule: an accepted case and a refused one, each refusal asserted by its ``code`` and
status and checked to have written nothing (tree size and signed checkpoint unchanged). The
state the rules leave (custodians, lineage, handoffs, contracts, payments) is read from the
projection through the store. One ledger per backend serves the whole module, each test with
its own lot and contract ids; the module ends by replaying the whole log with ``filiera
verify``'s checks, the projection included.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import create_app

from .. import conftest
from ..conftest import BACKENDS, LedgerEnv
from ..factories import Member, checkpoint_bytes, envelope, payload, post_batch, post_entry, register, tree_size, update
from ..supply import (
    LedgerView,
    attestation,
    close_contract,
    confirm,
    contract,
    fresh_ledger,
    get_as,
    handoff,
    lot,
    origin,
    payment,
    receipt,
    transform,
    verify_with_projection,
)

# Who takes part, with their roles. ``stranger`` is never registered.
CAST: dict[str, list[str]] = {
    "farm": ["producer"],
    "farm2": ["producer"],
    "mill": ["processor", "buyer"],
    "carrier": ["carrier"],
    "shop": ["retailer"],
    "cert": ["certifier"],
    "trader": ["buyer"],
    "auditor": ["auditor"],
}


@dataclass
class Chain:
    env: LedgerEnv
    client: FlaskClient
    view: LedgerView
    m: dict[str, Member]

    def __getattr__(self, name: str) -> Member:
        members: dict[str, Member] = self.__dict__["m"]
        try:
            return members[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.fixture(scope="module", params=BACKENDS)
def sc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with fresh_ledger(request.param, tmp_path_factory.mktemp(f"supply-{request.param}")) as env:
        app = create_app(env.settings, background_sealing=False)
        signing = getattr(conftest, "SigningClient", None)  # signed reads (PROTOCOL §6)
        if signing is not None:
            app.test_client_class = signing
        client = app.test_client()
        if signing is not None:
            client.signer = env.admin  # type: ignore[attr-defined]
        members = {pid: Member(pid) for pid in CAST}
        resp = post_batch(client, [register(env.admin, members[pid], roles) for pid, roles in CAST.items()])
        assert [r["status"] for r in resp.json["results"]] == [201] * len(CAST), resp.json
        members["stranger"] = Member("stranger")
        view = LedgerView(env.settings)
        try:
            yield Chain(env, client, view, members)
        finally:
            view.close()
            svc = app.extensions["filiera"]
            svc.sealer.stop_background()
            svc.store.dispose()


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def ok(sc: Chain, env: dict[str, Any]) -> str:
    resp = post_entry(sc.client, env)
    assert resp.status_code == 201, resp.json
    entry_id: str = resp.json["id"]
    return entry_id


def refused(sc: Chain, env: Any, status: int, code: str) -> dict[str, Any]:
    size, head = tree_size(sc.client), checkpoint_bytes(sc.client)
    resp = post_entry(sc.client, env)
    assert (resp.status_code, resp.json.get("code")) == (status, code), resp.json
    assert resp.mimetype == "application/problem+json"
    assert tree_size(sc.client) == size
    assert checkpoint_bytes(sc.client) == head
    body: dict[str, Any] = resp.json
    return body


def new_lots(sc: Chain, producer: Member | None = None, n: int = 1) -> list[str]:
    """``n`` fresh lots, made by ``producer`` (the farm by default) and held by it."""
    ids = [uid("OL") for _ in range(n)]
    ok(sc, origin(producer or sc.farm, *(lot(i) for i in ids)))
    return ids


def held_by(sc: Chain, member: Member, n: int = 1) -> list[str]:
    """``n`` fresh lots in ``member``'s custody (made by the farm, handed off co-signed)."""
    ids = new_lots(sc, n=n)
    if member.id != sc.farm.id:
        ok(sc, handoff(sc.farm, member, ids, cosign=True))
    return ids


def lot_state(sc: Chain, lot_id: str) -> tuple[str, str, str | None]:
    rec = sc.view.record("lot", lot_id)
    assert rec is not None, f"lot {lot_id} is not in the projection"
    return rec.custodian, rec.status, rec.handoff


def open_contract(sc: Chain, buyer: Member | None = None, seller: Member | None = None, currency: str = "EUR") -> str:
    cid = uid("C")
    ok(sc, contract(buyer or sc.mill, seller or sc.farm, cid, currency=currency))
    return cid


def unknown_entry_id() -> str:
    return secrets.token_hex(32)


# --- origin -------------------------------------------------------------------------------


def test_origin_by_producer_makes_lots_it_holds(sc: Chain) -> None:
    a, b = uid("OL"), uid("OL")
    entry = ok(sc, origin(sc.farm, lot(a), lot(b, "olives", "12.5", "kg"), claims=["organic"]))
    for lot_id, qty in ((a, "1000"), (b, "12.5")):
        rec = sc.view.record("lot", lot_id)
        assert (rec.custodian, rec.status, rec.handoff, rec.parents) == ("farm", "held", None, ())
        assert (rec.quantity, rec.created_by) == (qty, entry)
    # The entry itself, as its author reads it.
    got = get_as(sc.client, sc.farm, f"/v1/entries/{entry}")
    assert got.status_code == 200, got.json
    assert [x["lot"] for x in got.json["payload"]["lots"]] == [a, b]


@pytest.mark.parametrize("who", ["mill", "carrier", "cert", "trader", "auditor"])
def test_origin_by_non_producer_is_refused(sc: Chain, who: str) -> None:
    lot_id = uid("OL")
    refused(sc, origin(sc.m[who], lot(lot_id)), 403, "role_not_allowed")
    assert sc.view.record("lot", lot_id) is None


def test_origin_of_a_lot_id_already_in_the_ledger_is_refused(sc: Chain) -> None:
    (taken,) = new_lots(sc)
    fresh = uid("OL")
    refused(sc, origin(sc.farm2, lot(fresh), lot(taken)), 409, "duplicate_lot")
    assert lot_state(sc, taken) == ("farm", "held", None)
    assert sc.view.record("lot", fresh) is None


def test_origin_listing_a_lot_twice_is_refused(sc: Chain) -> None:
    twice = uid("OL")
    refused(sc, origin(sc.farm, lot(twice), lot(twice, quantity="2")), 400, "invalid_field")
    assert sc.view.record("lot", twice) is None


# --- handoff ------------------------------------------------------------------------------


def test_handoff_puts_lots_in_transit_until_received(sc: Chain) -> None:
    lots = new_lots(sc, n=2)
    h = ok(sc, handoff(sc.farm, sc.carrier, lots))
    for lot_id in lots:
        assert lot_state(sc, lot_id) == ("farm", "in_transit", h)
    rec = sc.view.record("handoff", h)
    assert (rec.sender, rec.recipient, rec.lots, rec.status, rec.closed_by) == ("farm", "carrier", tuple(lots), "open", None)


def test_handoff_of_a_lot_held_by_someone_else_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    refused(sc, handoff(sc.farm2, sc.mill, [lot_id]), 422, "not_custodian")
    assert lot_state(sc, lot_id) == ("farm", "held", None)


def test_handoff_authored_by_someone_other_than_from_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    fields: dict[str, Any] = {"from": sc.farm.id, "to": sc.mill.id, "lots": [lot_id], "dispatched_at": "2026-10-16T08:00:00Z"}
    p = payload("handoff", sc.carrier.id, **fields)
    refused(sc, envelope(p, sc.carrier), 422, "not_custodian")
    refused(sc, envelope(p, sc.carrier, sc.farm), 422, "not_custodian")


def test_handoff_of_a_lot_in_transit_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, sc.carrier, [lot_id]))
    refused(sc, handoff(sc.farm, sc.mill, [lot_id]), 422, "lot_in_transit")
    # Nor can the recipient pass it on before receiving it.
    refused(sc, handoff(sc.carrier, sc.mill, [lot_id]), 422, "lot_in_transit")
    assert lot_state(sc, lot_id) == ("farm", "in_transit", h)


def test_handoff_of_a_consumed_lot_is_refused(sc: Chain) -> None:
    (lot_id,) = held_by(sc, sc.mill)
    ok(sc, transform(sc.mill, [lot_id], lot(uid("EVO"), "oil", "150", "l")))
    refused(sc, handoff(sc.mill, sc.shop, [lot_id]), 422, "lot_consumed")
    assert lot_state(sc, lot_id) == ("mill", "consumed", None)


def test_handoff_of_an_unknown_lot_is_refused(sc: Chain) -> None:
    (mine,) = new_lots(sc)
    refused(sc, handoff(sc.farm, sc.mill, [mine, uid("NOPE")]), 422, "unknown_lot")
    assert lot_state(sc, mine) == ("farm", "held", None)


def test_handoff_to_an_unregistered_participant_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    refused(sc, handoff(sc.farm, sc.stranger, [lot_id]), 422, "unknown_participant")


def test_handoff_to_oneself_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    refused(sc, handoff(sc.farm, sc.farm, [lot_id]), 422, "same_party")


def test_handoff_signed_by_a_third_member_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    refused(sc, handoff(sc.farm, sc.mill, [lot_id], signers=(sc.farm, sc.carrier)), 403, "not_a_party")
    assert lot_state(sc, lot_id) == ("farm", "held", None)


def test_handoff_by_a_member_without_a_custody_role_is_refused(sc: Chain) -> None:
    refused(sc, handoff(sc.trader, sc.mill, [uid("OL")]), 403, "role_not_allowed")
    (lot_id,) = new_lots(sc)
    # Co-signed by a recipient whose roles do not allow custody.
    refused(sc, handoff(sc.farm, sc.cert, [lot_id], cosign=True), 403, "role_not_allowed")


def test_cosigned_handoff_is_received_at_once(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, sc.mill, [lot_id], cosign=True))
    assert lot_state(sc, lot_id) == ("mill", "held", None)
    rec = sc.view.record("handoff", h)
    assert (rec.status, rec.closed_by) == ("accepted", h)
    refused(sc, receipt(sc.mill, h), 422, "handoff_not_open")
    # The new custodian moves it on; the old one cannot.
    refused(sc, handoff(sc.farm, sc.shop, [lot_id]), 422, "not_custodian")
    ok(sc, handoff(sc.mill, sc.shop, [lot_id], cosign=True))
    assert lot_state(sc, lot_id) == ("shop", "held", None)


def test_handoff_under_an_open_contract(sc: Chain) -> None:
    cid = open_contract(sc)
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, sc.mill, [lot_id], contract=cid))
    assert sc.view.record("handoff", h).contract == cid


def test_handoff_under_an_unknown_contract_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    refused(sc, handoff(sc.farm, sc.mill, [lot_id], contract=uid("C")), 422, "unknown_contract")
    assert lot_state(sc, lot_id) == ("farm", "held", None)


def test_handoff_under_a_closed_contract_is_refused(sc: Chain) -> None:
    cid = open_contract(sc)
    ok(sc, close_contract(sc.farm, cid, "terminated"))
    (lot_id,) = new_lots(sc)
    refused(sc, handoff(sc.farm, sc.mill, [lot_id], contract=cid), 422, "contract_not_open")


# --- receipt ------------------------------------------------------------------------------


def test_accepted_receipt_moves_custody(sc: Chain) -> None:
    lots = new_lots(sc, n=2)
    h = ok(sc, handoff(sc.farm, sc.carrier, lots))
    r = ok(sc, receipt(sc.carrier, h))
    for lot_id in lots:
        assert lot_state(sc, lot_id) == ("carrier", "held", None)
    rec = sc.view.record("handoff", h)
    assert (rec.status, rec.closed_by) == ("accepted", r)
    # The carrier now holds them and hands them on.
    h2 = ok(sc, handoff(sc.carrier, sc.mill, lots))
    ok(sc, receipt(sc.mill, h2))
    assert {lot_state(sc, x)[0] for x in lots} == {"mill"}


def test_rejected_receipt_returns_custody_to_the_sender(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, sc.carrier, [lot_id]))
    ok(sc, receipt(sc.carrier, h, "rejected"))
    assert lot_state(sc, lot_id) == ("farm", "held", None)
    assert sc.view.record("handoff", h).status == "rejected"
    refused(sc, handoff(sc.carrier, sc.mill, [lot_id]), 422, "not_custodian")
    # The sender can hand it off again.
    h2 = ok(sc, handoff(sc.farm, sc.mill, [lot_id]))
    assert lot_state(sc, lot_id) == ("farm", "in_transit", h2)


def test_receipt_by_someone_other_than_the_recipient_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, sc.carrier, [lot_id]))
    refused(sc, receipt(sc.mill, h), 403, "not_recipient")
    refused(sc, receipt(sc.farm, h, "rejected"), 403, "not_recipient")
    assert lot_state(sc, lot_id) == ("farm", "in_transit", h)


def test_receipt_of_an_unknown_handoff_is_refused(sc: Chain) -> None:
    refused(sc, receipt(sc.mill, unknown_entry_id()), 422, "unknown_handoff")
    # An entry that exists but is not a handoff is not one either.
    not_a_handoff = ok(sc, origin(sc.farm, lot(uid("OL"))))
    refused(sc, receipt(sc.farm, not_a_handoff), 422, "unknown_handoff")


def test_second_receipt_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, sc.carrier, [lot_id]))
    ok(sc, receipt(sc.carrier, h))
    refused(sc, receipt(sc.carrier, h), 422, "handoff_not_open")
    refused(sc, receipt(sc.carrier, h, "rejected"), 422, "handoff_not_open")
    assert lot_state(sc, lot_id) == ("carrier", "held", None)


def test_handoff_to_a_recipient_without_a_custody_role_is_refused(sc: Chain) -> None:
    # Only a custody role can sign the receipt: lots sent to a buyer, a certifier or an
    # auditor would stay in transit for ever.
    (lot_id,) = new_lots(sc)
    for who in ("trader", "cert", "auditor"):
        refused(sc, handoff(sc.farm, sc.m[who], [lot_id]), 403, "role_not_allowed")
    assert lot_state(sc, lot_id) == ("farm", "held", None)


def test_receipt_by_a_recipient_who_lost_its_custody_role_is_refused(sc: Chain) -> None:
    courier = Member(uid("courier").lower())
    ok(sc, register(sc.env.admin, courier, ["carrier"]))
    (lot_id,) = new_lots(sc)
    h = ok(sc, handoff(sc.farm, courier, [lot_id]))
    ok(sc, update(sc.env.admin, courier.id, roles=["buyer"]))
    refused(sc, receipt(courier, h), 403, "role_not_allowed")
    assert lot_state(sc, lot_id) == ("farm", "in_transit", h)
    # Given the role back, it receives the lots.
    ok(sc, update(sc.env.admin, courier.id, roles=["carrier", "buyer"]))
    ok(sc, receipt(courier, h))
    assert lot_state(sc, lot_id) == (courier.id, "held", None)


# --- transform ----------------------------------------------------------------------------


def test_transform_consumes_inputs_and_keeps_lineage(sc: Chain) -> None:
    inputs = held_by(sc, sc.mill, n=2)
    out_a, out_b = uid("EVO"), uid("POMACE")
    entry = ok(sc, transform(sc.mill, inputs, lot(out_a, "extra virgin olive oil", "150", "l"), lot(out_b, "pomace", "700", "kg")))
    for lot_id in inputs:
        assert lot_state(sc, lot_id) == ("mill", "consumed", None)
    for out in (out_a, out_b):
        rec = sc.view.record("lot", out)
        assert (rec.custodian, rec.status, rec.created_by) == ("mill", "held", entry)
        assert rec.parents == tuple(inputs)
        assert sc.view.parents(out) == sorted(inputs)
    # Lineage runs through more than one step.
    bottled = uid("BTL")
    ok(sc, transform(sc.mill, [out_a], lot(bottled, "EVO 0.75 l", "200", "bottle-750ml")))
    assert sc.view.record("lot", bottled).parents == (out_a,)
    assert sc.view.parents(out_a) == sorted(inputs)


def test_transform_by_a_non_processor_is_refused(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    out = uid("EVO")
    refused(sc, transform(sc.farm, [lot_id], lot(out, "oil", "150", "l")), 403, "role_not_allowed")
    assert lot_state(sc, lot_id) == ("farm", "held", None)
    assert sc.view.record("lot", out) is None


def test_transform_of_an_input_it_does_not_hold_is_refused(sc: Chain) -> None:
    (mine,) = held_by(sc, sc.mill)
    (theirs,) = new_lots(sc)
    out = uid("EVO")
    refused(sc, transform(sc.mill, [mine, theirs], lot(out, "oil", "150", "l")), 422, "not_custodian")
    assert lot_state(sc, mine) == ("mill", "held", None)
    assert sc.view.record("lot", out) is None


def test_transform_of_an_unknown_or_in_transit_input_is_refused(sc: Chain) -> None:
    (mine,) = held_by(sc, sc.mill)
    refused(sc, transform(sc.mill, [mine, uid("NOPE")], lot(uid("EVO"), "oil", "1", "l")), 422, "unknown_lot")
    h = ok(sc, handoff(sc.mill, sc.shop, [mine]))
    refused(sc, transform(sc.mill, [mine], lot(uid("EVO"), "oil", "1", "l")), 422, "lot_in_transit")
    assert lot_state(sc, mine) == ("mill", "in_transit", h)


def test_transform_with_an_output_id_already_used_is_refused(sc: Chain) -> None:
    (lot_id,) = held_by(sc, sc.mill)
    (used,) = new_lots(sc)
    refused(sc, transform(sc.mill, [lot_id], lot(used, "oil", "150", "l")), 409, "duplicate_lot")
    # An input cannot come out again as an output either.
    refused(sc, transform(sc.mill, [lot_id], lot(lot_id, "oil", "150", "l")), 409, "duplicate_lot")
    assert lot_state(sc, lot_id) == ("mill", "held", None)
    assert lot_state(sc, used) == ("farm", "held", None)


def test_transform_listing_an_output_twice_is_refused(sc: Chain) -> None:
    (lot_id,) = held_by(sc, sc.mill)
    out = uid("EVO")
    refused(sc, transform(sc.mill, [lot_id], lot(out, "oil", "1", "l"), lot(out, "oil", "2", "l")), 400, "invalid_field")


# --- attestation --------------------------------------------------------------------------


def test_attestation_on_a_lot(sc: Chain) -> None:
    (lot_id,) = new_lots(sc)
    a = ok(sc, attestation(sc.cert, lot_id, ["organic", "PDO Terra di Bari"]))
    rec = sc.view.record("attestation", a)
    assert (rec.author, rec.subject, rec.claims) == ("cert", lot_id, ("organic", "PDO Terra di Bari"))


def test_attestation_on_an_entry(sc: Chain) -> None:
    made = ok(sc, origin(sc.farm, lot(uid("OL"))))
    a = ok(sc, attestation(sc.cert, made, ["organic"]))
    assert sc.view.record("attestation", a).subject == made


@pytest.mark.parametrize("who", ["farm", "mill", "auditor"])
def test_attestation_by_a_non_certifier_is_refused(sc: Chain, who: str) -> None:
    (lot_id,) = new_lots(sc)
    refused(sc, attestation(sc.m[who], lot_id, ["organic"]), 403, "role_not_allowed")


@pytest.mark.parametrize("subject", ["unknown-lot", "unknown-entry"])
def test_attestation_on_an_unknown_subject_is_refused(sc: Chain, subject: str) -> None:
    target = uid("NOPE") if subject == "unknown-lot" else unknown_entry_id()
    refused(sc, attestation(sc.cert, target, ["organic"]), 422, "unknown_subject")


# --- contract -----------------------------------------------------------------------------


def test_contract_signed_by_both_parties(sc: Chain) -> None:
    cid = uid("C")
    entry = ok(sc, contract(sc.mill, sc.farm, cid))
    rec = sc.view.record("contract", cid)
    assert (rec.buyer, rec.seller, rec.status, rec.entry) == ("mill", "farm", "open", entry)
    assert rec.terms["currency"] == "EUR" and rec.terms["price"] == "4250.00"


@pytest.mark.parametrize("signer", ["buyer-only", "seller-only"])
def test_contract_signed_by_one_party_is_refused(sc: Chain, signer: str) -> None:
    cid = uid("C")
    only = sc.mill if signer == "buyer-only" else sc.farm
    code = "missing_cosignature" if signer == "buyer-only" else "missing_signature"
    # The buyer authors the entry: without the author's signature the entry has none that counts.
    refused(sc, contract(sc.mill, sc.farm, cid, signers=(only,)), 403, code)
    assert sc.view.record("contract", cid) is None


def test_contract_id_used_twice_is_refused(sc: Chain) -> None:
    cid = open_contract(sc)
    refused(sc, contract(sc.trader, sc.farm2, cid), 409, "contract_exists")
    assert sc.view.record("contract", cid).buyer == "mill"


def test_contract_with_oneself_is_refused(sc: Chain) -> None:
    refused(sc, contract(sc.mill, sc.mill, uid("C"), signers=(sc.mill,)), 422, "same_party")


def test_contract_with_an_unregistered_party_is_refused(sc: Chain) -> None:
    refused(sc, contract(sc.mill, sc.stranger, uid("C"), signers=(sc.mill,)), 422, "unknown_participant")


def test_contract_signed_by_a_third_member_is_refused(sc: Chain) -> None:
    refused(sc, contract(sc.mill, sc.farm, uid("C"), signers=(sc.mill, sc.farm, sc.carrier)), 403, "not_a_party")


def test_contract_party_without_a_trade_role_is_refused(sc: Chain) -> None:
    refused(sc, contract(sc.mill, sc.cert, uid("C")), 403, "role_not_allowed")


# --- contract.close -----------------------------------------------------------------------


@pytest.mark.parametrize(("by", "status"), [("buyer", "fulfilled"), ("seller", "terminated")])
def test_either_party_closes_a_contract(sc: Chain, by: str, status: str) -> None:
    cid = open_contract(sc)
    ok(sc, close_contract(sc.mill if by == "buyer" else sc.farm, cid, status))
    rec = sc.view.record("contract", cid)
    assert rec.status == status and rec.closed_index is not None


def test_contract_close_by_a_non_party_is_refused(sc: Chain) -> None:
    cid = open_contract(sc)
    refused(sc, close_contract(sc.trader, cid), 403, "not_a_party")
    assert sc.view.record("contract", cid).status == "open"


def test_contract_closed_twice_is_refused(sc: Chain) -> None:
    cid = open_contract(sc)
    ok(sc, close_contract(sc.mill, cid))
    refused(sc, close_contract(sc.farm, cid, "terminated"), 422, "contract_not_open")
    assert sc.view.record("contract", cid).status == "fulfilled"


def test_contract_close_of_an_unknown_contract_is_refused(sc: Chain) -> None:
    refused(sc, close_contract(sc.mill, uid("C")), 422, "unknown_contract")


# --- payment ------------------------------------------------------------------------------


def test_payment_under_a_contract_and_without_one(sc: Chain) -> None:
    cid = open_contract(sc)
    p = ok(sc, payment(sc.mill, sc.farm, "4250.00", contract=cid))
    rec = sc.view.record("payment", p)
    assert (rec.payer, rec.payee, rec.amount, rec.currency, rec.contract, rec.confirmed_index) == ("mill", "farm", "4250.00", "EUR", cid, None)
    free = ok(sc, payment(sc.trader, sc.carrier, "80.00", currency="USD"))
    assert sc.view.record("payment", free).contract is None


@pytest.mark.parametrize("who", ["reversed", "outsider-payer", "outsider-payee"])
def test_payment_outside_the_contracts_parties_is_refused(sc: Chain, who: str) -> None:
    cid = open_contract(sc)  # mill buys from farm
    payer, payee = {"reversed": (sc.farm, sc.mill), "outsider-payer": (sc.trader, sc.farm), "outsider-payee": (sc.mill, sc.farm2)}[who]
    refused(sc, payment(payer, payee, contract=cid), 422, "contract_parties_mismatch")


def test_payment_in_another_currency_is_refused(sc: Chain) -> None:
    cid = open_contract(sc)
    refused(sc, payment(sc.mill, sc.farm, contract=cid, currency="USD"), 422, "currency_mismatch")


def test_payment_under_an_unknown_contract_is_refused(sc: Chain) -> None:
    refused(sc, payment(sc.mill, sc.farm, contract=uid("C")), 422, "unknown_contract")


def test_payment_to_oneself_or_an_unregistered_payee_is_refused(sc: Chain) -> None:
    refused(sc, payment(sc.mill, sc.mill), 422, "same_party")
    refused(sc, payment(sc.mill, sc.stranger), 422, "unknown_participant")


def test_payment_by_a_member_without_a_trade_role_is_refused(sc: Chain) -> None:
    refused(sc, payment(sc.cert, sc.farm), 403, "role_not_allowed")


def test_payment_to_a_member_without_a_trade_role_is_refused(sc: Chain) -> None:
    # The payee confirms the payment, which needs a trade role.
    refused(sc, payment(sc.mill, sc.cert), 403, "role_not_allowed")
    refused(sc, payment(sc.mill, sc.auditor), 403, "role_not_allowed")


def test_payment_authored_by_someone_other_than_the_payer_is_refused(sc: Chain) -> None:
    p = payload("payment", sc.farm.id, payer=sc.mill.id, payee=sc.farm.id, amount="10.00", currency="EUR", paid_at="2026-10-20T10:00:00Z")
    refused(sc, envelope(p, sc.farm, sc.mill), 403, "not_a_party")


# --- payment.confirm ----------------------------------------------------------------------


def test_payee_confirms_a_payment(sc: Chain) -> None:
    p = ok(sc, payment(sc.mill, sc.farm, contract=open_contract(sc)))
    c = ok(sc, confirm(sc.farm, p))
    assert sc.view.record("payment", p).confirmed_index is not None
    assert get_as(sc.client, sc.farm, f"/v1/entries/{c}").json["payload"]["payment"] == p


@pytest.mark.parametrize("who", ["payer", "outsider"])
def test_confirm_by_someone_other_than_the_payee_is_refused(sc: Chain, who: str) -> None:
    p = ok(sc, payment(sc.mill, sc.farm))
    refused(sc, confirm(sc.mill if who == "payer" else sc.trader, p), 403, "not_a_party")
    assert sc.view.record("payment", p).confirmed_index is None


def test_payment_confirmed_twice_is_refused(sc: Chain) -> None:
    p = ok(sc, payment(sc.mill, sc.farm))
    ok(sc, confirm(sc.farm, p))
    first = sc.view.record("payment", p).confirmed_index
    refused(sc, confirm(sc.farm, p), 409, "payment_already_confirmed")
    assert sc.view.record("payment", p).confirmed_index == first


def test_confirm_of_an_unknown_payment_is_refused(sc: Chain) -> None:
    refused(sc, confirm(sc.farm, unknown_entry_id()), 422, "unknown_payment")
    not_a_payment = ok(sc, origin(sc.farm, lot(uid("OL"))))
    refused(sc, confirm(sc.farm, not_a_payment), 422, "unknown_payment")


# --- shapes: money and quantities are decimal strings; no personal data ---------------------


def _with_lot_quantity(sc: Chain, quantity: Any) -> dict[str, Any]:
    p = payload("origin", sc.farm.id, lots=[{"lot": uid("OL"), "product": "olives", "quantity": quantity, "unit": "kg"}], site="Uliveto")
    p["origin"] = {"country": "IT"}  # not a keyword: payload()'s ``origin`` is the ledger's
    return envelope(p, sc.farm)


BAD_QUANTITIES = [
    pytest.param(1000.5, id="float"),
    pytest.param(1000, id="json-integer"),
    pytest.param("0", id="zero"),
    pytest.param("0.000", id="zero-with-decimals"),
    pytest.param("-1", id="negative"),
    pytest.param("1e3", id="exponent"),
    pytest.param("1,5", id="decimal-comma"),
    pytest.param("01", id="leading-zero"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_lot_quantity_that_is_not_a_positive_decimal_string_is_refused(sc: Chain, quantity: Any) -> None:
    body = refused(sc, _with_lot_quantity(sc, quantity), 400, "invalid_field")
    assert body["field"] == "payload.lots[0].quantity"


def test_smallest_positive_quantity_is_accepted(sc: Chain) -> None:
    ok(sc, _with_lot_quantity(sc, "0.001"))


@pytest.mark.parametrize("amount", [pytest.param(4250.0, id="float"), pytest.param("0", id="zero"), pytest.param("-1", id="negative")])
def test_payment_amount_that_is_not_a_positive_decimal_string_is_refused(sc: Chain, amount: Any) -> None:
    p = payload("payment", sc.mill.id, payer=sc.mill.id, payee=sc.farm.id, amount=amount, currency="EUR", paid_at="2026-10-20T10:00:00Z")
    body = refused(sc, envelope(p, sc.mill), 400, "invalid_field")
    assert body["field"] == "payload.amount"


def test_contract_price_as_a_float_is_refused(sc: Chain) -> None:
    env = contract(sc.mill, sc.farm, uid("C"))
    p = dict(env["payload"])
    p["terms"] = {**p["terms"], "price": 4250.0}
    body = refused(sc, envelope(p, sc.mill, sc.farm), 400, "invalid_field")
    assert body["field"] == "payload.terms.price"


PERSONAL = [
    pytest.param("origin", "site", "Uliveto, ask mario.rossi@example.it", id="email-in-origin-site"),
    pytest.param("handoff", "location", "Dock 4, call +39 347 123 4567", id="phone-in-handoff-location"),
    pytest.param("handoff", "shipment", "CMR 1123 driver +393471234567", id="phone-in-shipment"),
    pytest.param("payment", "invoice", "INV-7 to amministrazione@frantoio.example", id="email-in-invoice"),
    pytest.param("contract.close", "reason", "see anna.bianchi@example.com", id="email-in-close-reason"),
]


@pytest.mark.parametrize(("kind", "field", "text"), PERSONAL)
def test_personal_data_in_free_text_is_refused(sc: Chain, kind: str, field: str, text: str) -> None:
    if kind == "origin":
        env = origin(sc.farm, lot(uid("OL")))
    elif kind == "handoff":
        env = handoff(sc.farm, sc.mill, new_lots(sc))
    elif kind == "payment":
        env = payment(sc.mill, sc.farm)
    else:
        env = close_contract(sc.mill, open_contract(sc))
    p = {**env["payload"], field: text}
    signers = [m for m in sc.m.values() if m.id in {s["signer"] for s in env["signatures"]}]
    body = refused(sc, envelope(p, *signers), 400, "personal_data")
    assert body["field"] == f"payload.{field}"


# --- the whole module's history -------------------------------------------------------------


def test_zz_the_whole_history_replays_and_matches_the_projection(sc: Chain) -> None:
    """Runs last (tests run in file order): everything above, replayed by `filiera verify`."""
    report = verify_with_projection(sc.env.settings)
    assert report.tree_size == tree_size(sc.client)
    assert report.tree_size > 100
