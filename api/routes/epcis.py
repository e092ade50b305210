"""A lot's history as a GS1 EPCIS 2.0 document (JSON-LD), for members (PROTOCOL §6 reads).

The mapping is ``ledger.epcis``; which entries make the history is ``ledger.storage.history``;
who may see which entry is ``ledger.visibility`` (written at sealing as ``entry_parties``).
"""

from __future__ import annotations

import json

from flask import Blueprint, Response

from ledger.encoding import check_lot_id
from ledger.entries import envelope_from_leaf
from ledger.epcis import HistoryEntry, lot_document
from ledger.errors import LotNotFound, NotInitialised
from ledger.storage.history import lot_history

from ..auth import current_member, member_required
from ..openapi import operation
from ..services import services

bp = Blueprint("epcis", __name__)

LD_JSON = "application/ld+json"

_DOCUMENT_SCHEMA = {
    "type": "object",
    "description": "An EPCISDocument (GS1 EPCIS 2.0 JSON-LD) valid against GS1's EPCIS JSON "
    "Schema (https://ref.gs1.org/standards/epcis/2.0.0/epcis-json-schema.json); see "
    "docs/epcis.md for how entries map to events.",
    "required": ["@context", "type", "schemaVersion", "creationDate", "epcisBody"],
}


# merge_slashes=False: a lot id may be a GS1 Digital Link, whose "https://" must reach the view
# as it is rather than be redirected to a path with one slash.
@bp.get("/v1/lots/<path:lot>/epcis", merge_slashes=False)
@operation(
    summary="A lot's history as an EPCIS 2.0 document",
    tag="lots",
    responses={200: (LD_JSON, _DOCUMENT_SCHEMA)},
    errors=(400, 404, 413),
    member=True,
)
@member_required
def lot_epcis(lot: str) -> Response:
    """The lot's history (how it and its inputs were made, moved and received, back to their
    origins) as an EPCISDocument, ``application/ld+json``. Each event carries its entry's id,
    leaf hash and log index (``filiera:entry``), to fetch and check its proof. Auditors and
    admins see every entry; other members see the events of the entries they are party to, and
    a 404 when there are none, whether or not the lot exists."""
    check_lot_id(lot, field="lot")
    svc = services()
    member = current_member()
    with svc.store.read() as conn:
        policy = svc.store.policy(conn)
        if policy is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        rows = lot_history(conn, lot, visible_to=None if member.sees_all else member.id)
    if not rows:
        raise LotNotFound(f"no lot {lot} whose history you may see in this ledger", lot=lot)
    history = [
        HistoryEntry(envelope_from_leaf(r.entry.leaf_data.encode("utf-8"), origin=policy.origin), r.entry.idx, r.block_time)
        for r in rows
    ]
    doc = lot_document(policy.origin, lot, history, created=svc.sealer.clock.now())
    return Response(json.dumps(doc, ensure_ascii=False), mimetype=LD_JSON)
