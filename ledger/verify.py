"""Chain verification: re-check everything a ledger claims, from its blocks and leaves alone.

Used by ``filiera verify`` (over the local database or a server's API) and, in time, by the
offline audit. It trusts nothing stored: for every block it checks the height, the ``prev``
link, the header hash, the ledger's signature, the checkpoint, and the Merkle root recomputed
from the leaves; for every entry its position, its id, its signatures and authorisation
replayed with the same rule code that sealed it, and its leaf hash. The first failure is
raised as ChainBroken naming the block, the entry and the reason.

A chain alone cannot show that it was not cut short and re-signed by whoever holds the ledger
key: a *trusted checkpoint* saved earlier (RFC 9162 §8.1.2, a client's view of the log) must
be met by the chain at its tree size with the same root, and the chain must reach that size.

Importing this module loads neither Flask nor SQLAlchemy (a test checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .blocks import GENESIS_PREV, BlockHeader, verify_block_signature
from .encoding import parse_time
from .entries import envelope_from_leaf
from .errors import ChainBroken, LedgerError, SignatureRejected
from .merkle import Frontier, NodeId
from .notes import Checkpoint, verifier_for, verify_checkpoint
from .rules import Position, apply_entry, verify_signatures
from .state import KeyRecord, LedgerState, ParticipantRecord

__all__ = [
    "StoredLeaf",
    "StoredBlock",
    "VerifyReport",
    "NodeCheck",
    "StateCheck",
    "REASONS",
    "verify_chain",
]

# Every ``reason`` a ChainBroken from this module (or a source feeding it) can carry.
REASONS = frozenset(
    {
        "empty",  # no block at all
        "header",  # a header that does not parse
        "height", "missing_block",  # block heights not 0, 1, 2, ...
        "prev", "first_index", "entries", "block_hash", "time", "origin", "root",
        "block_signature", "checkpoint",
        "missing_entry", "index",  # entries not at 0, 1, 2, ... within their block
        "leaf_data", "payload", "entry_id", "signature", "rule", "leaf_hash",
        "ledger_key", "merkle_node",
        "unsealed_entry",  # an entry stored beyond the last block (source check)
        "projection",  # derived state tables disagree with the replayed log (source check)
        "storage",  # the database cannot read its own rows (a damaged file; CLI)
        "trusted_checkpoint", "fork", "truncated",  # against a checkpoint saved earlier
    }
)

NodeCheck = Callable[[Sequence[tuple[NodeId, bytes]]], None]
"""Receives the Merkle nodes one leaf completes; raises ChainBroken if a stored one differs."""

StateCheck = Callable[[LedgerState], None]
"""Receives every participant and key as the replayed log leaves them; raises ChainBroken."""


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
    # The last block's signed checkpoint (verified), to save as the next trusted checkpoint.
    checkpoint: str | None = None
    # Size of the trusted checkpoint the chain was checked against, if any.
    trusted_size: int | None = None


def _broken(
    reason: str,
    detail: str,
    *,
    height: int,
    index: int | None = None,
    entry: str | None = None,
    **facts: Any,
) -> ChainBroken:
    where = f"block {height}" + (f", entry {index}" if index is not None else "")
    return ChainBroken(f"{where}: {detail}", height=height, index=index, entry=entry, reason=reason, **facts)


def _trusted(note: str, *, origin: str, key: bytes) -> Checkpoint:
    try:
        return verify_checkpoint(note, verifier=verifier_for(origin, key), origin=origin)
    except LedgerError as exc:
        raise _broken(
            "trusted_checkpoint",
            f"the trusted checkpoint is not a checkpoint of this ledger signed by its key "
            f"({exc.code}); it belongs to another ledger, or genesis was replaced",
            height=0,
            cause=exc.code,
        ) from exc


def verify_chain(
    blocks: Iterable[StoredBlock],
    *,
    ledger_key: bytes | None = None,
    node_check: NodeCheck | None = None,
    progress: Callable[[int], None] | None = None,
    trusted_checkpoint: str | None = None,
    state_check: StateCheck | None = None,
) -> VerifyReport:
    """Verify a whole chain from block 0.

    ``ledger_key``: the key the caller trusts (else the one genesis names). ``node_check``
    receives every recomputed Merkle node, to compare with stored ones. ``trusted_checkpoint``:
    a signed checkpoint note saved earlier; the chain must reach its size with its root.
    ``state_check`` receives the replayed participants and keys at the end, to compare with a
    store's derived tables. ``progress`` receives the count of entries checked after each block.
    Raises ChainBroken (facts: reason, height, index, entry) at the first failure.
    """
    state = LedgerState()
    frontier = Frontier(0, [])
    prev_hash = GENESIS_PREV
    prev_time = None
    origin = ""
    key = ledger_key
    expected_height = 0
    entries = 0
    checkpoint: str | None = None
    trusted: Checkpoint | None = None
    for block in blocks:
        h = expected_height
        try:
            header = BlockHeader.from_json(block.header)
        except LedgerError as exc:
            raise _broken("header", f"malformed header ({exc.detail})", height=h, cause=exc.code) from exc
        if header.height > h:
            raise _broken("missing_block", f"the next block stored is {header.height}, block {h} is missing", height=h)
        if header.height != h:
            raise _broken("height", f"height {header.height} where {h} was expected", height=h)
        if header.prev != prev_hash:
            raise _broken("prev", "prev does not link to the previous block's hash", height=h)
        if header.first_index != frontier.size:
            raise _broken("first_index", f"first_index {header.first_index}, expected {frontier.size}", height=h)
        wanted = range(header.first_index, header.tree_size)
        if len(block.leaves) != len(wanted):
            present = {leaf.index for leaf in block.leaves}
            missing = next((i for i in wanted if i not in present), None)
            if missing is not None:
                raise _broken(
                    "missing_entry",
                    f"entry {missing} is missing: the header covers {len(wanted)} entries, "
                    f"the block has {len(block.leaves)}",
                    height=h,
                    index=missing,
                )
            raise _broken("entries", f"header covers {len(wanted)} entries, block has {len(block.leaves)}", height=h)
        if header.hash() != block.hash:
            raise _broken("block_hash", "stored block hash is not the hash of its header", height=h)
        try:
            block_time = parse_time(header.time, field="time")
        except LedgerError as exc:
            raise _broken("header", f"malformed block time ({exc.detail})", height=h, cause=exc.code) from exc
        if prev_time is not None and block_time < prev_time:
            raise _broken("time", "block time goes backwards", height=h)
        for i, leaf in enumerate(block.leaves):
            index = header.first_index + i
            if leaf.index != index:
                raise _broken("index", f"entry at position {leaf.index}, expected {index}", height=h, index=index, entry=leaf.id)
            try:
                env = envelope_from_leaf(leaf.leaf_data, origin=origin or None)
            except LedgerError as exc:
                raise _broken("leaf_data", f"leaf data is not a valid entry ({exc.code}: {exc.detail})", cause=exc.code, height=h, index=index, entry=leaf.id) from exc
            if env.leaf_data != leaf.leaf_data:
                raise _broken("leaf_data", "leaf data is not canonical JSON", height=h, index=index, entry=leaf.id)
            if env.id != leaf.id:
                # The signatures tell which side changed: they cover the original payload.
                try:
                    verify_signatures(state, env)
                except LedgerError as exc:
                    raise _broken(
                        "payload",
                        f"the payload was altered: it no longer hashes to its id, and its "
                        f"signatures do not verify ({exc.code})",
                        cause=exc.code,
                        height=h, index=index, entry=leaf.id,
                    ) from exc
                raise _broken("entry_id", f"stored id is not the hash of the payload ({env.id})", height=h, index=index, entry=leaf.id)
            try:
                apply_entry(state, env, Position(index, h, block_time))
            except SignatureRejected as exc:
                raise _broken("signature", f"a signature does not verify: {exc.code}: {exc.detail}", cause=exc.code, height=h, index=index, entry=leaf.id) from exc
            except LedgerError as exc:
                raise _broken("rule", f"entry breaks a rule: {exc.code}: {exc.detail}", cause=exc.code, height=h, index=index, entry=leaf.id) from exc
            if env.leaf_hash.hex() != leaf.leaf_hash:
                raise _broken("leaf_hash", "stored leaf hash is not the hash of the leaf data", height=h, index=index, entry=leaf.id)
            if index == 0:
                policy = state.get_policy()
                assert policy is not None
                origin = policy.origin
                if key is not None and key != policy.ledger_key:
                    raise _broken("ledger_key", "genesis names a different ledger key than the one trusted", height=h, index=index, entry=leaf.id)
                key = policy.ledger_key
                if trusted_checkpoint is not None:
                    trusted = _trusted(trusted_checkpoint, origin=origin, key=key)
            nodes = frontier.append(env.leaf_hash)
            if node_check is not None:
                try:
                    node_check(nodes)
                except ChainBroken as exc:
                    facts = {k: v for k, v in exc.facts.items() if k not in ("height", "index", "entry", "reason")}
                    raise _broken(str(exc.facts.get("reason", "merkle_node")), exc.detail, height=h, index=index, entry=leaf.id, **facts) from exc
            entries += 1
            if trusted is not None and frontier.size == trusted.tree_size and frontier.root() != trusted.root:
                raise _broken(
                    "fork",
                    f"at tree size {trusted.tree_size} the log's root differs from the trusted "
                    "checkpoint's: entries up to here were rewritten",
                    height=h,
                    tree_size=trusted.tree_size,
                )
        if header.ledger != origin:
            raise _broken("origin", f"block names ledger {header.ledger!r}, genesis {origin!r}", height=h)
        if frontier.root().hex() != header.root:
            raise _broken("root", "Merkle root does not match the entries", height=h)
        assert key is not None
        verify_block_signature(header, block.signature, key)
        if block.checkpoint is not None:
            try:
                cp = verify_checkpoint(block.checkpoint, verifier=verifier_for(origin, key), origin=origin)
            except LedgerError as exc:
                raise _broken("checkpoint", f"checkpoint does not verify ({exc.code})", height=h, cause=exc.code) from exc
            if cp.tree_size != header.tree_size or cp.root.hex() != header.root:
                raise _broken("checkpoint", "checkpoint does not match the block", height=h)
        checkpoint = block.checkpoint
        prev_hash, prev_time = block.hash, block_time
        expected_height += 1
        if progress is not None:
            progress(entries)
    if expected_height == 0:
        raise ChainBroken("the ledger has no blocks", height=0, reason="empty")
    if trusted is not None and trusted.tree_size > frontier.size:
        raise _broken(
            "truncated",
            f"the log ends at tree size {frontier.size} but a trusted checkpoint showed "
            f"{trusted.tree_size}: blocks from {expected_height} on were removed",
            height=expected_height,
            tree_size=frontier.size,
            checkpoint_size=trusted.tree_size,
        )
    if state_check is not None:
        state_check(state)
    return VerifyReport(
        origin=origin,
        height=expected_height - 1,
        tree_size=frontier.size,
        root=frontier.root().hex(),
        blocks=expected_height,
        entries=entries,
        checkpoint=checkpoint,
        trusted_size=trusted.tree_size if trusted is not None else None,
    )
