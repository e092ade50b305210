"""Inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4), public by design.

A proof needs a handful of stored Merkle nodes; one missing or unreadable (a damaged database)
is a 503 ``storage_damaged`` for the client and one error line naming the node for the
operator, never an unexpected exception."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import Connection

from ledger.errors import (
    CheckpointNotWitnessed,
    EntryNotFound,
    InvalidProofRequest,
    LedgerError,
    NotInitialised,
    StorageDamaged,
)
from ledger.merkle import HASH_SIZE, Frontier, NodeId, build_proof, consistency_plan, fold, inclusion_plan, plan_nodes
from ledger.notes import Checkpoint, TlogProof, split_note
from ledger.storage.store import EntryRow, Store
from ledger.witnessing import published_checkpoint

from ..openapi import TEXT, operation
from ..schemas.proofs import (
    ConsistencyProofSchema,
    ConsistencyQuerySchema,
    InclusionProofSchema,
    InclusionQuerySchema,
    TlogProofQuerySchema,
)
from ..services import load_query, services

bp = Blueprint("proofs", __name__)
log = logging.getLogger("filiera.api")

# How many damaged nodes one log line names; the count says if there are more.
_NAMED_NODES = 8


def _stored_nodes(store: Store, conn: Connection, ids: Iterable[NodeId], *, kind: str) -> dict[NodeId, bytes]:
    """The hashes of the Merkle nodes a proof is built from, every one of them.

    A node that is missing, or whose stored hash is not 32 bytes (Store.nodes leaves out a
    NULL or non-binary one), means the database was damaged: nothing the client sent can
    cause it. Raises StorageDamaged (503 ``storage_damaged``), which tells the client only that,
    after logging once, as an error, which nodes are damaged, for the operator.
    """
    wanted = set(ids)
    nodes = store.nodes(conn, wanted)
    damaged = sorted(n for n in wanted if len(nodes.get(n, b"")) != HASH_SIZE)
    if damaged:
        named = ", ".join(f"(level {lv}, index {ix})" for lv, ix in damaged[:_NAMED_NODES])
        more = f" and {len(damaged) - _NAMED_NODES} more" if len(damaged) > _NAMED_NODES else ""
        log.error(
            "storage damaged: the %s proof needs Merkle node %s%s, which is missing from merkle_nodes or "
            "not a %d-byte hash; run `filiera verify` on the ledger's database and restore it from a backup",
            kind, named, more, HASH_SIZE,
        )
        raise StorageDamaged(
            "the server's stored ledger is damaged: a Merkle node this proof needs is missing or "
            "unreadable. Nothing is wrong with the request and retrying will not help; the "
            "operator should run `filiera verify` on the ledger's database"
        )
    return nodes


def _require_id_or_index(args: Mapping[str, Any]) -> None:
    """Raises InvalidProofRequest unless the query names the entry by exactly one of them."""
    if ("id" in args) == ("index" in args):
        raise InvalidProofRequest("give exactly one of id and index")


def _entry(
    store: Store,
    conn: Connection,
    args: Mapping[str, Any],
    *,
    no_index: Callable[[int], LedgerError],
) -> EntryRow:
    """The sealed entry the query names by ``id`` or ``index``.

    Raises EntryNotFound for an unknown id, and ``no_index(index)`` for an index with no
    entry: the inclusion route calls that a bad request (past the tree), the tlog route a
    missing entry.
    """
    if "id" in args:
        entry = store.entry_by_id(conn, args["id"])
        if entry is None:
            raise EntryNotFound(f"no sealed entry {args['id']}", entry=args["id"])
        return entry
    entry = store.entry_by_index(conn, args["index"])
    if entry is None:
        raise no_index(args["index"])
    return entry


@bp.get("/v1/proofs/inclusion")
@operation(
    summary="Inclusion proof of an entry",
    tag="proofs",
    query=InclusionQuerySchema,
    responses={200: InclusionProofSchema},
    errors=(400, 404),
)
def inclusion() -> Response:
    """By ``id`` or ``index``, in the tree of ``tree_size`` (default: the current size).
    ``root`` is the tree hash at that size, for convenience: trust a signed checkpoint's."""
    args = load_query(InclusionQuerySchema, InvalidProofRequest)
    _require_id_or_index(args)
    svc = services()
    with svc.store.read_committed() as conn:
        head = svc.store.head(conn)
        if head is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        size = args.get("tree_size", head.tree_size)
        if size > head.tree_size:
            raise InvalidProofRequest(
                f"tree_size {size} is beyond the current tree size {head.tree_size}",
                tree_size=head.tree_size,
            )
        entry = _entry(
            svc.store,
            conn,
            args,
            no_index=lambda index: InvalidProofRequest(
                f"index {index} is beyond the current tree size {head.tree_size}",
                tree_size=head.tree_size,
            ),
        )
        if entry.idx >= size:
            raise InvalidProofRequest(
                f"entry {entry.idx} is not in the tree of size {size}", index=entry.idx
            )
        plan = inclusion_plan(index=entry.idx, tree_size=size)
        roots = Frontier.needed(size)
        nodes = _stored_nodes(svc.store, conn, plan_nodes(plan) | set(roots), kind="inclusion")
    return jsonify(
        index=entry.idx,
        tree_size=size,
        leaf_hash=entry.leaf_hash,
        hashes=[h.hex() for h in build_proof(plan, nodes)],
        root=fold([nodes[n] for n in roots]).hex(),
    )


