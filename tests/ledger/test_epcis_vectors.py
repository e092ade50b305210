"""GS1's EPCIS 2.0 example documents (tests/vectors/epcis-2.0) through the import mapping.

Every document validates against GS1's JSON Schema and every event gets the outcome named in
the table below: the events that fit the ledger's model map to payloads, the others are
refused with the expected code. Counts come from the vectors' index.json, so a moved or
edited file cannot pass. The schema checker is shown able to fail, formats included.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ledger.epcis import REFUSAL_CODES, ImportMap, Mapped, LedgerHandoff, Refused, events_of, map_document, merge_members, parse_map, validate_document
from ledger.epcis.schema import SCHEMA_FILE
from ledger.errors import InvalidEpcisDocument
from ledger.payloads import validate_payload

from ..conftest import VECTORS

EPCIS = VECTORS / "epcis-2.0"
ORIGIN = "import.filiera.example"
ME = "importer"

# What each event of each document becomes, without a ledger to look handoffs up in.
EXPECTED: dict[str, list[str]] = {
    "examples/AssociationEvent/AssociationEvent-a.jsonld": ["unsupported_event_type"],
    "examples/AssociationEvent/AssociationEvent-c.jsonld": ["unsupported_event_type"],
    "examples/AssociationEvent/AssociationEvent-e.jsonld": ["unsupported_event_type"],
    "examples/AssociationEvent/AssociationEvent-g.jsonld": ["unsupported_event_type"],
    # shipping with no destination party; then receiving what that refused event shipped
    "examples/EPCISQueryDocument.jsonld": ["missing_party", "no_handoff"],
    "examples/Example-Type-sourceOrDestination,measurement,bizTransaction.jsonld": ["unsupported_event_type"],
    "examples/Example_9.6.1-ObjectEvent.jsonld": ["missing_party", "no_handoff"],
    # received by its owning party, which is not the importer
    "examples/Example_9.6.2-ObjectEvent.jsonld": ["not_signer"],
    # an input named by an EPC pattern (urn:epc:idpat:...)
    "examples/Example_9.6.4-TransformationEvent.jsonld": ["invalid_identifier"],
    "examples/WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld": ["missing_party", "no_handoff"],
    # the container's children are received; no handoff sends them to the importer
    "examples/WithDigitalLinkID/Example_9.6.3-AggregationEventWithDigitalLink.jsonld": ["no_handoff"],
    "examples/WithErrorDeclaration/ErrorDeclarationAndCorrectiveEvent.jsonld": ["error_declaration", "invalid_identifier"],
    # a receiving aggregation, declared erroneous
    "examples/WithFullCombinationOfFields/aggregation_event_all_possible_fields.jsonld": ["error_declaration"],
    "examples/WithFullCombinationOfFields/object_event_all_possible_fields.jsonld": ["error_declaration"],
    "examples/WithFullCombinationOfFields/transformation_event_all_possible_fields.jsonld": ["error_declaration"],
    "examples/WithSensorData/SensorDataExample1.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample11.jsonld": ["unsupported_event_type"],
    "examples/WithSensorData/SensorDataExample13.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample15.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample17.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample2.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample4.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample6.jsonld": ["unsupported_biz_step"],
    "examples/WithSensorData/SensorDataExample8.jsonld": ["unsupported_event_type"],
}

# The same documents read through the import map of docs/epcis.md (docs/examples/gs1-map.json)
# and the GLNs the member "maker" lists in its gln attribute, signed by the three members;
# still without a ledger, so receipts of handoffs not in the document find none.
WITH_MAP: dict[str, list[str]] = {
    **{name: codes for name, codes in EXPECTED.items() if codes[0] in ("unsupported_event_type", "unsupported_biz_step", "error_declaration")},
    # acme ships two items to shop, where one is received later in the document: a receipt
    # closes a whole handoff, so the shipment is handed over in two parts (one received).
    "examples/EPCISQueryDocument.jsonld": ["mapped", "mapped", "mapped"],
    "examples/Example_9.6.1-ObjectEvent.jsonld": ["mapped", "mapped", "mapped"],
    "examples/WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld": ["mapped", "mapped", "mapped"],
    "examples/Example_9.6.2-ObjectEvent.jsonld": ["no_handoff"],
    "examples/Example_9.6.4-TransformationEvent.jsonld": ["mapped"],
    "examples/WithDigitalLinkID/Example_9.6.3-AggregationEventWithDigitalLink.jsonld": ["no_handoff"],
    "examples/WithErrorDeclaration/ErrorDeclarationAndCorrectiveEvent.jsonld": ["error_declaration", "mapped"],
}
MAP_FILE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "gs1-map.json"
MAKER_GLNS = "urn:epc:id:sgln:4012345.00001.0 urn:epc:id:sgln:4012345.00225.0"
MEMBERS = ["maker", "acme", "shop"]
SGTIN_2017, SGTIN_2018 = "urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:0614141.107346.2018"


def gs1_map() -> ImportMap:
    return merge_members(parse_map(json.loads(MAP_FILE.read_text(encoding="utf-8"))), [("maker", {"gln": MAKER_GLNS})])


INDEX: list[dict[str, Any]] = json.loads((EPCIS / "index.json").read_text(encoding="utf-8"))["documents"]


def load(name: str) -> Any:
    return json.loads((EPCIS / name).read_text(encoding="utf-8"))


def outcome(o: Mapped | Refused) -> str:
    return "mapped" if isinstance(o, Mapped) else o.code


def test_every_indexed_document_has_an_expectation() -> None:
    assert len(INDEX) == 24
    assert {d["file"] for d in INDEX} == set(EXPECTED)
    assert sum(d["event_count"] for d in INDEX) == sum(len(v) for v in EXPECTED.values()) == 28
    assert all(set(codes) <= {*REFUSAL_CODES, "mapped"} for codes in EXPECTED.values())


def test_the_runtime_schema_is_gs1s() -> None:
    assert SCHEMA_FILE.read_bytes() == (EPCIS / "schema" / "EPCIS-JSON-Schema.json").read_bytes()


@pytest.mark.parametrize("case", INDEX, ids=[d["file"].removeprefix("examples/") for d in INDEX])
def test_gs1_example_maps_event_by_event(case: dict[str, Any]) -> None:
    doc = load(case["file"])
    assert doc["type"] == case["document_type"]
    validate_document(doc)
    events = events_of(doc)
    assert len(events) == case["event_count"]
    assert sorted(Counter(e["type"] for e in events).items()) == sorted(map(tuple, case["event_types"]))
    outcomes = map_document(doc, origin=ORIGIN, signers=[ME])
    assert [o.index for o in outcomes] == list(range(case["event_count"]))
    assert [outcome(o) for o in outcomes] == EXPECTED[case["file"]]
    for o, event in zip(outcomes, events):
        assert o.event_id == event.get("eventID")
        assert isinstance(o, Refused) and o.detail


def test_every_indexed_document_has_an_expectation_with_the_map() -> None:
    assert set(WITH_MAP) == set(EXPECTED)


@pytest.mark.parametrize("case", INDEX, ids=[d["file"].removeprefix("examples/") for d in INDEX])
def test_gs1_example_maps_event_by_event_with_the_map(case: dict[str, Any]) -> None:
    doc = load(case["file"])
    outcomes = map_document(doc, origin=ORIGIN, signers=MEMBERS, import_map=gs1_map())
    assert sorted({o.index for o in outcomes}) == list(range(case["event_count"]))
    assert [outcome(o) for o in outcomes] == WITH_MAP[case["file"]]
    for o in outcomes:
        if isinstance(o, Mapped):
            validate_payload(o.payload)
        else:
            assert o.detail


def test_the_map_names_authors_lots_and_recipients() -> None:
    """Example 9.6.4: the member operating the readPoint transforms, the pattern input is the
    lot the map says; 9.6.1: the shipping event with no destination goes to the member that
    receives its lots later in the document."""
    [t] = map_document(load("examples/Example_9.6.4-TransformationEvent.jsonld"), origin=ORIGIN, signers=MEMBERS, import_map=gs1_map())
    assert isinstance(t, Mapped), t
    assert (t.payload["type"], t.author, t.payload["site"]) == ("transform", "maker", "urn:epc:id:sgln:4012345.00001.0")
    assert t.payload["inputs"] == [
        "urn:epc:id:sgtin:4012345.011122.25", "urn:epc:id:sgtin:4000001.065432.99886655",
        "urn:epc:class:lgtin:4012345.011111.4444", "urn:epc:class:lgtin:0614141.077777.987", "MAKER-066666-2014",
    ]
    assert [(o["lot"], o["product"]) for o in t.payload["outputs"]] == [(f"urn:epc:id:sgtin:4012345.077889.{n}", "04012345778892") for n in (25, 26, 27, 28)]
    assert "ilmd" in t.ignored  # best-before date and batch: no place in a transform
    received, rest, receipt = map_document(load("examples/Example_9.6.1-ObjectEvent.jsonld"), origin=ORIGIN, signers=MEMBERS, import_map=gs1_map())
    assert isinstance(received, Mapped) and isinstance(rest, Mapped) and isinstance(receipt, Mapped)
    assert [(o.index, o.part, o.parts) for o in (received, rest, receipt)] == [(0, 1, 2), (0, 2, 2), (1, 1, 1)]
    for part, lots in ((received, [SGTIN_2018]), (rest, [SGTIN_2017])):
        p = part.payload
        assert (p["type"], p["from"], p["to"], p["lots"]) == ("handoff", "acme", "shop", lots)
        assert p["location"] == "urn:epc:id:sgln:0614141.07346.1234"
    assert received.payload["nonce"] != rest.payload["nonce"]
    assert (receipt.payload["type"], receipt.author, receipt.payload["handoff"]) == ("receipt", "shop", received.entry_id)


def test_a_shipment_received_whole_is_one_handoff() -> None:
    """Splitting is only for goods received apart: received together, one handoff."""
    doc = load("examples/Example_9.6.1-ObjectEvent.jsonld")
    doc["epcisBody"]["eventList"][1]["epcList"] = [SGTIN_2017, SGTIN_2018]
    shipping, receipt = map_document(doc, origin=ORIGIN, signers=MEMBERS, import_map=gs1_map())
    assert isinstance(shipping, Mapped) and isinstance(receipt, Mapped)
    assert (shipping.parts, shipping.payload["lots"]) == (1, [SGTIN_2017, SGTIN_2018])
    assert receipt.payload["handoff"] == shipping.entry_id


def test_a_map_that_is_not_one_is_refused() -> None:
    from ledger.errors import InvalidEpcisMap

    for bad in (
        [], {"parties": []}, {"party": {}}, {"parties": {"urn:epc:id:sgln:1.2.3": "Not An Id"}},
        {"parties": {"acme": "acme"}}, {"lots": {"urn:epc:id:sgtin:1.2.3": "bad lot"}}, {"lots": {"x": 1}},
    ):
        with pytest.raises(InvalidEpcisMap) as err:
            parse_map(bad)
        assert err.value.code == "invalid_epcis_map"
    # Two members cannot claim one GLN; the map settles it.
    members = [("a1", {"gln": "urn:epc:id:sgln:1.2.3"}), ("b1", {"gln": "urn:epc:id:sgln:1.2.3"})]
    with pytest.raises(InvalidEpcisMap):
        merge_members(ImportMap(), members)
    assert merge_members(ImportMap(parties={"urn:epc:id:sgln:1.2.3": "b1"}), members).party("urn:epc:id:sgln:1.2.3") == "b1"


def open_to(recipient: str, lot: str, entry: str = "ab" * 32) -> Any:
    """A ledger with one open handoff: ``lot`` to ``recipient``."""

    def find(asked: str, to: str) -> LedgerHandoff | None:
        return LedgerHandoff(entry, to, frozenset([lot])) if (asked, to) == (lot, recipient) else None

    return find


def test_receiving_maps_to_a_receipt_of_the_open_handoff_the_ledger_has() -> None:
    """Example 9.6.2: the owning party receives 200 kg of an LGTIN it was sent."""
    owner, lot = "urn:epc:id:sgln:0614141.00001.0", "urn:epc:class:lgtin:4012345.012345.998877"
    [o] = map_document(load("examples/Example_9.6.2-ObjectEvent.jsonld"), origin=ORIGIN, signers=[owner], find_handoff=open_to(owner, lot))
    assert isinstance(o, Mapped), o
    p = o.payload
    assert (p["type"], p["author"], p["handoff"], p["status"]) == ("receipt", owner, "ab" * 32, "accepted")
    assert p["received_at"] == p["time"] == "2013-06-08T14:58:56.591000Z"
    # The readPoint says where it arrived; the vendor's extension has no place in a receipt.
    assert p["location"] == "urn:epc:id:sgln:0614141.00777.0"
    assert o.ignored == ("example:myField",)
    validate_payload(p)


def test_receiving_after_a_refused_shipping_event_uses_the_ledgers_handoff() -> None:
    """Example 9.6.1 (URN and Digital Link forms): the shipping event names nobody to ship
    to, but the receiving event maps once the ledger has the handoff; times keep their offset."""
    for name, lot in (
        ("examples/Example_9.6.1-ObjectEvent.jsonld", "urn:epc:id:sgtin:0614141.107346.2018"),
        ("examples/WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld", "https://id.gs1.org/01/70614141123451/21/2018"),
    ):
        shipping, receiving = map_document(load(name), origin=ORIGIN, signers=[ME], find_handoff=open_to(ME, lot))
        assert isinstance(shipping, Refused) and shipping.code == "missing_party"
        assert isinstance(receiving, Mapped), receiving
        assert receiving.payload["received_at"] == "2005-04-05T02:33:31.116000Z"  # -06:00 in the event
        assert receiving.payload["handoff"] == "ab" * 32
        # A receipt has no place for business transactions: reported, not dropped silently.
        assert "bizTransactionList" in receiving.ignored


def test_mapping_is_deterministic() -> None:
    """The same event maps to the same entry, so importing a document twice adds nothing."""
    owner, lot = "urn:epc:id:sgln:0614141.00001.0", "urn:epc:class:lgtin:4012345.012345.998877"
    doc = load("examples/Example_9.6.2-ObjectEvent.jsonld")
    a = map_document(doc, origin=ORIGIN, signers=[owner], find_handoff=open_to(owner, lot))
    b = map_document(copy.deepcopy(doc), origin=ORIGIN, signers=[owner], find_handoff=open_to(owner, lot))
    assert isinstance(a[0], Mapped) and isinstance(b[0], Mapped)
    assert a[0].entry_id == b[0].entry_id and a[0].payload == b[0].payload


# --- the schema check can fail, formats included ------------------------------------------


def _broken(edit: Any) -> Any:
    doc = load("examples/Example_9.6.1-ObjectEvent.jsonld")
    edit(doc)
    return doc


BROKEN = {
    "epc-not-a-uri": lambda d: d["epcisBody"]["eventList"][0]["epcList"].__setitem__(0, "not a uri"),
    "event-time-not-a-date": lambda d: d["epcisBody"]["eventList"][0].__setitem__("eventTime", "2005-13-03T20:33:31Z"),
    "no-time-zone-offset": lambda d: d["epcisBody"]["eventList"][0].pop("eventTimeZoneOffset"),
    "unknown-action": lambda d: d["epcisBody"]["eventList"][0].__setitem__("action", "MOVE"),
    "unnamespaced-extension": lambda d: d["epcisBody"]["eventList"][0].__setitem__("myField", 1),
    "no-event-list": lambda d: d["epcisBody"].pop("eventList"),
    "no-context": lambda d: d.pop("@context"),
    "quantity-as-string": lambda d: d["epcisBody"]["eventList"][0].__setitem__("quantityList", [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": "200"}]),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_schema_refuses(name: str) -> None:
    doc = _broken(BROKEN[name])
    with pytest.raises(InvalidEpcisDocument) as err:
        map_document(doc, origin=ORIGIN, signers=[ME])
    assert err.value.code == "invalid_epcis_document"
    assert str(err.value.facts["path"]).startswith("/")


@pytest.mark.parametrize("value", [None, [], "EPCISDocument", {"type": "ObjectEvent"}])
def test_not_a_document(value: Any) -> None:
    with pytest.raises(InvalidEpcisDocument):
        validate_document(value)


def test_vectors_folder_keeps_its_source_note() -> None:
    readme = (EPCIS / "README.md").read_text(encoding="utf-8")
    assert "2b888befbc071e1c2d388e027b30149b3f51dcef" in readme
    assert isinstance(Path(EPCIS / "schema" / "epcis-context.jsonld").read_bytes(), bytes)
