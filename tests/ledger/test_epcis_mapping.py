"""The EPCIS mapping both ways, without a database: entries -> document -> payloads.

* every refusal code, each on the smallest event that earns it;
* a property: any chain of origin, handoff (co-signed or not), receipt and transform entries
  exports to a document GS1's schema accepts, and maps back to payloads with the same
  business facts (lots, products, quantities, units, parties, places, times, references).
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.entries import parse_envelope
from ledger.epcis import NS, REFUSAL_CODES, HistoryEntry, LedgerHandoff, Mapped, Refused, event_id, lot_document, map_document, validate_document
from ledger.epcis.vocabulary import EPCIS_CONTEXT, gtin14, gtin_of_identifier, utc_time
from ledger.payloads import validate_payload

from ..facts import business_facts
from ..factories import Member, envelope, payload

ORIGIN = "import.filiera.example"
ME = "urn:epc:id:pgln:0614141.00777"
T0 = "2026-03-01T08:00:00.000000Z"


def document(*events: dict[str, Any], master: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": [EPCIS_CONTEXT, {"filiera": NS}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-03-02T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }
    if master is not None:
        doc["epcisHeader"] = {"epcisMasterData": {"vocabularyList": [{"type": "urn:epcglobal:epcis:vtype:EPCClass", "vocabularyElementList": master}]}}
    return doc


def event(kind: str = "ObjectEvent", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "eventTime": "2026-03-01T09:00:00+01:00", "eventTimeZoneOffset": "+01:00", **fields}


LGTIN = "urn:epc:class:lgtin:4012345.012345.998877"
SITE = {"id": "urn:epc:id:sgln:4012345.00001.0"}


def commissioning(**over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action": "ADD", "bizStep": "commissioning",
        "quantityList": [{"epcClass": LGTIN, "quantity": 200, "uom": "KGM"}],
        "bizLocation": SITE, "ilmd": {"cbvmda:countryOfOrigin": "IT"},
    }
    fields.update(over)
    return event(**{k: v for k, v in fields.items() if v is not None})


def shipping(to: str = "urn:epc:id:pgln:0614141.00777", *lots: str, **over: Any) -> dict[str, Any]:
    return event(
        action="OBSERVE", bizStep="shipping",
        epcList=list(lots or ("urn:epc:id:sgtin:0614141.107346.2017",)),
        destinationList=[{"type": "owning_party", "destination": to}], **over,
    )


def receiving(*lots: str) -> dict[str, Any]:
    return event(action="OBSERVE", bizStep="receiving", epcList=list(lots))


REFUSALS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "commissioning-without-country": ([commissioning(ilmd=None)], "missing_country"),
    "commissioning-without-site": ([commissioning(bizLocation=None)], "missing_site"),
    "commissioning-without-quantity": ([commissioning(quantityList=[{"epcClass": LGTIN}])], "missing_quantity"),
    "commissioning-a-pallet-without-product": ([commissioning(quantityList=None, epcList=["urn:epc:id:sscc:0614141.1234567890"])], "missing_product"),
    "commissioning-nothing": ([commissioning(quantityList=None, epcList=[])], "missing_lot"),
    "commissioning-a-percent-escape": ([commissioning(quantityList=None, epcList=["urn:epc:id:sgtin:0614141.107346.A%2FB"])], "invalid_identifier"),
    "commissioning-at-an-e-mail-address": ([commissioning(bizLocation={"id": "mailto:grower@example.com"})], "invalid_entry"),
    "delete": ([commissioning(action="DELETE", bizStep="decommissioning", ilmd=None)], "unsupported_action"),
    "add-while-receiving": ([commissioning(bizStep="receiving")], "unsupported_action"),
    "observe-without-a-step": ([event(action="OBSERVE", epcList=["urn:epc:id:sgtin:0614141.107346.2017"])], "unsupported_biz_step"),
    "shipping-to-a-digital-link-party": ([shipping("https://id.gs1.org/417/0614141000005")], "invalid_party"),
    "shipping-for-someone-else": ([shipping(sourceList=[{"type": "possessing_party", "source": "urn:epc:id:pgln:4012345.00225"}])], "not_signer"),
    # The ledger holds a handoff of items 1 and 2 to ME (see test_refusal); a document
    # received in parts is split instead (test_epcis_vectors).
    "receiving-part-of-a-ledger-handoff": ([receiving("urn:epc:id:sgtin:0614141.107346.1")], "partial_receipt"),
    "transformation-without-inputs": ([event("TransformationEvent", transformationID="urn:epc:id:gdti:0614141.12345.400", outputQuantityList=[{"epcClass": LGTIN, "quantity": 1}], readPoint=SITE)], "partial_transformation"),
    "extension-event-type": ([event("example:CustomEvent", **{"@context": [EPCIS_CONTEXT, {"example": "http://ns.example.com/epcis/"}]})], "unsupported_event_type"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusal(name: str) -> None:
    events, code = REFUSALS[name]

    def ledger(lot: str, to: str) -> LedgerHandoff | None:
        items = frozenset({"urn:epc:id:sgtin:0614141.107346.1", "urn:epc:id:sgtin:0614141.107346.2"})
        return LedgerHandoff("cd" * 32, to, items) if name == "receiving-part-of-a-ledger-handoff" and to == ME else None

    outcomes = map_document(document(*events), origin=ORIGIN, signers=[ME], find_handoff=ledger)
    last = outcomes[-1]
    assert isinstance(last, Refused), last
    assert (last.index, last.code) == (len(events) - 1, code), last.detail
    assert all(isinstance(o, Mapped) for o in outcomes[:-1])


def test_every_refusal_code_is_exercised() -> None:
    from .test_epcis_vectors import EXPECTED

    seen = {code for _, code in REFUSALS.values()} | {c for codes in EXPECTED.values() for c in codes}
    assert seen == set(REFUSAL_CODES)


def test_commissioning_maps_to_an_origin() -> None:
    ev = commissioning(ilmd={"cbvmda:countryOfOrigin": "IT", "filiera:region": "Puglia", "filiera:geo": "geo:41.1087,16.6912", "filiera:claims": ["organic"]})
    [o] = map_document(document(ev, master=[{"id": LGTIN, "attributes": [{"id": "urn:epcglobal:cbv:mda#descriptionShort", "attribute": "olives"}]}]), origin=ORIGIN, signers=[ME])
    assert isinstance(o, Mapped), o
    assert o.payload["lots"] == [{"lot": LGTIN, "product": "olives", "quantity": "200", "unit": "kg"}]
    assert o.payload["origin"] == {"country": "IT", "region": "Puglia", "geo": {"lat": 41.1087, "lon": 16.6912}}
    assert (o.payload["site"], o.payload["claims"], o.payload["time"]) == ("urn:epc:id:sgln:4012345.00001.0", ["organic"], "2026-03-01T08:00:00.000000Z")
    assert o.author == ME and o.ignored == ()


def test_a_gtin_names_the_product_when_master_data_does_not() -> None:
    ev = commissioning(quantityList=None, epcList=["urn:epc:id:sgtin:0614141.107346.2017", "https://id.gs1.org/01/09506000134352/21/7"])
    [o] = map_document(document(ev), origin=ORIGIN, signers=[ME])
    assert isinstance(o, Mapped), o
    assert [(lot["product"], lot["quantity"], lot["unit"]) for lot in o.payload["lots"]] == [("10614141073464", "1", "each"), ("09506000134352", "1", "each")]
    assert gtin14("10614141073464") == "10614141073464" and gtin14("10614141073467") is None
    assert gtin14("9506000134352") == "09506000134352"
    assert gtin_of_identifier(LGTIN) == "04012345123456"
    # An SGTIN pattern over one GTIN names that product (a lot the import map gives it);
    # a pattern over a whole company prefix names none.
    assert gtin_of_identifier("urn:epc:idpat:sgtin:4012345.066666.*") == "04012345666663"
    assert gtin_of_identifier("urn:epc:idpat:sgtin:4012345.*.*") is None


def test_times_keep_their_instant() -> None:
    assert utc_time("2005-04-03T20:33:31.116000-06:00") == "2005-04-04T02:33:31.116000Z"
    assert utc_time("2013-06-04T14:59:02.099+02:00") == "2013-06-04T12:59:02.099000Z"
    assert utc_time("2020-01-14T00:00:00.123456789Z") == "2020-01-14T00:00:00.123456Z"


# --- the round trip ----------------------------------------------------------------------

_TEXT = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 ,.'()/-àéìòùç°"), min_size=1, max_size=40).filter(lambda s: s.strip() == s and s)
_LOT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,24}", fullmatch=True)
_QUANTITY = st.builds(lambda whole, frac: f"{whole}.{frac}" if frac else str(whole), st.integers(1, 10**9), st.sampled_from(["", "5", "25", "125", "05"]))
_UNIT = st.sampled_from(["kg", "l", "t", "bottle-750ml", "crate", "each"])
_PRODUCT = st.one_of(_TEXT, st.just("09506000134352"), st.just("10614141073464"))
_WHEN = st.integers(0, 10**8).map(lambda s: f"2025-{1 + s % 12:02d}-{1 + s % 28:02d}T{s % 24:02d}:{s % 60:02d}:{s % 59:02d}.{s % 1000:03d}000Z")


@st.composite
def chains(draw: Any) -> list[dict[str, Any]]:
    """Signed envelopes of one lot's life: origin, handoff, receipt or co-signature, transform."""
    farm, mill, shop = Member("farm"), Member("mill"), Member("urn:epc:id:pgln:0614141.00777")
    lots = draw(st.lists(_LOT, min_size=1, max_size=3, unique=True))
    made = [{"lot": lot, "product": draw(_PRODUCT), "quantity": draw(_QUANTITY), "unit": draw(_UNIT)} for lot in lots]
    where: dict[str, Any] = {"country": "IT"}
    if draw(st.booleans()):
        where.update(region=draw(_TEXT), place=draw(_TEXT), produced_on="2025-10-15", geo={"lat": draw(st.floats(-90, 90)), "lon": draw(st.floats(-180, 180))})
    fields: dict[str, Any] = {"lots": made, "site": draw(_TEXT), "origin": where}
    if draw(st.booleans()):
        fields["claims"] = ["organic", "PDO Terra di Bari"]
    made_here = payload("origin", farm.id, origin=ORIGIN)
    made_here.update(fields)  # "origin" is both a field and payload()'s ledger argument
    envs = [envelope(made_here, farm)]
    moved: dict[str, Any] = {"from": farm.id, "to": mill.id, "lots": lots, "dispatched_at": draw(_WHEN)}
    for name in ("location", "shipment", "contract"):
        if draw(st.booleans()):
            moved[name] = draw(_LOT if name == "contract" else _TEXT)
    cosigned = draw(st.booleans())
    handoff = envelope(payload("handoff", farm.id, origin=ORIGIN, **moved), *((farm, mill) if cosigned else (farm,)))
    envs.append(handoff)
    if not cosigned:
        got = {"handoff": parse_envelope(handoff, origin=ORIGIN).id, "status": draw(st.sampled_from(["accepted", "rejected"])), "received_at": draw(_WHEN)}
        if draw(st.booleans()):
            got["location"] = draw(_TEXT)
        envs.append(envelope(payload("receipt", mill.id, origin=ORIGIN, **got), mill))
    outputs = [{"lot": f"{lots[0]}-OUT{i}", "product": draw(_PRODUCT), "quantity": draw(_QUANTITY), "unit": draw(_UNIT)} for i in range(draw(st.integers(1, 2)))]
    made_by = {"inputs": lots, "outputs": outputs, "site": draw(_TEXT)}
    if draw(st.booleans()):
        made_by["process"] = draw(_TEXT)
    envs.append(envelope(payload("transform", mill.id, origin=ORIGIN, **made_by), mill))
    later = {"from": mill.id, "to": shop.id, "lots": [outputs[0]["lot"]], "dispatched_at": draw(_WHEN)}
    envs.append(envelope(payload("handoff", mill.id, origin=ORIGIN, **later), mill))
    return envs