@bp.get("/v1/proofs/consistency")
@operation(
    summary="Consistency proof between two tree sizes",
    tag="proofs",
    query=ConsistencyQuerySchema,
    responses={200: ConsistencyProofSchema},
)
def consistency() -> Response:
    """Proof that the tree of size ``from`` is a prefix of the tree of size ``to``
    (default: the current size). Requires 1 <= from <= to <= current size."""
    args = load_query(ConsistencyQuerySchema, InvalidProofRequest)
    svc = services()
    with svc.store.read_committed() as conn:
        head = svc.store.head(conn)
        if head is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        old, new = args["from_"], args.get("to", head.tree_size)
        if not old <= new <= head.tree_size:
            raise InvalidProofRequest(
                f"need 1 <= from <= to <= {head.tree_size} (current tree size)",
                tree_size=head.tree_size,
            )
        plan = consistency_plan(old_size=old, new_size=new)
        old_roots, new_roots = Frontier.needed(old), Frontier.needed(new)
        nodes = _stored_nodes(svc.store, conn, plan_nodes(plan) | set(old_roots) | set(new_roots), kind="consistency")
    return jsonify(
        {
            "from": old,
            "to": new,
            "hashes": [h.hex() for h in build_proof(plan, nodes)],
            "from_root": fold([nodes[n] for n in old_roots]).hex(),
            "to_root": fold([nodes[n] for n in new_roots]).hex(),
        }
    )


@bp.get("/v1/proofs/tlog")
@operation(
    summary="C2SP tlog-proof of an entry against the published (witnessed) checkpoint",
    tag="proofs",
    query=TlogProofQuerySchema,
    responses={200: TEXT},
    errors=(400, 404),
)
def tlog_proof() -> Response:
    """**Extension.** By ``id`` or ``index``: a ``c2sp.org/tlog-proof@v1`` against the checkpoint
    ``GET /v1/checkpoint`` serves now, with its witness cosignatures, ``text/plain``. A receipt's
    proof is against the entry's own block, which witnesses may never see when blocks follow
    each other quickly; this one is against a checkpoint they did cosign. 503
    ``checkpoint_not_witnessed`` while the entry is newer than that checkpoint."""
    args = load_query(TlogProofQuerySchema, InvalidProofRequest)
    _require_id_or_index(args)
    svc = services()
    note = published_checkpoint(svc.store, svc.witness_policy)
    size = Checkpoint.parse_body(split_note(note)[0]).tree_size
    with svc.store.read() as conn:
        entry = _entry(
            svc.store,
            conn,
            args,
            no_index=lambda index: EntryNotFound(f"no sealed entry at index {index}", index=index),
        )
        if entry.idx >= size:
            raise CheckpointNotWitnessed(
                f"entry {entry.idx} is newer than the published checkpoint (size {size}); "
                "retry once the witnesses have cosigned a newer one",
                index=entry.idx,
                tree_size=size,
            )
        plan = inclusion_plan(index=entry.idx, tree_size=size)
        nodes = _stored_nodes(svc.store, conn, plan_nodes(plan), kind="tlog")
    proof = TlogProof(index=entry.idx, hashes=tuple(build_proof(plan, nodes)), checkpoint=note)
    resp = Response(proof.format(), mimetype="text/plain")
    resp.headers["Cache-Control"] = "no-cache"
    return resp
