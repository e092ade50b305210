"""Where `filiera verify` reads a chain from: the local database, or a server's API."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ledger.config import Settings
from ledger.errors import ChainBroken, Unavailable
from ledger.merkle import NodeId
from ledger.storage.store import Store
from ledger.verify import StoredBlock, StoredLeaf

__all__ = ["db_blocks", "http_blocks"]

Source = tuple[Iterator[StoredBlock], int, Callable[[Sequence[tuple[NodeId, bytes]]], None] | None]
PAGE = 200


def db_blocks(settings: Settings) -> Source:
    """Every block of the local database with its leaves, and a check of stored Merkle nodes."""
    store = Store.open(settings)
    with store.read() as conn:
        head = store.head(conn)
        policy = store.policy(conn)
    total = head.tree_size if head else 0
    origin = policy.origin if policy else ""

    def blocks() -> Iterator[StoredBlock]:
        height = 0
        while True:
            with store.read() as conn:
                page = store.blocks(conn, start=height, limit=PAGE)
                if not page:
                    return
                for b in page:
                    rows = store.entries_range(conn, b.first_index, b.tree_size)
                    yield StoredBlock(
                        header=b.header_json(origin),
                        hash=b.hash,
                        signature=b.signature,
                        checkpoint=b.checkpoint,
                        leaves=[StoredLeaf(r.idx, r.id, r.leaf_hash, r.leaf_data.encode("utf-8")) for r in rows],
                    )
            height = page[-1].height + 1

    def node_check(nodes: Sequence[tuple[NodeId, bytes]]) -> None:
        with store.read() as conn:
            stored = store.nodes(conn, [n for n, _ in nodes])
        for node, h in nodes:
            if stored.get(node) != h:
                raise ChainBroken(
                    f"stored Merkle node {node} differs from the one recomputed from the leaves",
                    reason="merkle_node",
                    height=None,
                    node=list(node),
                )

    # The header's origin is re-checked against genesis by verify_chain.
    return blocks(), total, node_check


def http_blocks(url: str, http_json: Callable[..., tuple[int, Any]]) -> Source:
    """Every block of a server's ledger, fetched page by page (entries one by one)."""
    base = url.rstrip("/")
    status, info = http_json("GET", base + "/v1/ledger")
    if status != 200 or not isinstance(info, dict):
        raise Unavailable(f"{base}/v1/ledger answered {status}")
    total = int(info["tree_size"])

    def blocks() -> Iterator[StoredBlock]:
        height = 0
        while True:
            status, page = http_json("GET", f"{base}/v1/blocks?from={height}&limit={PAGE}")
            if status != 200:
                raise Unavailable(f"{base}/v1/blocks answered {status}")
            if not page["blocks"]:
                return
            for b in page["blocks"]:
                leaves = []
                for i, entry_id in enumerate(b["entries"]):
                    st, e = http_json("GET", f"{base}/v1/entries/{entry_id}")
                    if st != 200:
                        raise ChainBroken(f"block {b['header']['height']} lists entry {entry_id} the server cannot show", height=b["header"]["height"], reason="missing_entry")
                    from ledger import jcs

                    leaf = jcs.canonicalize({"payload": e["payload"], "signatures": e["signatures"]})
                    leaves.append(StoredLeaf(e["index"], e["id"], e["leaf_hash"], leaf))
                yield StoredBlock(header=b["header"], hash=b["hash"], signature=b["signature"], checkpoint=b.get("checkpoint"), leaves=leaves)
            height = page["blocks"][-1]["header"]["height"] + 1

    return blocks(), total, None


