"""`filiera epcis export` and `filiera epcis import` against served ledgers, as users run them.

* round trip: a demo lot's history exported from one ledger and imported into another (same
  members, their own keys) gives the same business facts; importing again adds nothing;
* GS1's examples import into a ledger that holds what they refer to: the events that fit the
  model become entries, the others are refused per event;
* refusals write nothing: an invalid document, a refused event, a dry run.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from api.cli import init_ledger
from api.demo import CONSORTIUM, build_demo
from ledger.client import http_json
from ledger.config import Settings
from ledger.encoding import format_time
from ledger.entries import parse_envelope, sign_payload
from ledger.keys import SigningKey, read_key_file, write_key_file
from ledger.sealing import Sealer
from ledger.storage.history import lot_history
from ledger.storage.store import Store

from ..conftest import VECTORS, Db, drop_pg_schema, new_pg_schema
from ..facts import business_facts
from ..supply import verify_with_projection
from .conftest import Server, error_code, run, stop

GS1 = VECTORS / "epcis-2.0" / "examples"
LOT = "EVO-MIL-000001"


def settings_for(data: Path, url: str) -> Settings:
    return Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=url, seal_interval=0.0)


def seal(settings: Settings, payloads: list[tuple[dict[str, Any], list[tuple[str, SigningKey]]]]) -> None:
    """Sign and seal entries in-process, before the ledger is served."""
    store = Store.open(settings)
    try:
        sealer = Sealer(store, signing_key=read_key_file(settings.ledger_key_file).signing_key)
        envs = [sign_payload(p, signers) for p, signers in payloads]
        outcomes = sealer.submit_batch(envs, wait=False, raise_first=True)
        assert len(sealer.seal_pending()) == len(outcomes)
    finally:
        store.dispose()


def new_ledger(data: Path, url: str, origin: str, members: list[tuple[str, list[str]]]) -> Settings:
    """A ledger with ``members`` registered, each key file written to ``data``."""
    settings = settings_for(data, url)
    init_ledger(settings, origin=origin, admin="admin", admin_name="Consortium admin")
    admin = read_key_file(data / "admin.key").signing_key
    regs = []
    for pid, roles in members:
        key = SigningKey.generate()
        write_key_file(data / f"{pid}.key", participant=pid, signing_key=key)
        p = payload(origin, "participant.register", "admin", participant={"id": pid, "name": f"{pid} S.p.A.", "roles": roles, "keys": [{"public_key": key.public_key.b64}]})
        regs.append((p, [("admin", admin)]))
    seal(settings, regs)
    return settings


def payload(origin: str, type_: str, author: str, **fields: Any) -> dict[str, Any]:
    return {"ledger": origin, "type": type_, "author": author, "time": format_time(datetime.now(timezone.utc)), "nonce": secrets.token_urlsafe(18), **fields}


def key(data: Path, pid: str) -> SigningKey:
    return read_key_file(data / f"{pid}.key").signing_key


def history(settings: Settings, lot: str) -> list[tuple[dict[str, Any], frozenset[str]]]:
    store = Store.open(settings)
    try:
        with store.read() as conn:
            rows = lot_history(conn, lot)
    finally:
        store.dispose()
    assert rows
    envs = [parse_envelope(json.loads(r.entry.leaf_data), origin=None) for r in rows]
    return [(dict(e.payload), e.signers()) for e in envs if e.type.value in ("origin", "handoff", "receipt", "transform")]


def size(server: Server) -> tuple[int, str]:
    status, info = server.get_json("/v1/ledger")
    assert status == 200
    return int(info["tree_size"]), str(info["root"])


def keys(data: Path, *pids: str) -> list[str]:
    return [arg for pid in pids for arg in ("--key", str(data / f"{pid}.key"))]


# --- round trip --------------------------------------------------------------------------


@pytest.fixture
def other_db(db: Db, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as ``db``."""
    if db.backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    schema, url = new_pg_schema("e_")
    try:
        yield url
    finally:
        drop_pg_schema(schema)


