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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .blocks import GENESIS_PREV, BlockHeader, verify_block_signature
from .encoding import parse_time
from .entries import envelope_from_leaf
from .errors import ChainBroken, LedgerError, SignatureRejected
from datetime import datetime

from .merkle import Frontier, NodeId
from .notes import Checkpoint, verifier_for, verify_checkpoint
from .entries import Envelope
from .rules import Position, apply_entry, signature_keys, verify_signatures
from .state import KeyRecord, LedgerState, ParticipantRecord

__all__ = [
    "ChainCursor",
    "StoredLeaf",
    "StoredBlock",
    "VerifyReport",
    "NodeCheck",
    "StateCheck",
    "BlockHook",
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
        "entry_columns",  # a store's copy of an entry's height, type, author or nonce is wrong
        "ledger_key", "merkle_node",
        "unsealed_entry",  # an entry stored beyond the last block (source check)
        "projection",  # derived state tables disagree with the replayed log (source check)
        "facts",  # the facts projection disagrees with the facts derived from the log
        "storage",  # the database cannot read its own rows (a damaged file; CLI)
        "trusted_checkpoint", "fork", "truncated",  # against a checkpoint saved earlier
    }
)

NodeCheck = Callable[[Sequence[tuple[NodeId, bytes]]], None]
"""Receives the Merkle nodes one leaf completes; raises ChainBroken if a stored one differs."""

StateCheck = Callable[[LedgerState], None]
"""Receives every participant and key as the replayed log leaves them; raises ChainBroken."""

BlockHook = Callable[[int, int, Sequence[tuple[int, Envelope]], LedgerState], None]
"""Receives each verified block's height, tree size, (index, envelope) pairs and the state
after it (the facts projection is derived from these); may raise ChainBroken."""


@dataclass(slots=True)
class ChainCursor:
    """Where a verification stands after a block: enough to carry on from there later.

    A fresh cursor starts at block 0. The audit saves one after a clean run (a *state
    snapshot*) and resumes from it to check only what a later bundle adds.
    """

    state: LedgerState
    frontier: Frontier
    prev_hash: str = GENESIS_PREV
    prev_time: datetime | None = None
    origin: str = ""
    key: bytes | None = None
    height: int = 0  # the next block's height
    entries: int = 0  # entries checked, counting those of earlier runs

    @classmethod
    def start(cls) -> ChainCursor:
        return cls(state=LedgerState(), frontier=Frontier(0, []))


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    """An entry as a store or an export presents it (none of it trusted)."""

    index: int
    id: str
    leaf_hash: str
    leaf_data: bytes
    # Work done ahead elsewhere (the audit's worker processes), used only if ``parsed[0]``
    # is the origin the chain has by then: (origin used, the envelope or the error parsing
    # raised), and the (key id, public key) pairs whose signatures on it verified.
    parsed: tuple[str | None, Envelope | LedgerError] | None = None
    verified: frozenset[tuple[str, bytes]] | None = None
    # What a store keeps beside the leaf, if anything (``height``, ``type``, ``author``,
    # ``nonce``): the API serves and intake looks up these copies, so they must agree with it.
    columns: Mapping[str, object] | None = None


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
    # Where the chain ended, to save as a state snapshot and resume from.
    cursor: ChainCursor | None = field(default=None, compare=False)
    # Entries whose signatures were checked cryptographically in this run.
    signatures_checked: int = 0


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


def _missing(index: int, wanted: range, block: StoredBlock, *, height: int) -> ChainBroken:
    return _broken(
        "missing_entry",
        f"entry {index} is missing: the header covers {len(wanted)} entries, the block has {len(block.leaves)}",
        height=height,
        index=index,
    )



