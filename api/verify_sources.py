"""Where `filiera verify` reads a chain from: the local database, or a server's API.

Each source yields the blocks for :func:`ledger.verify.verify_chain` and checks what the chain
alone cannot: that the database holds nothing the blocks do not seal (entries or Merkle nodes
past the last block), that every stored Merkle node is the one the leaves give, and that the
derived tables (or what a server shows as its members) say what the replayed log says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from ledger import jcs
from ledger.config import Settings
from ledger.errors import ChainBroken, LedgerError, Unavailable
from ledger.merkle import NodeId
from ledger.spill import DEFAULT_BUDGET, SpillSource
from ledger.state import KeyRecord, ParticipantRecord
from ledger.storage import schema as t
from ledger.state import LedgerState
from ledger.storage import projection
from ledger.storage.store import BlockRow, Store
from ledger.storage.facts_replay import FactsCheck
from ledger.verify import BlockHook, ChainCursor, NodeCheck, StateCheck, StoredBlock, StoredLeaf

__all__ = ["ChainSource", "db_source", "http_source", "db_blocks", "http_blocks"]

Source = tuple[Iterator[StoredBlock], int, NodeCheck | None]
PAGE = 200


@dataclass(frozen=True, slots=True)
class ChainSource:
    """What ``verify_chain`` needs from one place: blocks, their entry count and checks."""

    blocks: Iterator[StoredBlock]
    total: int
    node_check: NodeCheck | None
    state_check: StateCheck | None
    close: Callable[[], None] = lambda: None
    # Receives each verified block (the facts projection is compared through it).
    on_block: BlockHook | None = None
    # Where verify_chain starts (a fresh cursor whose state spills to a scratch file), and
    # what it calls after each block (the spill, once the state outgrows its budget).
    resume: ChainCursor | None = None
    after_block: Callable[[ChainCursor], None] | None = None


def _node_count(size: int) -> int:
    """Perfect subtrees ever completed in a tree of ``size`` leaves: 2n - popcount(n)."""
    return 2 * size - bin(size).count("1")


def _projection_broken(detail: str, **facts: Any) -> ChainBroken:
    return ChainBroken(detail, reason="projection", height=None, index=None, entry=None, **facts)


def _compare_projection(
    kind: str,
    replayed: Mapping[str, Mapping[str, Any]],
    stored: Mapping[str, Mapping[str, Any]],
    where: str,
) -> None:
    """Raise ChainBroken(reason=projection) naming the first record that differs."""
    fact = "participant" if kind == "participant" else "key_id"
    for rid in sorted(set(replayed) | set(stored)):
        if rid not in stored:
            raise _projection_broken(f"{kind} {rid} is in the log but missing from {where}", **{fact: rid})
        if rid not in replayed:
            raise _projection_broken(f"{where} shows {kind} {rid}, which no entry of the log creates", **{fact: rid})
        fields = sorted(k for k in replayed[rid] if replayed[rid][k] != stored[rid].get(k))
        if fields:
            raise _projection_broken(
                f"{where} shows {kind} {rid} with {', '.join(fields)} other than the log says",
                field=fields[0],
                **{fact: rid},
            )


def _first_difference(
    replayed: Iterable[tuple[Any, Any]],
    stored: Iterable[tuple[Any, Any]],
    same: Callable[[Any, Any], bool] = operator.eq,
) -> tuple[Any, str, Any, Any] | None:
    """The first key, in sorted order, whose value differs between two streams of (key, value)
    pairs each sorted by key: (key, how, replayed value, stored value), ``how`` being
    ``missing`` (replayed only), ``extra`` (stored only) or ``wrong`` (not ``same``). A key
    repeated in a stream counts once, as in a set. None if they agree."""
    a, b = iter(replayed), iter(stored)
    ra, rb = next(a, None), next(b, None)
    while ra is not None or rb is not None:
        if rb is None or (ra is not None and ra[0] < rb[0]):
            assert ra is not None
            return ra[0], "missing", ra[1], None
        if ra is None or rb[0] < ra[0]:
            return rb[0], "extra", None, rb[1]
        if not same(ra[1], rb[1]):
            return ra[0], "wrong", ra[1], rb[1]
        key = ra[0]
        while ra is not None and ra[0] == key:
            ra = next(a, None)
        while rb is not None and rb[0] == key:
            rb = next(b, None)
    return None


def _compare_projection_streams(
    kind: str, replayed: Iterable[tuple[str, Mapping[str, Any]]], stored: Iterable[tuple[str, Mapping[str, Any]]], where: str
) -> None:
    """:func:`_compare_projection` over two streams sorted by id (memory: one record of each)."""

    def same(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
        return all(mine[k] == theirs.get(k) for k in mine)

    differs = _first_difference(replayed, stored, same)
    if differs is None:
        return
    rid, how, mine, theirs = differs
    _compare_projection(kind, {} if mine is None else {rid: mine}, {} if theirs is None else {rid: theirs}, where)
    raise AssertionError(f"{kind} {rid} differs but was not named")  # pragma: no cover


def _participant_view(rec: ParticipantRecord) -> dict[str, Any]:
    return {
        "name": rec.name,
        "roles": list(rec.roles),
        "attributes": dict(rec.attributes),
        "registered_index": rec.registered_index,
        "registered_height": rec.registered_height,
    }


def _key_view(rec: KeyRecord) -> dict[str, Any]:
    view = rec.to_json()
    del view["key_id"]
    return {"participant": rec.participant, **view}


def db_source(
    settings: Settings, *, memory_budget: int = DEFAULT_BUDGET, scratch_dir: str | None = None
) -> ChainSource:
    """Every block of the local database with its leaves, a check of stored Merkle nodes,
    of rows no block seals, of the participant and key tables, and (through ``on_block``)
    of the facts projection.

    The replayed state spills to a scratch file in ``scratch_dir`` once it holds more than
    ``memory_budget`` records (ledger.spill, as the offline audit does); ``close`` deletes it.
    """
    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
            try:
                policy = store.policy(conn)
            except LedgerError:
                # A genesis entry too damaged to read: verify_chain names it at entry 0.
                policy = None
            origin = _origin(policy.origin if policy else "", store.block(conn, 0))
        # Participants and keys spill too: a ledger may have as many members as lots.
        spill = SpillSource(scratch_dir, budget=memory_budget, prefix="filiera-verify-", keep=())
    except BaseException:
        store.dispose()
        raise
    total = head.tree_size if head else 0
    cursor = ChainCursor.start()
    cursor.state.source = spill

    def blocks() -> Generator[StoredBlock, None, None]:
        height, size = 0, 0
        # The store's pooled connections are closed once the chain has been read (or the
        # reader gave up), not left for the garbage collector.
        try:
            while True:
                with store.read() as conn:
                    page = store.blocks(conn, start=height, limit=PAGE)
                    if not page:
                        break
                    for b in page:
                        rows = store.entries_range(conn, b.first_index, b.tree_size)
                        # Every block in the database has a checkpoint: a NULL one is no
                        # reason to skip checking it (StoredBlock.checkpoint None does).
                        yield StoredBlock(
                            header=b.header_json(origin),
                            hash=_text(b.hash),
                            signature=_text(b.signature),
                            checkpoint=_text(b.checkpoint),
                            leaves=[_stored_leaf(r) for r in rows],
                        )
                        size = b.tree_size
                height = page[-1].height + 1
            _check_nothing_unsealed(store, size)
            _check_sqlite_file(store)
        finally:
            store.dispose()

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

    facts = FactsCheck(store)

    def state_check(state: LedgerState) -> None:
        # Everything the replay changed goes to the scratch file, which gives it back sorted
        # by key: merged with the stored tables read in the same order, memory holds a row of
        # each at a time (and the participants and keys, few).
        spill.absorb(state)
        facts.finish()
        with store.read() as conn:
            for kind in projection.PROJECTED_KINDS:
                with contextlib.closing(projection.iter_records(conn, kind)) as stored:
                    differs = _first_difference(((r.ident, r) for r in spill.records(kind)), ((r.ident, r) for r in stored))
                if differs is not None:
                    rid, where, _, _ = differs
                    raise _projection_broken(
                        f"{kind} {rid} is {'missing from' if where == 'missing' else 'wrong in'} the "
                        f"{kind}s table: the projection does not match the log",
                        kind=kind,
                        record=rid,
                    )
            # Lineage edges follow from the lots' parents; provenance walks them.
            replayed_edges = ((lot.lot, parent) for lot in spill.records("lot") for parent in sorted(set(lot.parents)))
            with contextlib.closing(projection.iter_lineage(conn)) as stored_edges:
                differs = _first_difference(((e, True) for e in replayed_edges), ((e, True) for e in stored_edges))
            if differs is not None:
                (child, parent), where, _, _ = differs
                raise _projection_broken(
                    f"lineage edge {parent} -> {child} is "
                    f"{'missing from' if where == 'missing' else 'not in the log but in'} the lot_lineage table",
                    kind="lot_lineage",
                    record=f"{parent}->{child}",
                )
            _compare_projection_streams(
                "participant",
                ((p.id, {**_participant_view(p), "updated_index": p.updated_index}) for p in spill.records("participant")),
                ((r.id, _stored_participant(r)) for r in _sorted_rows(conn, t.participants, t.participants.c.id)),
                "the participants table",
            )
            _compare_projection_streams(
                "key",
                ((k.key_id, _key_view(k)) for k in spill.records("key")),
                ((r.key_id, _stored_key(r)) for r in _sorted_rows(conn, t.participant_keys, t.participant_keys.c.key_id)),
                "the participant_keys table",
            )

    gen = blocks()

    def close() -> None:
        # The generator first, so that the connection it holds goes back to the pool before
        # the pool is closed.
        gen.close()
        store.dispose()
        spill.close()

    return ChainSource(
        gen, total, node_check, state_check, close, on_block=facts.on_block,
        resume=cursor, after_block=lambda cur: spill.maybe_absorb(cur.state),
    )


def _stored_participant(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "roles": json.loads(r.roles),
        "attributes": json.loads(r.attributes),
        "registered_index": r.registered_index,
        "registered_height": r.registered_height,
        "updated_index": r.updated_index,
    }


def _stored_key(r: Any) -> dict[str, Any]:
    return {
        "participant": r.participant,
        "public_key": r.public_key,
        "status": "revoked" if r.revoked_index is not None else "active",
        "added_index": r.added_index,
        "added_height": r.added_height,
        "revoked_index": r.revoked_index,
        "revoked_height": r.revoked_height,
        "reason": r.reason,
    }


def _sorted_rows(conn: Any, table: Any, column: Any) -> Iterator[Any]:
    """``table``'s rows streamed in code-point order of ``column`` (closed when dropped)."""
    with contextlib.closing(projection.iter_rows(conn, table, column)) as rows:
        yield from rows