def test_round_trip_into_another_ledger_keeps_the_business_facts(db: Db, other_db: str, tmp_path: Path, servers: Callable[..., Server]) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = settings_for(a_dir, db.url)
    build_demo(a, origin="demo.filiera.example", if_missing=False, lots=6)
    b_url = other_db
    roles = {pid: r + (["warehouse"] if pid == "oleificio-sud" else []) for pid, _, r, _ in CONSORTIUM}
    b = new_ledger(b_dir, b_url, "copy.filiera.example", list(roles.items()))
    # Contracts are agreed between their parties, not part of a lot's history: they are
    # agreed again in the new ledger before the deliveries made under them are imported.
    contracts = [p for p, _ in _log(a) if p["type"] == "contract"]
    seal(b, [(payload("copy.filiera.example", "contract", c["buyer"], **{k: c[k] for k in ("contract", "buyer", "seller", "terms")}), [(c["buyer"], key(b_dir, c["buyer"])), (c["seller"], key(b_dir, c["seller"]))]) for c in contracts])
    server_a, server_b = servers(a_dir, a.database_url, workers=1), servers(b_dir, b_url, workers=1)

    exported = tmp_path / "evo.jsonld"
    out = run(["epcis", "export", LOT, "--url", server_a.url, "--key", str(a_dir / "revisori-associati.key"), "--out", str(exported)])
    assert out.exit_code == 0, out.stderr
    events = json.loads(exported.read_text(encoding="utf-8"))["epcisBody"]["eventList"]
    assert len(events) >= 10

    signers = [pid for pid in roles if pid not in ("bio-cert-italia", "revisori-associati")]
    first = run(["epcis", "import", str(exported), "--url", server_b.url, *keys(b_dir, *signers)])
    assert first.exit_code == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == len(events) and all(", sealed at index " in ln for ln in lines), first.stdout
    assert f"{len(events)} events: {len(events)} sealed, 0 already present, 0 refused" in first.stderr

    assert business_facts(history(b, LOT)) == business_facts(history(a, LOT))
    verify_with_projection(b)

    again = run(["epcis", "import", str(exported), "--url", server_b.url, "--json", *keys(b_dir, *signers)])
    assert again.exit_code == 0, again.stderr
    results = [json.loads(ln) for ln in again.stdout.splitlines()]
    assert [r["status"] for r in results] == ["present"] * len(events)
    assert [r["entry"] for r in results] == [ln.split(" entry ")[1].split()[0] for ln in lines]


def _log(settings: Settings) -> list[tuple[dict[str, Any], frozenset[str]]]:
    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
            assert head is not None
            rows = store.entries_range(conn, 0, head.tree_size)
    finally:
        store.dispose()
    return [(json.loads(r.leaf_data)["payload"], frozenset()) for r in rows]


# --- GS1's examples ----------------------------------------------------------------------

SENDER, OWNER = "urn:epc:id:sgln:4012345.00001.0", "urn:epc:id:sgln:0614141.00001.0"
SGTIN, DL_SGTIN, LGTIN = "urn:epc:id:sgtin:0614141.107346.2018", "https://id.gs1.org/01/70614141123451/21/2018", "urn:epc:class:lgtin:4012345.012345.998877"