def verify_chain(
    blocks: Iterable[StoredBlock],
    *,
    ledger_key: bytes | None = None,
    node_check: NodeCheck | None = None,
    progress: Callable[[int], None] | None = None,
    trusted_checkpoint: str | None = None,
    state_check: StateCheck | None = None,
    resume: ChainCursor | None = None,
    trust_below: int = 0,
    after_block: Callable[[ChainCursor], None] | None = None,
    on_block: BlockHook | None = None,
) -> VerifyReport:
    """Verify a whole chain from block 0, or from ``resume``.

    ``ledger_key``: the key the caller trusts (else the one genesis names). ``node_check``
    receives every recomputed Merkle node, to compare with stored ones. ``trusted_checkpoint``:
    a signed checkpoint note saved earlier; the chain must reach its size with its root.
    ``state_check`` receives the replayed participants and keys at the end, to compare with a
    store's derived tables. ``progress`` receives the count of entries checked after each block.
    ``resume``: a cursor from an earlier run; ``blocks`` then start at its height.
    ``trust_below``: entries below this index skip the Ed25519 work only, because a trusted
    checkpoint at that size already pins them (every hash, link and rule is still checked).
    ``after_block`` is called with the cursor after each verified block.
    Leaves may come parsed and partly verified (StoredLeaf.parsed, .verified); every
    signature not listed as verified is checked here. ``on_block`` receives every block once
    it has verified (height, tree size, its entries, the state after it).
    Raises ChainBroken (facts: reason, height, index, entry) at the first failure.
    """
    cur = resume if resume is not None else ChainCursor.start()
    if ledger_key is not None and cur.key is not None and cur.key != ledger_key:
        raise _broken("ledger_key", "the state snapshot is for a different ledger key than the one trusted", height=cur.height)
    return _verify_blocks(
        blocks, cur, ledger_key=ledger_key, node_check=node_check, progress=progress,
        trusted_checkpoint=trusted_checkpoint, state_check=state_check, trust_below=trust_below,
        after_block=after_block,
        on_block=on_block,
    )


