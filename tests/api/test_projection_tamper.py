"""`filiera verify` rebuilds the supply-chain state from the log and names the first
projection row that disagrees: the API decides custody from these tables, so an edit to them
behind the ledger's back must not pass."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from api.verify_sources import db_source
from ledger.errors import ChainBroken
from ledger.storage.store import Store
from ledger.verify import verify_chain

from ..conftest import LedgerEnv
from ..factories import Member, register
from ..supply import handoff, lot, origin, transform

EDITS = {
    "lot-custodian": ("UPDATE lots SET custodian = 'grove' WHERE lot = 'OIL-1'", "lot", "OIL-1"),
    "lot-status": ("UPDATE lots SET status = 'held' WHERE lot = 'OLV-1'", "lot", "OLV-1"),
    "lineage-deleted": ("DELETE FROM lot_lineage WHERE child = 'OIL-1'", "lot_lineage", "OLV-1->OIL-1"),
    "lineage-forged": ("INSERT INTO lot_lineage (child, parent, entry) VALUES ('OIL-1', 'OLV-9', 'x')", "lot_lineage", "OLV-9->OIL-1"),
    "handoff-closed": ("UPDATE handoffs SET status = 'accepted'", "handoff", None),
}


def _verify(env: LedgerEnv) -> None:
    src = db_source(env.settings)
    try:
        verify_chain(src.blocks, node_check=src.node_check, state_check=src.state_check)
    finally:
        src.close()


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_projection_edits_are_named(client: FlaskClient, ledger_env: LedgerEnv, edit: str) -> None:
    grove, mill, shop = Member("grove"), Member("mill"), Member("shop")
    for m, roles in ((grove, ["producer"]), (mill, ["processor"]), (shop, ["retailer"])):
        assert client.post("/v1/entries", json=register(ledger_env.admin, m, roles)).status_code == 201
    assert client.post("/v1/entries", json=origin(grove, lot("OLV-1"), lot("OLV-9"))).status_code == 201
    assert client.post("/v1/entries", json=handoff(grove, mill, ["OLV-1"], cosign=True)).status_code == 201
    assert client.post("/v1/entries", json=transform(mill, ["OLV-1"], lot("OIL-1", "oil", "100", "l"))).status_code == 201
    assert client.post("/v1/entries", json=handoff(mill, shop, ["OIL-1"])).status_code == 201
    _verify(ledger_env)  # untouched: no false alarm

    sql, kind, record = EDITS[edit]
    store = Store.open(ledger_env.settings)
    try:
        with store.engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        store.dispose()
    with pytest.raises(ChainBroken) as err:
        _verify(ledger_env)
    facts = err.value.facts
    assert (facts["reason"], facts["kind"]) == ("projection", kind)
    if record is not None:
        assert facts["record"] == record