def _text(value: object) -> str:
    """A text column's value, or a text that no check accepts for a value of another storage
    class (a NULL, a number, a blob), which a damaged SQLite file can hold in any column."""
    return value if isinstance(value, str) else repr(value)


def _stored_leaf(r: Any) -> StoredLeaf:
    """One entries row as verify_chain sees it.

    A damaged file can give back another storage class than the schema's (a NULL, a number, a
    blob, a real for an integer). Such a value never passes for the one the schema stores, even
    when it reads the same (a blob of the leaf's bytes): verify_chain then names the entry, in
    log order, rather than this reader crashing or the damage going unseen.
    """
    return StoredLeaf(
        r.idx if type(r.idx) is int else -1,
        _text(r.id),
        _text(r.leaf_hash),
        r.leaf_data.encode("utf-8") if isinstance(r.leaf_data, str) else b"",
        columns={"height": r.height, "type": r.type, "author": r.author, "nonce": r.nonce},
    )


def _origin(from_genesis: str, block0: BlockRow | None) -> str:
    """The ``ledger`` every block header names, which the blocks table does not store.

    Genesis names it, and so does the first line of every checkpoint note. Of the two, the
    one under which block 0's header hashes to its stored hash is taken: an edited or
    unreadable genesis entry is then named as entry 0, not as a bad block 0 header.
    """
    if block0 is None:
        return from_genesis
    # A checkpoint of another storage class names no origin (verify_chain then names it).
    from_checkpoint = block0.checkpoint.split("\n", 1)[0] if isinstance(block0.checkpoint, str) else ""
    for candidate in (from_genesis, from_checkpoint):
        if candidate and hashlib.sha256(jcs.canonicalize(block0.header_json(candidate))).hexdigest() == block0.hash:
            return candidate
    return from_genesis


