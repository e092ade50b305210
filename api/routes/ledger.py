"""Ledger identity and the latest checkpoint (PROTOCOL §6); health is in health.py."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ledger.errors import NotInitialised
from ledger.notes import verifier_for
from ledger.witnessing import published_checkpoint

from ..openapi import TEXT, operation
from ..schemas.ledger import LedgerInfoSchema
from ..services import services

bp = Blueprint("ledger", __name__)


@bp.get("/v1/ledger")
@operation(summary="Ledger identity and head", tag="ledger", responses={200: LedgerInfoSchema}, errors=())
def ledger_info() -> Response:
    """The origin, the ledger's public and note verifier keys, the genesis hash and the head."""
    svc = services()
    with svc.store.read() as conn:
        policy = svc.store.policy(conn)
        head = svc.store.head(conn)
        genesis = svc.store.block(conn, 0)
    if policy is None or head is None or genesis is None:
        raise NotInitialised("the ledger has no genesis block; run `filiera init`")
    from ledger.keys import PublicKey

    pk = PublicKey(policy.ledger_key)
    return jsonify(
        origin=policy.origin,
        public_key=pk.b64,
        key_id=pk.key_id,
        verifier_key=verifier_for(policy.origin, policy.ledger_key).vkey,
        genesis=genesis.hash,
        height=head.height,
        tree_size=head.tree_size,
        root=head.root,
    )


@bp.get("/v1/checkpoint")
@operation(summary="Latest signed checkpoint (C2SP tlog-checkpoint)", tag="ledger", responses={200: TEXT}, errors=())
def checkpoint() -> Response:
    """The latest block's checkpoint as a C2SP signed note, ``text/plain; charset=utf-8``,
    with the witness cosignatures it has (C2SP tlog-cosignature). When the witness policy
    (FILIERA_WITNESS_POLICY) sets a quorum: the newest checkpoint that has met it, or 503
    ``checkpoint_not_witnessed`` before the first one has."""
    svc = services()
    note = published_checkpoint(svc.store, svc.witness_policy)
    resp = Response(note, mimetype="text/plain")
    resp.headers["Cache-Control"] = "no-cache"
    return resp