@settings(max_examples=60, deadline=None)
@given(chains())
def test_round_trip_keeps_the_business_facts(envs: list[dict[str, Any]]) -> None:
    history = [HistoryEntry(parse_envelope(e, origin=ORIGIN), i, T0) for i, e in enumerate(envs, start=5)]
    target = history[-1].envelope.payload["lots"][0]
    doc = lot_document(ORIGIN, target, history, created=datetime(2026, 3, 2, tzinfo=timezone.utc))
    validate_document(doc)
    outcomes = map_document(copy.deepcopy(doc), origin="copy.filiera.example", signers=["farm", "mill", "urn:epc:id:pgln:0614141.00777"])
    assert all(isinstance(o, Mapped) for o in outcomes), [o for o in outcomes if isinstance(o, Refused)]
    mapped = [o.payload for o in outcomes if isinstance(o, Mapped)]
    for p in mapped:
        validate_payload(p)
    # A co-signed handoff comes back as a handoff and a receipt at its dispatch time.
    assert business_facts((p, [p["author"]]) for p in mapped) == business_facts((h.envelope.payload, h.envelope.signers()) for h in history)
    # Each event names the entry it came from, and its ids are the ledger's.
    firsts = [e for e in doc["epcisBody"]["eventList"] if "&event=" not in e["eventID"]]
    assert len(firsts) == len(history)
    for ev, h in zip(firsts, history):
        assert ev["filiera:entry"]["filiera:id"] == h.envelope.id
        assert ev["filiera:entry"]["filiera:leafHash"] == h.envelope.leaf_hash.hex()
        assert ev["eventID"] == event_id(h.envelope.id)