def gs1_ledger(tmp_path: Path, db: Db, servers: Callable[..., Server]) -> tuple[Path, Server]:
    """A ledger holding what GS1's examples 9.6.1 and 9.6.2 refer to: the lots, sent to their
    receivers by handoffs still open."""
    data = tmp_path / "gs1"
    origin = "gs1.filiera.example"
    settings = new_ledger(data, db.url, origin, [(SENDER, ["producer"]), (OWNER, ["retailer"]), ("acme", ["producer"]), ("importer", ["retailer"])])
    lots = [{"lot": LGTIN, "product": "04012345123456", "quantity": "200", "unit": "kg"}]
    items = [{"lot": lot, "product": "10614141073464", "quantity": "1", "unit": "each"} for lot in (SGTIN, DL_SGTIN)]
    made = payload(origin, "origin", SENDER, lots=lots, site="urn:epc:id:sgln:4012345.00225.0")
    made["origin"] = {"country": "DE"}
    acme = payload(origin, "origin", "acme", lots=items, site="urn:epc:id:sgln:0614141.07346.1234")
    acme["origin"] = {"country": "US"}
    now = format_time(datetime.now(timezone.utc))
    seal(settings, [
        (made, [(SENDER, key(data, SENDER))]),
        (acme, [("acme", key(data, "acme"))]),
        (payload(origin, "handoff", SENDER, **{"from": SENDER, "to": OWNER, "lots": [LGTIN], "dispatched_at": now}), [(SENDER, key(data, SENDER))]),
        (payload(origin, "handoff", "acme", **{"from": "acme", "to": "importer", "lots": [SGTIN], "dispatched_at": now}), [("acme", key(data, "acme"))]),
        (payload(origin, "handoff", "acme", **{"from": "acme", "to": "importer", "lots": [DL_SGTIN], "dispatched_at": now}), [("acme", key(data, "acme"))]),
    ])
    return data, servers(data, db.url, workers=1)


def statuses(result: Any) -> list[tuple[str, str | None]]:
    return [(r["status"], r.get("code")) for r in map(json.loads, result.stdout.splitlines())]


def test_gs1_examples_import_what_fits_and_refuse_the_rest(db: Db, tmp_path: Path, servers: Callable[..., Server]) -> None:
    data, server = gs1_ledger(tmp_path, db, servers)
    url = ["--url", server.url, "--json"]

    # 9.6.2: the owner receives the 200 kg it was sent.
    got = run(["epcis", "import", str(GS1 / "Example_9.6.2-ObjectEvent.jsonld"), *url, *keys(data, OWNER)])
    assert got.exit_code == 0, got.stdout + got.stderr
    assert statuses(got) == [("sealed", None)]

    # 9.6.1, as URNs and as Digital Links: the shipping event names no receiver and is
    # refused; the receiving event closes the handoff the ledger has.
    for name in ("Example_9.6.1-ObjectEvent.jsonld", "WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld"):
        res = run(["epcis", "import", str(GS1 / name), *url, *keys(data, "importer")])
        assert res.exit_code == 1, res.stdout + res.stderr
        assert statuses(res) == [("refused", "missing_party"), ("sealed", None)]
        assert "2 events: 1 sealed, 0 already present, 1 refused" in res.stderr

    # The query document carries 9.6.1's two events again: nothing new.
    before = size(server)
    res = run(["epcis", "import", str(GS1 / "EPCISQueryDocument.jsonld"), *url, *keys(data, "importer")])
    assert statuses(res) == [("refused", "missing_party"), ("present", None)]
    assert size(server) == before

    # The lots are now the receivers'.
    for lot, who in ((LGTIN, OWNER), (SGTIN, "importer"), (DL_SGTIN, "importer")):
        status, doc = http_json("GET", f"{server.url}/v1/lots/{lot}/epcis", key=key(data, who))
        assert status == 200
        assert [e["bizStep"] for e in doc["epcisBody"]["eventList"]][-2:] == ["shipping", "receiving"]

    # A document no event of which fits writes nothing.
    for name in ("AssociationEvent/AssociationEvent-a.jsonld", "WithSensorData/SensorDataExample1.jsonld", "WithErrorDeclaration/ErrorDeclarationAndCorrectiveEvent.jsonld"):
        res = run(["epcis", "import", str(GS1 / name), "--url", server.url, *keys(data, "importer")])
        assert res.exit_code == 1 and "refused (not mapped)" in res.stdout, res.stdout
    assert size(server) == before


