"""Write an audit bundle (:mod:`ledger.bundle`) straight from the store, block by block.

Used by ``GET /v1/export`` and ``filiera export``. Memory stays bounded: one page of blocks
and one page of entries at a time, each read in its own short read transaction so that a
long export never holds a snapshot (SQLite WAL) or a PostgreSQL transaction open for minutes.
The range is fixed at the head seen when the export starts, so a bundle is a consistent prefix
of the log even while entries keep arriving.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..bundle import block_line, checkpoint_line, consistency_line, end_line, entry_line, header_line
from ..encoding import b64
from ..errors import InvalidExportRange, LedgerError, NotInitialised, StorageDamaged
from ..merkle import build_proof, consistency_plan, plan_nodes
from ..notes import verifier_for
from .store import BlockRow, Store

__all__ = ["ExportRange", "plan_export", "bundle_lines"]

_BLOCK_PAGE = 200
_ENTRY_PAGE = 2000


@dataclass(frozen=True, slots=True)
class ExportRange:
    """What an export will hold: entries [start, end) in whole blocks, and the head it ends at."""

    start: int  # first_index of the first block exported
    end: int  # tree_size of the last block exported
    first_height: int
    last_height: int
    head: BlockRow  # the last block exported; its checkpoint closes the bundle
    since: int | None  # a trusted tree size to prove consistency from, if asked


def _block_at_or_after(store: Store, index: int, head: BlockRow) -> BlockRow | None:
    """The first block whose first_index >= index (None if none), by binary search on heights."""
    lo, hi = 0, head.height
    found: BlockRow | None = None
    with store.read() as conn:
        while lo <= hi:
            mid = (lo + hi) // 2
            b = store.block(conn, mid)
            if b is None:
                raise NotInitialised(f"block {mid} is missing from the store")
            if b.first_index >= index:
                found, hi = b, mid - 1
            else:
                lo = mid + 1
    return found


def _block_ending_at_or_before(store: Store, index: int, head: BlockRow) -> BlockRow | None:
    """The last block whose tree_size <= index."""
    lo, hi = 0, head.height
    found: BlockRow | None = None
    with store.read() as conn:
        while lo <= hi:
            mid = (lo + hi) // 2
            b = store.block(conn, mid)
            if b is None:
                raise NotInitialised(f"block {mid} is missing from the store")
            if b.tree_size <= index:
                found, lo = b, mid + 1
            else:
                hi = mid - 1
    return found


def plan_export(store: Store, *, start: int = 0, end: int | None = None, since: int | None = None) -> ExportRange:
    """Resolve the entry range [start, end) to whole blocks: from the first block starting at or
    after ``start``, to the last block ending at or before ``end`` (default: the head).

    ``since``: a tree size the caller already trusts; the bundle then carries a consistency
    proof from it to the bundle's last checkpoint. Requires 0 <= start < end <= tree size and
    1 <= since <= the exported tree size. Raises InvalidExportRange (out of range, or no whole
    block inside the range) and NotInitialised. Reads only: a refused range writes nothing.
    """
    with store.read() as conn:
        head = store.head(conn)
    if head is None:
        raise NotInitialised("the ledger has no genesis block; run `filiera init`")
    size = head.tree_size
    if start < 0 or (end is not None and end < 0) or (since is not None and since < 0):
        raise InvalidExportRange("export indices cannot be negative", tree_size=size)
    if end is not None and start >= end:
        raise InvalidExportRange(
            f"from ({start}) must be below to ({end}): the range [from, to) is empty", tree_size=size
        )
    if start >= size:
        raise InvalidExportRange(
            f"nothing to export from index {start}: the log has {size} entries (indices 0 to {size - 1})",
            tree_size=size,
        )
    if end is not None and end > size:
        # Silently exporting less than asked would let a caller believe it holds entries the
        # ledger does not have yet; say so instead.
        raise InvalidExportRange(f"to ({end}) is past the current tree size {size}", tree_size=size)
    first = _block_at_or_after(store, start, head)
    last = head if end is None or end == size else _block_ending_at_or_before(store, end, head)
    if first is None or last is None or last.height < first.height:
        raise InvalidExportRange(
            f"no whole block lies in entries [{start}, {end if end is not None else size}):"
            " exports hold whole blocks; widen the range",
            tree_size=size,
        )
    if since is not None and not 1 <= since <= last.tree_size:
        raise InvalidExportRange(
            f"since must be a tree size from 1 to {last.tree_size} (the exported tree size)",
            tree_size=size,
        )
    return ExportRange(
        start=first.first_index,
        end=last.tree_size,
        first_height=first.height,
        last_height=last.height,
        head=last,
        since=since,
    )


def _stored_origin(genesis: BlockRow) -> str:
    """The origin line of block 0's checkpoint, when the genesis entry cannot say it.

    Raises StorageDamaged when that checkpoint is damaged too (NULL, not text, or without an
    origin line): with neither, no header can be written, and a bundle without one would
    tell an auditor nothing.
    """
    checkpoint: object = genesis.checkpoint
    origin = checkpoint.split("\n", 1)[0].strip() if isinstance(checkpoint, str) else ""
    if not origin:
        raise StorageDamaged(
            "the ledger's origin cannot be read: the genesis entry and block 0's checkpoint are "
            "both damaged or missing, so no bundle can be written. Run `filiera verify` on this "
            "database to see the damage, and restore it from a backup",
            height=0,
        )
    return origin


def bundle_lines(store: Store, rng: ExportRange, *, created: str) -> Iterator[bytes]:
    """The bundle's lines for ``rng``, lazily. Requires an initialised store."""
    with store.read() as conn:
        genesis = store.block(conn, 0)
        try:
            policy = store.policy(conn)
        except LedgerError:
            # A damaged genesis: export what is stored anyway, so that the audit names entry 0
            # instead of the export refusing. The header's keys are left empty: an auditor
            # compares them with the verifier key it brings and never trusts them.
            policy = None
    if genesis is None:
        raise NotInitialised("the ledger has no genesis block; run `filiera init`")
    origin = policy.origin if policy is not None else _stored_origin(genesis)
    yield header_line(
        origin=origin,
        verifier_key=verifier_for(origin, policy.ledger_key).vkey if policy is not None else "",
        public_key=b64(policy.ledger_key) if policy is not None else "",
        genesis=genesis.hash,
        from_index=rng.start,
        created=created,
    )
    if rng.since is not None:
        plan = consistency_plan(old_size=rng.since, new_size=rng.end)
        with store.read() as conn:
            nodes = store.nodes(conn, plan_nodes(plan))
        yield consistency_line(
            from_size=rng.since,
            to_size=rng.end,
            hashes=[h.hex() for h in build_proof(plan, nodes)],
            checkpoint=rng.head.checkpoint,
        )
    blocks = entries = 0
    height = rng.first_height
    while height <= rng.last_height:
        with store.read() as conn:
            page = store.blocks(conn, start=height, limit=min(_BLOCK_PAGE, rng.last_height - height + 1))
        if not page:
            raise NotInitialised(f"block {height} is missing from the store")
        for block in page:
            yield block_line(
                header=block.header_json(origin),
                hash=block.hash,
                signature=block.signature,
                checkpoint=block.checkpoint,
            )
            index = block.first_index
            while index < block.tree_size:
                with store.read() as conn:
                    rows = store.entries_range(conn, index, min(index + _ENTRY_PAGE, block.tree_size))
                if not rows:
                    # A hole in the stored log: export what is there and let the audit name it.
                    break
                for row in rows:
                    yield entry_line(index=row.idx, id=row.id, leaf_hash=row.leaf_hash, leaf_data=row.leaf_data)
                entries += len(rows)
                index = rows[-1].idx + 1
            blocks += 1
        height = page[-1].height + 1
    yield checkpoint_line(rng.head.checkpoint)
    yield end_line(blocks=blocks, entries=entries, tree_size=rng.end)
