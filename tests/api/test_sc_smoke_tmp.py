from tests.factories import Member, register
from tests.supply import *

def test_flow(client, ledger_env):
    admin = ledger_env.admin
    farm, mill, carrier, shop, cert = Member("farm"), Member("mill"), Member("carrier"), Member("shop"), Member("cert")
    for m, roles in [(farm, ["producer"]), (mill, ["processor", "buyer"]), (carrier, ["carrier"]), (shop, ["retailer"]), (cert, ["certifier"])]:
        assert client.post("/v1/entries", json=register(admin, m, roles)).status_code == 201
    r = client.post("/v1/entries", json=origin(farm, lot("OL-1"), lot("OL-2")))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=handoff(farm, mill, ["OL-1"]))
    assert r.status_code == 201, r.json
    h = r.json["id"]
    r = client.post("/v1/entries", json=handoff(farm, mill, ["OL-1"]))
    assert r.json["code"] == "lot_in_transit", r.json
    r = client.post("/v1/entries", json=receipt(mill, h))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=receipt(mill, h))
    assert r.json["code"] == "handoff_not_open", r.json
    r = client.post("/v1/entries", json=transform(mill, ["OL-1"], lot("EVO-1", "oil", "150", "l")))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=attestation(cert, "OL-2", ["organic"]))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=contract(mill, farm, "C-1"))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=payment(mill, farm, contract="C-1"))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=confirm(farm, r.json["id"]))
    assert r.status_code == 201, r.json
    r = client.post("/v1/entries", json=handoff(mill, shop, ["EVO-1"], cosign=True))
    assert r.status_code == 201, r.json
    from api.verify_sources import db_blocks
    from ledger.verify import verify_chain
    src, _, check = db_blocks(ledger_env.settings)
    rep = verify_chain(src, node_check=check)
    assert rep.entries == 15
