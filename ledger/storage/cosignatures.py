"""Stored witness cosignatures and the witnessing turn: the queries ``ledger.witnessing`` makes.

Rows are inserted only after the cosignature verified against the witness's key and the body
of the checkpoint at that tree size (the block's); the table is append-only. A witness's later
cosignatures of the same checkpoint (renewals while the ledger is idle, TESTPLAN T11) go to
``cosignature_renewals``, append-only too. Readers attach, per witness key, the newest line to the
block's own checkpoint note (signed-note §Format allows signatures in any order: the log's line
stays first).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from sqlalchemy import Connection, func, select, union_all
from sqlalchemy.exc import IntegrityError

from ..notes import add_signature_lines
from . import schema as t
from .store import BlockRow, Store

__all__ = [
    "StoredCosignature",
    "record",
    "record_renewal",
    "newest_timestamp",
    "latest_size",
    "at_size",
    "newest_sizes",
    "with_cosignatures",
    "checkpoint_at_size",
    "Connection",
    "witnessing_turn",
]

# Any 64-bit constant other than the append lock's; the same in every process of one ledger.
_WITNESSING_LOCK_KEY = 0x46494C5749544E31  # "FILWITN1"
# Threads of a process that has no lock file (an in-memory SQLite database) take turns here.
_LOCAL_TURN = threading.Lock()


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """A verified cosignature: witness key name and 8-hex key ID, tree size, time, the line."""

    witness: str
    key_id: str
    tree_size: int
    timestamp: int
    line: str


def _row(r: object) -> StoredCosignature:
    return StoredCosignature(
        witness=r.witness, key_id=r.key_id, tree_size=r.tree_size,  # type: ignore[attr-defined]
        timestamp=r.timestamp, line=r.line,  # type: ignore[attr-defined]
    )


def record(store: Store, rows: Sequence[StoredCosignature]) -> int:
    """Store the cosignatures not stored yet (the first one of a witness at a size is kept);
    returns how many were new. Never inside the append transaction: a short write of its own."""
    if not rows:
        return 0
    try:
        with store.write() as conn:
            have = {
                (r.witness, r.key_id, r.tree_size)
                for r in conn.execute(
                    select(t.cosignatures.c.witness, t.cosignatures.c.key_id, t.cosignatures.c.tree_size).where(
                        t.cosignatures.c.tree_size.in_(sorted({r.tree_size for r in rows}))
                    )
                )
            }
            new = [r for r in rows if (r.witness, r.key_id, r.tree_size) not in have]
            if new:
                conn.execute(
                    t.cosignatures.insert(),
                    [
                        {"witness": r.witness, "key_id": r.key_id, "tree_size": r.tree_size, "timestamp": r.timestamp, "line": r.line}
                        for r in new
                    ],
                )
            return len(new)
    except IntegrityError:
        # Another process stored the same cosignature between our read and our insert
        # (PostgreSQL; SQLite writers are serialised): it is stored, which is all we wanted.
        return 0


def record_renewal(store: Store, row: StoredCosignature) -> bool:
    """Store a later cosignature of a tree size this witness key has already cosigned; False if
    one with the same timestamp is stored (a witness answering twice in one second)."""
    try:
        with store.write() as conn:
            key = (
                t.cosignature_renewals.c.witness == row.witness,
                t.cosignature_renewals.c.key_id == row.key_id,
                t.cosignature_renewals.c.tree_size == row.tree_size,
                t.cosignature_renewals.c.timestamp == row.timestamp,
            )
            if conn.execute(select(func.count()).select_from(t.cosignature_renewals).where(*key)).scalar_one():
                return False
            conn.execute(
                t.cosignature_renewals.insert(),
                {"witness": row.witness, "key_id": row.key_id, "tree_size": row.tree_size, "timestamp": row.timestamp, "line": row.line},
            )
            return True
    except IntegrityError:
        return False


def newest_timestamp(conn: Connection, *, witness: str, key_id: str, tree_size: int) -> int | None:
    """The newest cosignature time (POSIX seconds) of this witness key at ``tree_size``."""
    return next((r.timestamp for r in _rows_at(conn, [tree_size]) if (r.witness, r.key_id) == (witness, key_id)), None)


def _newest_per_key(rows: list[StoredCosignature]) -> list[StoredCosignature]:
    """One cosignature per (tree size, witness, key ID): the newest; ordered by witness, key."""
    best: dict[tuple[int, str, str], StoredCosignature] = {}
    for r in rows:
        k = (r.tree_size, r.witness, r.key_id)
        if k not in best or r.timestamp > best[k].timestamp:
            best[k] = r
    return sorted(best.values(), key=lambda r: (r.witness, r.key_id))


def _rows_at(conn: Connection, sizes: list[int]) -> list[StoredCosignature]:
    first, later = t.cosignatures, t.cosignature_renewals
    both = union_all(
        select(first.c.witness, first.c.key_id, first.c.tree_size, first.c.timestamp, first.c.line).where(first.c.tree_size.in_(sizes)),
        select(later.c.witness, later.c.key_id, later.c.tree_size, later.c.timestamp, later.c.line).where(later.c.tree_size.in_(sizes)),
    )
    return _newest_per_key([_row(r) for r in conn.execute(both)])


def latest_size(conn: Connection, *, witness: str, key_id: str) -> int | None:
    """The largest tree size this witness key has cosigned for us, if any."""
    value = conn.execute(
        select(func.max(t.cosignatures.c.tree_size)).where(
            t.cosignatures.c.witness == witness, t.cosignatures.c.key_id == key_id
        )
    ).scalar()
    return None if value is None else int(value)


def at_size(conn: Connection, tree_size: int) -> list[StoredCosignature]:
    """The cosignatures of the checkpoint of ``tree_size``, the newest of each witness key,
    by witness name and key ID."""
    return _rows_at(conn, [tree_size])


def newest_sizes(conn: Connection, *, below: int | None, limit: int) -> list[tuple[int, list[StoredCosignature]]]:
    """Up to ``limit`` cosigned tree sizes below ``below`` (all if None), newest first, each
    with its cosignatures."""
    sizes_q = select(t.cosignatures.c.tree_size).distinct().order_by(t.cosignatures.c.tree_size.desc()).limit(limit)
    if below is not None:
        sizes_q = sizes_q.where(t.cosignatures.c.tree_size < below)
    sizes = [int(s) for s in conn.scalars(sizes_q)]
    if not sizes:
        return []
    by_size: dict[int, list[StoredCosignature]] = {s: [] for s in sizes}
    for r in _rows_at(conn, sizes):
        by_size[r.tree_size].append(r)
    return [(s, by_size[s]) for s in sizes]


def with_cosignatures(conn: Connection, block: BlockRow) -> BlockRow:
    """``block`` with its checkpoint carrying every stored cosignature of its tree size."""
    lines = [c.line for c in at_size(conn, block.tree_size)]
    if not lines:
        return block
    return replace(block, checkpoint=add_signature_lines(block.checkpoint, lines))


def checkpoint_at_size(conn: Connection, tree_size: int) -> str | None:
    """The checkpoint note of the block of ``tree_size`` (block sizes are unique)."""
    note = conn.execute(select(t.blocks.c.checkpoint).where(t.blocks.c.tree_size == tree_size)).scalar()
    return None if note is None else str(note)


@contextmanager
def witnessing_turn(store: Store) -> Iterator[bool]:
    """Try to become the one process (and thread) of this ledger that talks to witnesses now.

    Yields True to the winner, False at once to the others, so that gunicorn workers do not
    submit the same checkpoint twice. SQLite: ``flock`` of a file beside the database;
    PostgreSQL: a session advisory lock. Either is released if the holder dies.
    """
    database = store.engine.url.database
    if store.dialect == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        fd = os.open(f"{database}-witnessing.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
        return
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_WITNESSING_LOCK_KEY})").scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_WITNESSING_LOCK_KEY})")
                    conn.commit()
        return
    if not _LOCAL_TURN.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        _LOCAL_TURN.release()