def _check_sqlite_file(store: Store) -> None:
    """Raise ChainBroken (reason storage) if SQLite finds its file inconsistent.

    Every read above goes through the primary keys' indexes, so a damaged table row whose key
    no longer matches its index entry reads back as if intact; ``PRAGMA integrity_check``
    compares them (``quick_check`` does not). It runs last, once the log itself has verified,
    so that a damage the log shows is named at its block and entry first.
    """
    with store.read() as conn:
        if conn.dialect.name != "sqlite":
            return
        problems = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check(5)")]
    if problems != ["ok"]:
        raise ChainBroken(
            f"the database file is damaged: {'; '.join(problems)}",
            reason="storage",
            height=None,
            problems=problems,
        )


def _check_nothing_unsealed(store: Store, size: int) -> None:
    """Raise ChainBroken if the log tables hold rows past the last block's tree size."""
    with store.read() as conn:
        stray = conn.execute(
            select(t.entries.c.idx, t.entries.c.id)
            .where(or_(t.entries.c.idx >= size, t.entries.c.idx < 0))
            .order_by(t.entries.c.idx)
            .limit(1)
        ).first()
        if stray is not None:
            raise ChainBroken(
                f"entry {stray.idx} is stored but no block seals it (the log ends at {size})",
                reason="unsealed_entry",
                height=None,
                index=stray.idx,
                entry=stray.id,
            )
        count = conn.execute(select(func.count()).select_from(t.merkle_nodes)).scalar_one()
        if count != _node_count(size):
            nodes = select(t.merkle_nodes.c.level, t.merkle_nodes.c.idx).order_by(t.merkle_nodes.c.level, t.merkle_nodes.c.idx)
            for r in conn.execute(nodes):
                if r.idx < 0 or (r.idx + 1) << r.level > size:
                    raise ChainBroken(
                        f"stored Merkle node ({r.level}, {r.idx}) covers leaves past the log's "
                        f"end at {size}",
                        reason="merkle_node",
                        height=None,
                        node=[r.level, r.idx],
                    )


