"""Blocks: headers, signatures, checkpoints and the ids of their entries (PROTOCOL §5)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ledger.errors import BlockNotFound, InvalidPage
from ledger.storage.store import BlockRow

from ..auth import member_required
from ..openapi import operation
from ..schemas.common import MAX_INT
from ..schemas.ledger import BlockListSchema, BlockSchema, BlocksQuerySchema
from ..services import load_query, services

bp = Blueprint("blocks", __name__)


def _block_json(block: BlockRow, origin: str, entries: list[str]) -> dict[str, Any]:
    return {
        "header": block.header_json(origin),
        "hash": block.hash,
        "signature": block.signature,
        "checkpoint": block.checkpoint,
        "entries": entries,
    }


@bp.get("/v1/blocks/<int(signed=True):height>")
@operation(summary="One block", tag="blocks", responses={200: BlockSchema}, path={"height": "integer"}, errors=(404,), member=True)
@member_required
def get_block(height: int) -> Response:
    """The block's header, hash, ledger signature, checkpoint and entry ids in log order."""
    svc = services()
    with svc.store.read() as conn:
        # Heights outside the column's range cannot name a block; asking the database
        # would overflow its integer type.
        block = svc.store.block(conn, height) if 0 <= height <= MAX_INT else None
        if block is None:
            raise BlockNotFound(f"no block at height {height}", height=height)
        policy = svc.store.policy(conn)
        assert policy is not None
        return jsonify(_block_json(block, policy.origin, svc.store.block_entry_ids(conn, block)))


@bp.get("/v1/blocks")
@operation(summary="A page of blocks", tag="blocks", query=BlocksQuerySchema, responses={200: BlockListSchema}, member=True)
@member_required
def list_blocks() -> Response:
    """Blocks from height ``from`` (default 0), at most ``limit`` (default 100)."""
    svc = services()
    args = load_query(BlocksQuerySchema)
    if args["limit"] > svc.settings.page_max:
        raise InvalidPage(
            f"limit must be at most {svc.settings.page_max}", limit=svc.settings.page_max
        )
    with svc.store.read() as conn:
        policy = svc.store.policy(conn)
        blocks = svc.store.blocks(conn, start=args["from_"], limit=args["limit"])
        origin = policy.origin if policy else ""
        return jsonify(
            blocks=[_block_json(b, origin, svc.store.block_entry_ids(conn, b)) for b in blocks]
        )