# --- refusals write nothing --------------------------------------------------------------


def test_refusals_write_nothing(db: Db, tmp_path: Path, servers: Callable[..., Server]) -> None:
    data, server = gs1_ledger(tmp_path, db, servers)
    before = size(server)
    importer = keys(data, "importer")

    broken = tmp_path / "broken.jsonld"
    doc = json.loads((GS1 / "Example_9.6.1-ObjectEvent.jsonld").read_text(encoding="utf-8"))
    doc["epcisBody"]["eventList"][1]["epcList"] = ["not a uri"]
    broken.write_text(json.dumps(doc), encoding="utf-8")
    res = run(["epcis", "import", str(broken), "--url", server.url, *importer])
    assert (res.exit_code, error_code(res.stderr)) == (1, "invalid_epcis_document")
    assert "/epcisBody/eventList/1/epcList/0" in res.stderr

    twice = tmp_path / "twice.jsonld"
    twice.write_text('{"type": "EPCISDocument", "type": "EPCISDocument"}', encoding="utf-8")
    res = run(["epcis", "import", str(twice), "--url", server.url, *importer])
    assert (res.exit_code, error_code(res.stderr)) == (1, "duplicate_key")

    # A shipping event the ledger refuses: the lot is still on its way to the importer.
    stolen = tmp_path / "stolen.jsonld"
    doc = json.loads((GS1 / "Example_9.6.1-ObjectEvent.jsonld").read_text(encoding="utf-8"))
    doc["epcisBody"]["eventList"] = [doc["epcisBody"]["eventList"][0]]
    doc["epcisBody"]["eventList"][0]["destinationList"] = [{"type": "possessing_party", "destination": OWNER}]
    doc["epcisBody"]["eventList"][0]["epcList"] = [SGTIN]  # on its way to the importer, from acme
    stolen.write_text(json.dumps(doc), encoding="utf-8")
    res = run(["epcis", "import", str(stolen), "--url", server.url, "--json", *importer])
    assert res.exit_code == 1
    [line] = map(json.loads, res.stdout.splitlines())
    assert (line["status"], line["code"]) == ("refused", "lot_in_transit")
    assert "entry" in line  # mapped, then refused by the ledger

    # A dry run maps and submits nothing.
    res = run(["epcis", "import", str(GS1 / "Example_9.6.2-ObjectEvent.jsonld"), "--url", server.url, "--dry-run", *keys(data, OWNER)])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "receipt entry" in res.stdout and "not submitted (--dry-run)" in res.stdout
    assert size(server) == before


def test_export_errors(db: Db, tmp_path: Path, servers: Callable[..., Server]) -> None:
    data, server = gs1_ledger(tmp_path, db, servers)
    res = run(["epcis", "export", "NO-SUCH-LOT", "--url", server.url, "--key", str(data / "importer.key")])
    assert (res.exit_code, error_code(res.stderr)) == (1, "lot_not_found")
    res = run(["epcis", "export", SGTIN, "--url", server.url, "--key", str(data / "importer.key")])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["type"] == "EPCISDocument"
    stop(server.process)
    res = run(["epcis", "export", SGTIN, "--url", server.url, "--key", str(data / "importer.key")])
    assert (res.exit_code, error_code(res.stderr)) == (2, "unavailable")


def test_batches_stay_under_the_servers_limits() -> None:
    from api.commands.epcis import _BATCH_BYTES, _BATCH_ENTRIES, _batches

    envs = [{"payload": {"n": i, "pad": "x" * (50 if i < 900 else 5000)}} for i in range(1200)]
    batches = _batches(envs)
    assert [e for b in batches for e in b] == envs
    assert all(0 < len(b) <= _BATCH_ENTRIES for b in batches)
    assert all(len(json.dumps(b).encode()) <= _BATCH_BYTES + 2 * len(b) for b in batches)
    assert len(batches) > 3
