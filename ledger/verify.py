"""Chain verification: re-check everything a ledger claims, from its blocks and leaves alone.

Used by ``filiera verify`` (over the local database or a server's API) and, in time, by the
offline audit. It trusts nothing stored: for every block it checks the height, the ``prev``
link, the header hash, the ledger's signature, the checkpoint, and the Merkle root recomputed
from the leaves; for every entry its leaf hash, its id, and its signatures and authorisation
replayed with the same rule code that sealed it. The first failure is raised as ChainBroken
naming the block, the entry and the reason.

Importing this module loads neither Flask nor SQLAlchemy (a test checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import jcs
from .blocks import GENESIS_PREV, BlockHeader, verify_block_signature
from .encoding import parse_time, unb64
from .entries import envelope_from_leaf
from .errors import ChainBroken, IntegrityFailure, LedgerError
from .merkle import Frontier, NodeId
from .notes import verifier_for, verify_checkpoint
from .rules import Position, apply_entry
from .state import LedgerState

__all__ = ["StoredLeaf", "StoredBlock", "VerifyReport", "verify_chain"]


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    """An entry as a store or an export presents it (none of it trusted)."""

    index: int
    id: str
    leaf_hash: str
    leaf_data: bytes


@dataclass(frozen=True, slots=True)
class StoredBlock:
    header: dict[str, object]
    hash: str
    signature: str
    checkpoint: str | None
    leaves: Sequence[StoredLeaf]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    origin: str
    height: int
    tree_size: int
    root: str
    blocks: int
    entries: int


def _broken(reason: str, detail: str, *, height: int, index: int | None = None, entry: str | None = None) -> ChainBroken:
    where = f"block {height}" + (f", entry {index}" if index is not None else "")
    return ChainBroken(f"{where}: {detail}", height=height, index=index, entry=entry, reason=reason)


def verify_chain(
    blocks: Iterable[StoredBlock],
    *,
    ledger_key: bytes | None = None,
    node_check: Callable[[Sequence[tuple[NodeId, bytes]]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify a whole chain from block 0. ``ledger_key``: the key the caller trusts (else the
    one genesis names). ``node_check`` receives every recomputed Merkle node, to compare with
    stored ones. Raises ChainBroken at the first failure.
    """
    state = LedgerState()
    frontier = Frontier(0, [])
    prev_hash = GENESIS_PREV
    prev_time = None
    origin = ""
    key = ledger_key
    expected_height = 0
    entries = 0
    for block in blocks:
        h = expected_height
        try:
            header = BlockHeader.from_json(block.header)
        except LedgerError as exc:
            raise _broken("header", f"malformed header ({exc.detail})", height=h) from exc
        if header.height != h:
            raise _broken("height", f"height {header.height} where {h} was expected", height=h)
        if header.prev != prev_hash:
            raise _broken("prev", "prev does not link to the previous block's hash", height=h)
        if header.first_index != frontier.size:
            raise _broken("first_index", f"first_index {header.first_index}, expected {frontier.size}", height=h)
        if header.tree_size - header.first_index != len(block.leaves):
            raise _broken("entries", f"header covers {header.tree_size - header.first_index} entries, block has {len(block.leaves)}", height=h)
        if header.hash() != block.hash:
            raise _broken("block_hash", "stored block hash is not the hash of its header", height=h)
        block_time = parse_time(header.time, field="time")
        if prev_time is not None and block_time < prev_time:
            raise _broken("time", "block time goes backwards", height=h)
        for i, leaf in enumerate(block.leaves):
            index = header.first_index + i
            if leaf.index != index:
                raise _broken("index", f"entry at position {leaf.index}, expected {index}", height=h, index=index, entry=leaf.id)
            try:
                env = envelope_from_leaf(leaf.leaf_data, origin=origin or None)
            except LedgerError as exc:
                raise _broken("leaf_data", f"leaf data is not a valid entry ({exc.code}: {exc.detail})", height=h, index=index, entry=leaf.id) from exc
            if env.leaf_data != leaf.leaf_data:
                raise _broken("leaf_data", "leaf data is not canonical JSON", height=h, index=index, entry=leaf.id)
            if env.id != leaf.id:
                raise _broken("entry_id", f"stored id is not the hash of the payload ({env.id})", height=h, index=index, entry=leaf.id)
            if env.leaf_hash.hex() != leaf.leaf_hash:
                raise _broken("leaf_hash", "stored leaf hash is not the hash of the leaf data", height=h, index=index, entry=leaf.id)
            try:
                apply_entry(state, env, Position(index, h, block_time))
            except LedgerError as exc:
                raise _broken("rule", f"entry breaks a rule: {exc.code}: {exc.detail}", height=h, index=index, entry=leaf.id) from exc
            if index == 0:
                policy = state.get_policy()
                assert policy is not None
                origin = policy.origin
                if key is not None and key != policy.ledger_key:
                    raise _broken("ledger_key", "genesis names a different ledger key than the one trusted", height=h, index=0, entry=leaf.id)
                key = policy.ledger_key
            nodes = frontier.append(env.leaf_hash)
            if node_check is not None:
                node_check(nodes)
            entries += 1
        if header.ledger != origin:
            raise _broken("origin", f"block names ledger {header.ledger!r}, genesis {origin!r}", height=h)
        if frontier.root().hex() != header.root:
            raise _broken("root", "Merkle root does not match the entries", height=h)
        assert key is not None
        verify_block_signature(header, block.signature, key)
        if block.checkpoint is not None:
            try:
                cp = verify_checkpoint(block.checkpoint, verifier=verifier_for(origin, key), origin=origin)
            except (IntegrityFailure, LedgerError) as exc:
                raise _broken("checkpoint", f"checkpoint does not verify ({exc.code})", height=h) from exc
            if cp.tree_size != header.tree_size or cp.root.hex() != header.root:
                raise _broken("checkpoint", "checkpoint does not match the block", height=h)
        prev_hash, prev_time = block.hash, block_time
        expected_height += 1
        if progress is not None:
            progress(entries)
    if expected_height == 0:
        raise ChainBroken("the ledger has no blocks", height=0, reason="empty")
    return VerifyReport(
        origin=origin,
        height=expected_height - 1,
        tree_size=frontier.size,
        root=frontier.root().hex(),
        blocks=expected_height,
        entries=entries,
    )


