"""``GET /v1/lots/{lot}/epcis``: a lot's history as an EPCIS 2.0 document, through HTTP.

On both backends: the document validates against GS1's JSON Schema, has one event per entry
in log order (two for a co-signed handoff), and each event names its entry's id, leaf hash and
index as ``GET /v1/entries/{id}`` gives them; members see only the entries they are party to;
and every lot of the demo consortium exports to a valid document.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import create_app
from ledger.config import Settings
from ledger.epcis import validate_document
from ledger.keys import read_key_file

from .. import conftest
from ..conftest import BACKENDS, Db, LedgerEnv, SigningClient
from ..factories import Member, post_batch, post_entry, register
from ..supply import fresh_ledger, get_as, handoff, lot, origin, receipt, transform

CAST = {"farm": ["producer"], "mill": ["processor"], "carrier": ["carrier"], "shop": ["retailer"], "auditor": ["auditor"], "outsider": ["retailer"]}
GTIN = "09506000134352"


@dataclass
class Chain:
    env: LedgerEnv
    client: FlaskClient
    m: dict[str, Member]
    entries: list[str]  # the oil's history, in log order


def _ok(client: FlaskClient, env: dict[str, Any]) -> str:
    resp = post_entry(client, env)
    assert resp.status_code == 201, resp.json
    entry_id: str = resp.json["id"]
    return entry_id


@pytest.fixture(scope="module", params=BACKENDS)
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with fresh_ledger(request.param, tmp_path_factory.mktemp(f"epcis-{request.param}")) as env:
        app = create_app(env.settings, background_sealing=False)
        app.test_client_class = conftest.SigningClient
        client = app.test_client()
        assert isinstance(client, SigningClient)
        client.signer = env.admin
        m = {pid: Member(pid) for pid in CAST}
        resp = post_batch(client, [register(env.admin, m[pid], roles) for pid, roles in CAST.items()])
        assert [r["status"] for r in resp.json["results"]] == [201] * len(CAST), resp.json
        made = _ok(client, origin(m["farm"], lot("OLV-1", quantity="1200.5"), lot("OLV-2", product=GTIN, quantity="3", unit="crate")))
        sent = _ok(client, handoff(m["farm"], m["mill"], ["OLV-1", "OLV-2"]))
        got = _ok(client, receipt(m["mill"], sent))
        pressed = _ok(client, transform(m["mill"], ["OLV-1", "OLV-2"], lot("OIL-1", product="extra virgin olive oil", quantity="200.5", unit="l")))
        collected = _ok(client, handoff(m["mill"], m["carrier"], ["OIL-1"], cosign=True))
        delivered = _ok(client, handoff(m["carrier"], m["shop"], ["OIL-1"]))
        refused = _ok(client, receipt(m["shop"], delivered, status="rejected"))
        try:
            yield Chain(env, client, m, [made, sent, got, pressed, collected, delivered, refused])
        finally:
            svc = app.extensions["filiera"]
            svc.sealer.stop_background()
            svc.store.dispose()


def export(chain: Chain, who: str, lot_id: str = "OIL-1") -> Any:
    return get_as(chain.client, chain.m[who], f"/v1/lots/{lot_id}/epcis")


def steps(doc: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(e["type"], e.get("bizStep"), e.get("disposition")) for e in doc["epcisBody"]["eventList"]]


def test_export_is_a_valid_epcis_document_of_the_whole_history(chain: Chain) -> None:
    resp = export(chain, "auditor")
    assert resp.status_code == 200, resp.json
    assert resp.mimetype == "application/ld+json"
    doc = resp.get_json(force=True)
    validate_document(doc)
    assert steps(doc) == [
        ("ObjectEvent", "commissioning", "active"),
        ("ObjectEvent", "shipping", "in_transit"),
        ("ObjectEvent", "receiving", "in_progress"),
        ("TransformationEvent", "commissioning", "active"),
        ("ObjectEvent", "shipping", "in_transit"),  # co-signed: shipped and received at once
        ("ObjectEvent", "receiving", "in_progress"),
        ("ObjectEvent", "shipping", "in_transit"),
        ("ObjectEvent", "receiving", "returned"),  # the shop refused the delivery
    ]
    named = [e["filiera:entry"]["filiera:id"] for e in doc["epcisBody"]["eventList"]]
    assert named == [*chain.entries[:5], chain.entries[4], *chain.entries[5:]]
    assert doc["filiera:ledger"] == "test.filiera.example"
    assert doc["filiera:lot"] == "https://test.filiera.example/lots/OIL-1"


def test_each_event_names_its_entry_as_the_ledger_serves_it(chain: Chain) -> None:
    doc = export(chain, "auditor").get_json(force=True)
    for event in doc["epcisBody"]["eventList"]:
        ext = event["filiera:entry"]
        entry = chain.client.get(f"/v1/entries/{ext['filiera:id']}")
        assert entry.status_code == 200
        assert (ext["filiera:leafHash"], ext["filiera:index"]) == (entry.json["leaf_hash"], entry.json["index"])
        assert (ext["filiera:type"], ext["filiera:author"]) == (entry.json["payload"]["type"], entry.json["payload"]["author"])
        assert event["eventID"].startswith(f"ni:///sha-256;{ext['filiera:id']}?")


def test_lots_are_named_and_described(chain: Chain) -> None:
    doc = export(chain, "auditor").get_json(force=True)
    master = {e["id"]: {a["id"]: a["attribute"] for a in e["attributes"]} for e in doc["epcisHeader"]["epcisMasterData"]["vocabularyList"][0]["vocabularyElementList"]}
    crate = f"https://id.gs1.org/01/{GTIN}/10/OLV-2"  # a lot whose product is a GTIN: Digital Link
    assert master[crate] == {"filiera:lot": "OLV-2", "urn:epcglobal:cbv:mda#descriptionShort": GTIN, "filiera:unit": "crate"}
    assert master["https://test.filiera.example/lots/OLV-1"]["filiera:unit"] == "kg"
    made = doc["epcisBody"]["eventList"][0]
    assert made["quantityList"] == [
        {"epcClass": "https://test.filiera.example/lots/OLV-1", "quantity": 1200.5, "uom": "KGM"},
        {"epcClass": crate, "quantity": 3},
    ]
    assert made["ilmd"]["cbvmda:countryOfOrigin"] == "IT"


def test_members_see_the_events_they_are_party_to(chain: Chain) -> None:
    shop = export(chain, "shop")
    assert shop.status_code == 200
    doc = shop.get_json(force=True)
    validate_document(doc)
    assert [e["filiera:entry"]["filiera:id"] for e in doc["epcisBody"]["eventList"]] == chain.entries[5:]
    farm = export(chain, "farm").get_json(force=True)
    # The farm made the olives and handed them to the mill; the pressing is the mill's own.
    assert [e["filiera:entry"]["filiera:id"] for e in farm["epcisBody"]["eventList"]] == chain.entries[:3]


def test_a_lot_nobody_shows_you_is_not_found_like_no_lot(chain: Chain) -> None:
    hidden = export(chain, "outsider")
    missing = export(chain, "auditor", "NO-SUCH-LOT")
    for resp in (hidden, missing):
        assert (resp.status_code, resp.mimetype, resp.json["code"]) == (404, "application/problem+json", "lot_not_found")


def test_reads_are_for_members(chain: Chain) -> None:
    resp = chain.client.get("/v1/lots/OIL-1/epcis", unsigned=True)
    assert resp.status_code == 401
    bad = get_as(chain.client, chain.m["auditor"], "/v1/lots/not%20a%20lot/epcis")
    assert (bad.status_code, bad.json["code"]) == (400, "invalid_field")


def test_openapi_documents_the_export(chain: Chain) -> None:
    op = chain.client.get("/openapi.json").json["paths"]["/v1/lots/{lot}/epcis"]["get"]
    assert "application/ld+json" in op["responses"]["200"]["content"]
    assert op["security"] == [{"memberSignature": []}]
    assert {"400", "401", "404", "413"} <= set(op["responses"])


# --- the demo consortium -----------------------------------------------------------------


def test_every_demo_lot_exports_to_a_valid_document(db: Db, tmp_path: Path) -> None:
    from sqlalchemy import select

    from api.demo import build_demo
    from ledger.storage import schema as t
    from ledger.storage.store import Store

    data = tmp_path / "demo"
    settings = Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=db.url, seal_interval=0.0)
    build_demo(settings, origin="demo.filiera.example", if_missing=False, lots=6)
    store = Store.open(settings)
    with store.read() as conn:
        lots = sorted(conn.scalars(select(t.lots.c.lot)))
    store.dispose()
    app = create_app(settings, background_sealing=False)
    app.test_client_class = conftest.SigningClient
    client = app.test_client()
    auditor = Member("revisori-associati", read_key_file(data / "revisori-associati.key").signing_key)
    milan = Member("mercato-milano", read_key_file(data / "mercato-milano.key").signing_key)
    try:
        assert len(lots) >= 10 and any(lot.startswith("EVO-MIL") for lot in lots)
        kinds: set[tuple[str, str | None, str | None]] = set()
        for lot_id in lots:
            resp = get_as(client, auditor, f"/v1/lots/{lot_id}/epcis")
            assert resp.status_code == 200, (lot_id, resp.json)
            doc = resp.get_json(force=True)
            validate_document(doc)
            kinds |= set(steps(doc))
        # Every kind of event the mapping makes, the demo's refused pallet included.
        assert {("ObjectEvent", "receiving", "returned"), ("TransformationEvent", "commissioning", "active"), ("ObjectEvent", "commissioning", "active")} <= kinds
        mine = get_as(client, milan, f"/v1/lots/{next(lot for lot in lots if lot.startswith('EVO-MIL'))}/epcis")
        assert mine.status_code == 200
        validate_document(mine.get_json(force=True))
    finally:
        svc = app.extensions["filiera"]
        svc.sealer.stop_background()
        svc.store.dispose()


def test_a_history_too_large_for_one_document_is_refused(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.storage import history

    monkeypatch.setattr(history, "MAX_LOTS", 2)  # the oil comes from three lots
    resp = export(chain, "auditor")
    assert (resp.status_code, resp.json["code"], resp.json["limit"]) == (413, "history_too_large", 2)
    monkeypatch.setattr(history, "MAX_LOTS", 3)
    assert export(chain, "auditor").status_code == 200