def db_blocks(settings: Settings) -> Source:
    """Every block of the local database with its leaves, and a check of stored Merkle nodes."""
    src = db_source(settings)
    return _closing_at_end(src), src.total, src.node_check


def http_source(
    url: str, http_json: Callable[..., tuple[int, Any]], *, memory_budget: int = DEFAULT_BUDGET, scratch_dir: str | None = None
) -> ChainSource:
    """Every block of a server's ledger, fetched page by page (entries one by one), and a
    check that the members and keys the server shows are the ones its log makes. The
    replayed state spills as :func:`db_source`'s does."""
    base = url.rstrip("/")
    status, info = http_json("GET", base + "/v1/ledger")
    if status != 200 or not isinstance(info, dict):
        raise Unavailable(f"{base}/v1/ledger answered {status}")
    total = int(info["tree_size"])
    spill = SpillSource(scratch_dir, budget=memory_budget, prefix="filiera-verify-")
    cursor = ChainCursor.start()
    cursor.state.source = spill

    def blocks() -> Generator[StoredBlock, None, None]:
        height = 0
        while True:
            status, page = http_json("GET", f"{base}/v1/blocks?from={height}&limit={PAGE}")
            if status != 200:
                raise Unavailable(f"{base}/v1/blocks answered {status}")
            if not page["blocks"]:
                return
            for b in page["blocks"]:
                leaves = []
                for entry_id in b["entries"]:
                    st, e = http_json("GET", f"{base}/v1/entries/{entry_id}")
                    if st != 200:
                        raise ChainBroken(
                            f"block {b['header']['height']} lists entry {entry_id} the server cannot show",
                            height=b["header"]["height"],
                            entry=entry_id,
                            reason="missing_entry",
                        )
                    leaf = jcs.canonicalize({"payload": e["payload"], "signatures": e["signatures"]})
                    leaves.append(StoredLeaf(e["index"], e["id"], e["leaf_hash"], leaf))
                yield StoredBlock(header=b["header"], hash=b["hash"], signature=b["signature"], checkpoint=b.get("checkpoint"), leaves=leaves)
            height = page["blocks"][-1]["header"]["height"] + 1

    def state_check(state: LedgerState) -> None:
        spill.absorb(state)
        participants, keys = list(spill.records("participant")), list(spill.records("key"))
        shown_p: dict[str, dict[str, Any]] = {}
        shown_k: dict[str, dict[str, Any]] = {}
        after = ""
        while True:
            status, page = http_json("GET", f"{base}/v1/participants?after={after}&limit={PAGE}")
            if status != 200:
                raise Unavailable(f"{base}/v1/participants answered {status}")
            for p in page["participants"]:
                shown_p[p["id"]] = {k: p.get(k) for k in ("name", "roles", "attributes", "registered_index", "registered_height")}
                for k in p.get("keys", []):
                    shown_k[k["key_id"]] = {"participant": p["id"], **{f: v for f, v in k.items() if f != "key_id"}}
            if not page.get("next"):
                break
            after = page["next"]
        where = f"{base}/v1/participants"
        _compare_projection("participant", {p.id: _participant_view(p) for p in participants}, shown_p, where)
        _compare_projection("key", {k.key_id: _key_view(k) for k in keys}, shown_k, where)

    gen = blocks()

    def close() -> None:
        gen.close()
        spill.close()

    return ChainSource(
        gen, total, None, state_check, close, resume=cursor, after_block=lambda cur: spill.maybe_absorb(cur.state)
    )


def http_blocks(url: str, http_json: Callable[..., tuple[int, Any]]) -> Source:
    """Every block of a server's ledger, fetched page by page (entries one by one)."""
    src = http_source(url, http_json)
    return _closing_at_end(src), src.total, src.node_check


def _closing_at_end(src: ChainSource) -> Iterator[StoredBlock]:
    """``src``'s blocks, then ``src.close()`` (its scratch file deleted) once read or dropped."""
    try:
        yield from src.blocks
    finally:
        src.close()
