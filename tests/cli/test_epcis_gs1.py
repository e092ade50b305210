"""GS1's EPCIS 2.0 example documents imported as a trading partner would, one ledger each.

For every document in tests/vectors/epcis-2.0: `filiera init`, three traders and an auditor registered
with `filiera keygen`, `sign` and `submit` (``maker`` lists its GLNs in its ``gln`` attribute), the
ledger brought to where the document starts (the lots it names, made and shipped by importing
the partners' own earlier events), then a dry run and `filiera epcis import --map
docs/examples/gs1-map.json`. Each document gives exactly the entries and refusals in the table
below; `filiera verify` passes and each lot's `filiera epcis export` validates against GS1's
schema and shows the imported events to the auditor. Documents none of whose events the ledger can hold
share one ledger, which they leave as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.epcis import events_of, validate_document
from ledger.epcis.vocabulary import EPCIS_CONTEXT

from ..conftest import VECTORS
from .conftest import ModuleDbs, Server, error_code, on, run, start_server, stop

GS1 = VECTORS / "epcis-2.0"
REPO = Path(__file__).resolve().parents[2]
MAP = REPO / "docs" / "examples" / "gs1-map.json"
ACME_INPUTS = REPO / "docs" / "examples" / "acme-inputs.jsonld"
ORIGIN = "gs1.filiera.example"
MAKER_SITE = "urn:epc:id:sgln:4012345.00001.0"
MAKER_DOCK = "urn:epc:id:sgln:4012345.00225.0"
ACME_SITE = "urn:epc:id:sgln:0614141.07346.1234"
ACME_PARTY = "urn:epc:id:sgln:0614141.00001.0"
MEMBERS: dict[str, dict[str, Any]] = {
    "maker": {"roles": ["producer", "processor"], "attributes": {"gln": f"{MAKER_SITE} {MAKER_DOCK}"}},
    "acme": {"roles": ["producer", "processor", "warehouse"]},
    "shop": {"roles": ["retailer"]},
    "revisore": {"roles": ["auditor"]},
}
TRADERS = ["maker", "acme", "shop"]
BEFORE = "2001-01-01T00:00:00Z"  # the partners' earlier events, before every GS1 example


# --- the partners' earlier events --------------------------------------------------------


def _doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {"@context": [EPCIS_CONTEXT], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": BEFORE, "epcisBody": {"eventList": list(events)}}


def commissioning(site: str, epcs: list[str], quantities: list[tuple[str, float, str | None]], country: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent", "eventTime": BEFORE, "eventTimeZoneOffset": "+00:00", "action": "ADD",
        "bizStep": "commissioning", "disposition": "active", "epcList": epcs, "bizLocation": {"id": site},
        "ilmd": {"cbvmda:countryOfOrigin": country},
    }
    if quantities:
        event["quantityList"] = [{"epcClass": c, "quantity": q, **({"uom": u} if u else {})} for c, q, u in quantities]
    return event


def shipping(site: str, epcs: list[str], classes: list[tuple[str, float, str | None]], to: str) -> dict[str, Any]:
    event = commissioning(site, epcs, classes, "XX")
    del event["ilmd"], event["bizLocation"]
    event.update(action="OBSERVE", bizStep="shipping", disposition="in_transit", readPoint={"id": site}, destinationList=[{"type": "owning_party", "destination": to}])
    event["eventTime"] = "2001-01-02T00:00:00Z"
    return event


SGTIN_2017, SGTIN_2018 = "urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:0614141.107346.2018"
DL_2017, DL_2018 = "https://id.gs1.org/01/70614141123451/21/2017", "https://id.gs1.org/01/70614141123451/21/2018"
LGTIN = "urn:epc:class:lgtin:4012345.012345.998877"
DL_GTIN, DL_LGTIN = "https://id.gs1.org/01/04012345987652", "https://id.gs1.org/01/04012345123456/10/998877"
T_INPUTS = (["urn:epc:id:sgtin:4012345.011122.25", "urn:epc:id:sgtin:4000001.065432.99886655"], [
    ("urn:epc:class:lgtin:4012345.011111.4444", 10, "KGM"), ("urn:epc:class:lgtin:0614141.077777.987", 30, None),
    ("urn:epc:idpat:sgtin:4012345.066666.*", 220, None),
])
DL_CHILDREN = ([DL_2017, DL_2018], [(DL_GTIN, 10, None), (DL_LGTIN, 200.5, "KGM")])


@dataclass(frozen=True)
class Case:
    """A document, what the ledger must hold first (each as (signers, events)), the exact
    outcome per event ("sealed" or a refusal code) and the lots to export, by whom."""

    outcomes: list[str]
    before: list[tuple[list[str], list[dict[str, Any]]]] = field(default_factory=list)
    before_file: Path | None = None
    exports: list[tuple[str, list[str]]] = field(default_factory=list)  # (lot, its last bizSteps)


PARTS = ["sealed", "sealed", "sealed"]
ACME_SHIPS = [(["acme"], [commissioning(ACME_SITE, [SGTIN_2017, SGTIN_2018], [], "US")])]
MOVED = {
    # acme's two items go to shop, who receives one of them later in the document: a receipt
    # closes a whole handoff, so the shipping event is two handoffs, one of them received.
    "Example_9.6.1-ObjectEvent.jsonld": Case(PARTS, ACME_SHIPS, exports=[(SGTIN_2018, ["commissioning", "shipping", "receiving"]), (SGTIN_2017, ["commissioning", "shipping"])]),
    "EPCISQueryDocument.jsonld": Case(PARTS, ACME_SHIPS, exports=[(SGTIN_2018, ["commissioning", "shipping", "receiving"]), (SGTIN_2017, ["commissioning", "shipping"])]),
    "WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld": Case(
        PARTS, [(["acme"], [commissioning(ACME_SITE, [DL_2017, DL_2018], [], "US")])], exports=[(DL_2018, ["commissioning", "shipping", "receiving"]), (DL_2017, ["commissioning", "shipping"])],
    ),
    # maker made and shipped 200 kg to acme (named by its GLN as owning party): acme receives them.
    "Example_9.6.2-ObjectEvent.jsonld": Case(
        ["sealed"], [(["maker"], [commissioning(MAKER_SITE, [], [(LGTIN, 200, "KGM")], "DE"), shipping(MAKER_DOCK, [], [(LGTIN, 200, "KGM")], ACME_PARTY)])],
        exports=[(LGTIN, ["commissioning", "shipping", "receiving"])],
    ),
    # maker holds the five inputs, one named by an EPC pattern the map gives a lot id.
    "Example_9.6.4-TransformationEvent.jsonld": Case(
        ["sealed"], [(["maker"], [commissioning(MAKER_SITE, *T_INPUTS, "DE")])],
        exports=[("urn:epc:id:sgtin:4012345.077889.25", ["commissioning", "commissioning"]), ("MAKER-066666-2014", ["commissioning", "commissioning"])],
    ),
    # maker shipped a pallet's contents to acme; acme receives the pallet (its children).
    "WithDigitalLinkID/Example_9.6.3-AggregationEventWithDigitalLink.jsonld": Case(
        ["sealed"], [(["maker"], [commissioning(MAKER_SITE, *DL_CHILDREN, "DE"), shipping(MAKER_DOCK, *DL_CHILDREN, ACME_PARTY)])],
        exports=[(DL_LGTIN, ["commissioning", "shipping", "receiving"])],
    ),
    # The event declared erroneous stays out; its correction transforms acme's inputs
    # (docs/epcis.md walks through this one).
    "WithErrorDeclaration/ErrorDeclarationAndCorrectiveEvent.jsonld": Case(
        ["error_declaration", "sealed"], before_file=ACME_INPUTS,
        exports=[("MAKER-044444-2020", ["commissioning", "commissioning"])],
    ),
}
REFUSED = {
    "AssociationEvent/AssociationEvent-a.jsonld": ["unsupported_event_type"],
    "AssociationEvent/AssociationEvent-c.jsonld": ["unsupported_event_type"],
    "AssociationEvent/AssociationEvent-e.jsonld": ["unsupported_event_type"],
    "AssociationEvent/AssociationEvent-g.jsonld": ["unsupported_event_type"],
    "Example-Type-sourceOrDestination,measurement,bizTransaction.jsonld": ["unsupported_event_type"],
    "WithFullCombinationOfFields/aggregation_event_all_possible_fields.jsonld": ["error_declaration"],
    "WithFullCombinationOfFields/object_event_all_possible_fields.jsonld": ["error_declaration"],
    "WithFullCombinationOfFields/transformation_event_all_possible_fields.jsonld": ["error_declaration"],
    "WithSensorData/SensorDataExample1.jsonld": ["unsupported_biz_step"],
    "WithSensorData/SensorDataExample2.jsonld": ["unsupported_biz_step"],
    "WithSensorData/SensorDataExample4.jsonld": ["unsupported_biz_step"],
    "WithSensorData/SensorDataExample6.jsonld": ["unsupported_biz_step"],
    "WithSensorData/SensorDataExample8.jsonld": ["unsupported_event_type"],
    "WithSensorData/SensorDataExample11.jsonld": ["unsupported_event_type"],
    "WithSensorData/SensorDataExample13.jsonld": ["unsupported_biz_step"],
    "WithSensorData/SensorDataExample15.jsonld": ["unsupported_biz_step"],
    "WithSensorData/SensorDataExample17.jsonld": ["unsupported_biz_step"],
}


def test_every_gs1_document_has_a_case() -> None:
    index = json.loads((GS1 / "index.json").read_text(encoding="utf-8"))["documents"]
    assert {d["file"].removeprefix("examples/") for d in index} == set(MOVED) | set(REFUSED)
    assert len(MOVED) + len(REFUSED) == 24
    counts = {d["file"].removeprefix("examples/"): d["event_count"] for d in index}
    assert all(len(c.outcomes) >= counts[n] for n, c in MOVED.items())
    assert all(len(c) == counts[n] for n, c in REFUSED.items())


# --- a ledger, as its members set it up ----------------------------------------------------


@dataclass
class Ledger:
    data: Path
    url: str
    server: Server

    def key(self, pid: str) -> str:
        return str(self.data / f"{pid}.key")

    def keys(self, *pids: str) -> list[str]:
        return [a for pid in pids for a in ("--key", self.key(pid))]

    def size(self) -> int:
        status, info = self.server.get_json("/v1/ledger")
        assert status == 200
        return int(info["tree_size"])

    def epcis_import(self, path: Path, *signers: str, dry_run: bool = False) -> tuple[int, list[dict[str, Any]], str]:
        args = ["epcis", "import", str(path), "--url", self.server.url, "--map", str(MAP), "--json", *self.keys(*signers)]
        res = run(args + (["--dry-run"] if dry_run else []))
        return res.exit_code, [json.loads(ln) for ln in res.stdout.splitlines()], res.stderr


def new_ledger(root: Path, db_url: str) -> Ledger:
    """`filiera init`, then each member's key (`keygen`) registered by the admin (`sign`,
    `submit`), as docs/epcis.md describes."""
    data = root / "ledger"
    res = run([*on(data, db_url), "init", "--origin", ORIGIN])
    assert res.exit_code == 0, res.stdout + res.stderr
    server = start_server(data, db_url, root, workers=1, env={"FILIERA_SEAL_INTERVAL": "0.05"})
    try:
        envelopes = []
        for pid, member in MEMBERS.items():
            res = run(["keygen", "--participant", pid, "--out", str(data / f"{pid}.key")])
            assert res.exit_code == 0, res.stderr
            public = json.loads(res.stdout)["public_key"]
            reg = root / f"register-{pid}.json"
            participant = {"id": pid, "name": f"{pid.title()} S.p.A.", "keys": [{"public_key": public}], **member}
            reg.write_text(json.dumps({"ledger": ORIGIN, "type": "participant.register", "participant": participant}), encoding="utf-8")
            res = run(["sign", str(reg), "--key", str(data / "admin.key"), "--out", str(root / f"{pid}.env.json")])
            assert res.exit_code == 0, res.stderr
            envelopes.append(str(root / f"{pid}.env.json"))
        res = run(["submit", *envelopes, "--url", server.url])
        assert res.exit_code == 0, res.stdout + res.stderr
    except BaseException:
        stop(server.process)
        raise
    return Ledger(data, db_url, server)


@pytest.fixture(scope="module")
def quiet_ledger(module_dbs: ModuleDbs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    ledger = new_ledger(tmp_path_factory.mktemp("quiet"), module_dbs.new("quiet"))
    yield ledger
    stop(ledger.server.process)


@pytest.fixture
def fresh_ledger(module_dbs: ModuleDbs, tmp_path: Path) -> Iterator[Ledger]:
    ledger = new_ledger(tmp_path, module_dbs.new(tmp_path.name))
    yield ledger
    stop(ledger.server.process)


def verified(ledger: Ledger) -> None:
    res = run([*on(ledger.data, ledger.url), "verify", "--json"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ok"] is True


# --- the documents -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MOVED))
def test_gs1_document_imports(name: str, fresh_ledger: Ledger, tmp_path: Path) -> None:
    ledger, case = fresh_ledger, MOVED[name]
    befores = [(signers, tmp_path / f"before-{i}.jsonld") for i, (signers, events) in enumerate(case.before)]
    for (signers, path), (_, events) in zip(befores, case.before):
        doc = _doc(*events)
        validate_document(doc)
        path.write_text(json.dumps(doc), encoding="utf-8")
    if case.before_file is not None:
        befores.append((["acme"], case.before_file))
    for signers, path in befores:
        code, lines, err = ledger.epcis_import(path, *signers)
        assert code == 0 and {ln["status"] for ln in lines} == {"sealed"}, (lines, err)

    document = GS1 / "examples" / name
    size = ledger.size()
    code, dry, err = ledger.epcis_import(document, *TRADERS, dry_run=True)
    expected = [("mapped" if o == "sealed" else "refused", None if o == "sealed" else o) for o in case.outcomes]
    assert [(ln["status"], ln.get("code")) for ln in dry] == expected, dry
    assert ledger.size() == size

    code, lines, err = ledger.epcis_import(document, *TRADERS)
    assert [ln["status"] if ln["status"] == "sealed" else ln.get("code") for ln in lines] == case.outcomes, lines
    assert [ln.get("entry") for ln in lines] == [ln.get("entry") for ln in dry]
    imported = case.outcomes.count("sealed")
    assert ledger.size() == size + imported
    assert code == (1 if imported < len(case.outcomes) else 0)
    events = len({ln["index"] for ln in lines})
    assert events == len(events_of(json.loads(document.read_text(encoding="utf-8"))))
    assert f"{events} events: {imported} sealed, 0 already present, {len(lines) - imported} refused" in err
    verified(ledger)

    for lot, steps in case.exports:
        out = tmp_path / "export.jsonld"
        res = run(["epcis", "export", lot, "--url", ledger.server.url, "--key", ledger.key("revisore"), "--out", str(out)])
        assert res.exit_code == 0, res.stderr
        doc = json.loads(out.read_text(encoding="utf-8"))
        validate_document(doc)
        assert [e.get("bizStep", "").rsplit("/", 1)[-1] for e in doc["epcisBody"]["eventList"]][-len(steps):] == steps

    # Again: every mapped event is already there.
    code, again, err = ledger.epcis_import(document, *TRADERS)
    assert [ln["status"] for ln in again] == ["present" if o == "sealed" else "refused" for o in case.outcomes]
    assert ledger.size() == size + imported


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_gs1_document_the_ledger_cannot_hold(name: str, quiet_ledger: Ledger) -> None:
    size = quiet_ledger.size()
    code, lines, err = quiet_ledger.epcis_import(GS1 / "examples" / name, *TRADERS)
    assert code == 1, err
    assert [(ln["status"], ln.get("code")) for ln in lines] == [("refused", c) for c in REFUSED[name]]
    assert all(ln["detail"] and "entry" not in ln for ln in lines)
    assert quiet_ledger.size() == size
    verified(quiet_ledger)


def test_a_map_that_is_not_one_writes_nothing(quiet_ledger: Ledger, tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"parties": {"urn:epc:id:sgln:0614141.00001.0": "Not A Member Id"}}), encoding="utf-8")
    size = quiet_ledger.size()
    res = run(["epcis", "import", str(GS1 / "examples" / "Example_9.6.2-ObjectEvent.jsonld"), "--url", quiet_ledger.server.url, "--map", str(bad), *quiet_ledger.keys("acme")])
    assert (res.exit_code, error_code(res.stderr)) == (1, "invalid_epcis_map")
    assert res.stdout == "" and quiet_ledger.size() == size