def _verify_blocks(
    blocks: Iterable[StoredBlock],
    cur: ChainCursor,
    *,
    ledger_key: bytes | None,
    node_check: NodeCheck | None,
    progress: Callable[[int], None] | None,
    trusted_checkpoint: str | None,
    state_check: StateCheck | None,
    trust_below: int,
    after_block: Callable[[ChainCursor], None] | None,
    on_block: BlockHook | None = None,
) -> VerifyReport:
    state, frontier = cur.state, cur.frontier
    key = cur.key if cur.key is not None else ledger_key
    checkpoint: str | None = None
    trusted: Checkpoint | None = None
    checked = 0
    start_height = cur.height
    if cur.origin and trusted_checkpoint is not None:
        assert key is not None
        trusted = _trusted(trusted_checkpoint, origin=cur.origin, key=key)
    for block in blocks:
        h = cur.height
        try:
            header = BlockHeader.from_json(block.header)
        except LedgerError as exc:
            raise _broken("header", f"malformed header ({exc.detail})", height=h, cause=exc.code) from exc
        if header.height > h:
            raise _broken("missing_block", f"the next block stored is {header.height}, block {h} is missing", height=h)
        if header.height != h:
            raise _broken("height", f"height {header.height} where {h} was expected", height=h)
        if header.prev != cur.prev_hash:
            raise _broken("prev", "prev does not link to the previous block's hash", height=h)
        if header.first_index != frontier.size:
            raise _broken("first_index", f"first_index {header.first_index}, expected {frontier.size}", height=h)
        wanted = range(header.first_index, header.tree_size)
        if len(block.leaves) > len(wanted):
            raise _broken("entries", f"header covers {len(wanted)} entries, block has {len(block.leaves)}", height=h)
        if header.hash() != block.hash:
            raise _broken("block_hash", "stored block hash is not the hash of its header", height=h)
        try:
            block_time = parse_time(header.time, field="time")
        except LedgerError as exc:
            raise _broken("header", f"malformed block time ({exc.detail})", height=h, cause=exc.code) from exc
        if cur.prev_time is not None and block_time < cur.prev_time:
            raise _broken("time", "block time goes backwards", height=h)
        origin = cur.origin
        sealed: list[tuple[int, Envelope]] = []
        for i, leaf in enumerate(block.leaves):
            index = header.first_index + i
            if leaf.index != index:
                # A missing entry is named where the log reaches it, so that an entry earlier
                # in the block that is wrong (one moved down to close the gap) is named first.
                if all(other.index != index for other in block.leaves):
                    raise _missing(index, wanted, block, height=h)
                raise _broken("index", f"entry at position {leaf.index}, expected {index}", height=h, index=index, entry=leaf.id)
            try:
                if leaf.parsed is not None and leaf.parsed[0] == (origin or None):
                    parsed = leaf.parsed[1]
                    if isinstance(parsed, LedgerError):
                        raise parsed
                    env = parsed
                else:
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
            if index < trust_below:
                verified = _pinned_keys(state, env)
            else:
                verified = leaf.verified
                checked += len(env.signatures)
            try:
                apply_entry(state, env, Position(index, h, block_time), verified=verified)
            except SignatureRejected as exc:
                raise _broken("signature", f"a signature does not verify: {exc.code}: {exc.detail}", cause=exc.code, height=h, index=index, entry=leaf.id) from exc
            except LedgerError as exc:
                raise _broken("rule", f"entry breaks a rule: {exc.code}: {exc.detail}", cause=exc.code, height=h, index=index, entry=leaf.id) from exc
            if env.leaf_hash.hex() != leaf.leaf_hash:
                raise _broken("leaf_hash", "stored leaf hash is not the hash of the leaf data", height=h, index=index, entry=leaf.id)
            if index == 0:
                policy = state.get_policy()
                assert policy is not None
                origin = cur.origin = policy.origin
                if key is not None and key != policy.ledger_key:
                    raise _broken("ledger_key", "genesis names a different ledger key than the one trusted", height=h, index=index, entry=leaf.id)
                key = cur.key = policy.ledger_key
                if trusted_checkpoint is not None:
                    trusted = _trusted(trusted_checkpoint, origin=origin, key=key)
            nodes = frontier.append(env.leaf_hash)
            if on_block is not None:
                sealed.append((index, env))
            if node_check is not None:
                try:
                    node_check(nodes)
                except ChainBroken as exc:
                    facts = {k: v for k, v in exc.facts.items() if k not in ("height", "index", "entry", "reason")}
                    raise _broken(str(exc.facts.get("reason", "merkle_node")), exc.detail, height=h, index=index, entry=leaf.id, **facts) from exc
            if leaf.columns is not None:
                derived = {"height": h, "type": str(env.type), "author": env.author, "nonce": env.nonce}
                # The type too: a damaged file can hand back 5.0 for 5, or bytes for text.
                wrong = sorted(k for k, v in leaf.columns.items() if type(v) is not type(derived.get(k)) or derived.get(k) != v)
                if wrong:
                    raise _broken(
                        "entry_columns",
                        f"the stored {', '.join(wrong)} of this entry disagree with its leaf and block",
                        height=h, index=index, entry=leaf.id, field=wrong[0],
                    )
            cur.entries += 1
            if trusted is not None and frontier.size == trusted.tree_size and frontier.root() != trusted.root:
                raise _broken(
                    "fork",
                    f"at tree size {trusted.tree_size} the log's root differs from the trusted "
                    "checkpoint's: entries up to here were rewritten",
                    height=h,
                    tree_size=trusted.tree_size,
                )
        if len(block.leaves) < len(wanted):
            raise _missing(header.first_index + len(block.leaves), wanted, block, height=h)
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
        if on_block is not None:
            on_block(h, header.tree_size, sealed, state)
        cur.prev_hash, cur.prev_time = block.hash, block_time
        cur.height += 1
        if after_block is not None:
            after_block(cur)
        if progress is not None:
            progress(cur.entries)
    if cur.height == 0:
        raise ChainBroken("the ledger has no blocks", height=0, reason="empty")
    if trusted is not None and trusted.tree_size > frontier.size:
        raise _broken(
            "truncated",
            f"the log ends at tree size {frontier.size} but a trusted checkpoint showed "
            f"{trusted.tree_size}: blocks from {cur.height} on were removed",
            height=cur.height,
            tree_size=frontier.size,
            checkpoint_size=trusted.tree_size,
        )
    if state_check is not None:
        state_check(state)
    return VerifyReport(
        origin=cur.origin,
        height=cur.height - 1,
        tree_size=frontier.size,
        root=frontier.root().hex(),
        blocks=cur.height - start_height,
        entries=cur.entries,
        checkpoint=checkpoint,
        trusted_size=trusted.tree_size if trusted is not None else None,
        cursor=cur,
        signatures_checked=checked,
    )


def _pinned_keys(state: LedgerState, env: Envelope) -> frozenset[tuple[str, bytes]] | None:
    """The keys of ``env``'s signatures, taken as verified because a trusted checkpoint pins
    the entry; None when a key does not resolve (apply_entry then refuses the entry)."""
    try:
        return frozenset((sig.key_id, raw) for sig, raw in signature_keys(state, env))
    except LedgerError:
        return None
