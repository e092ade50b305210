"""Reading a lot's story for its provenance view and origin certificate (issue #5).

Every read is by key on the projection's indexes, never a scan of the log: the lineage in one
recursive query over ``lot_lineage``, then the handoffs (``lot_handoffs`` joined to
``handoffs``), attestations (by subject), contracts and payments (members only), the entries
by id, and the Merkle nodes of every inclusion proof against the one checkpoint in a batched
read (O(log n) nodes per proof, shared ones read once). All of it in one snapshot, so the
checkpoint covers every entry read. The number of statements does not depend on the story:
on PostgreSQL, a database a round trip away, the lineage, handoffs and attestations are one
statement, and each other read one statement whatever the number of keys.

What is read is only which entries tell the story; ``ledger.provenance`` then derives the view
from those entries alone, as an offline verifier of a certificate does.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, text

from ..errors import NotInitialised
from ..merkle import NodeId, build_proof, inclusion_plan, plan_nodes
from ..provenance import assemble
from ..story import ProvedEntry, ProvenanceView
from . import schema as t
from .cosignatures import with_cosignatures
from .statements import chunks, select_in
from .store import Store

__all__ = ["Viewer", "DEFAULT_MAX_LOTS", "read_view"]

DEFAULT_MAX_LOTS = 2000


@dataclass(frozen=True, slots=True)
class Viewer:
    """A member reading (RFC 9421 signed); None reads the public view."""

    id: str
    sees_all: bool


# The anchor, then each parent of a lot already found, each lot once (UNION), at most :cap.
# SQLite stops the recursion at a LIMIT inside the CTE; PostgreSQL refuses one there but
# computes only the rows an outer LIMIT pulls.
_LINEAGE_SQLITE = text(
    "WITH RECURSIVE anc(lot) AS ("
    " SELECT :lot"
    " UNION"
    " SELECT lot_lineage.parent FROM lot_lineage JOIN anc ON lot_lineage.child = anc.lot"
    " LIMIT :cap)"
    " SELECT lots.lot, lots.created_by FROM anc JOIN lots ON lots.lot = anc.lot"
)
# The transform that consumed the lot, if one did (the entry that made any of its children).
_CONSUMER = select(t.lot_lineage.c.entry).where(t.lot_lineage.c.parent == bindparam("lot")).limit(1)

# On PostgreSQL, which entries tell the story, in one statement (one round trip instead of
# four): the lots of the lineage with the entry that made each, the transform that consumed
# :lot, the handoffs of the lineage's lots with how each was closed and its contract, and the
# attestations of those lots and entries, as (kind, key, a, b) rows. Every lookup is a LATERAL
# subquery fenced by OFFSET 0, which the planner cannot flatten into a join: it probes the
# index once per key whatever the table statistics say. A plain join let it hash-join a
# sequential scan of the whole table (at every level of the lineage) whenever its statistics
# made the table look small, as they do on a table not yet analysed: the read then grew with
# the ledger.
_STORY_POSTGRESQL = text(
    "WITH RECURSIVE anc(lot) AS ("
    " SELECT CAST(:lot AS VARCHAR(200))"
    " UNION"
    " SELECT p.parent FROM anc CROSS JOIN LATERAL"
    " (SELECT lot_lineage.parent FROM lot_lineage WHERE lot_lineage.child = anc.lot OFFSET 0) AS p),"
    " lin AS (SELECT l.lot, l.created_by FROM (SELECT lot FROM anc LIMIT :cap) AS a CROSS JOIN LATERAL"
    " (SELECT lots.lot, lots.created_by FROM lots WHERE lots.lot = a.lot OFFSET 0) AS l)"
    " SELECT 'lot' AS kind, lin.lot AS key, lin.created_by AS a, CAST(NULL AS VARCHAR) AS b FROM lin"
    " UNION ALL"
    " SELECT 'consumer', c.entry, NULL, NULL FROM"
    " (SELECT lot_lineage.entry FROM lot_lineage WHERE lot_lineage.parent = :lot LIMIT 1) AS c"
    " UNION ALL"
    " SELECT 'handoff', m.handoff, h.closed_by, h.contract FROM lin"
    " CROSS JOIN LATERAL (SELECT lot_handoffs.handoff FROM lot_handoffs WHERE lot_handoffs.lot = lin.lot OFFSET 0) AS m"
    " CROSS JOIN LATERAL (SELECT handoffs.closed_by, handoffs.contract FROM handoffs WHERE handoffs.id = m.handoff OFFSET 0) AS h"
    " UNION ALL"
    " SELECT 'attestation', r.id, NULL, NULL FROM (SELECT lin.lot AS subject FROM lin UNION SELECT lin.created_by FROM lin) AS s"
    " CROSS JOIN LATERAL (SELECT attestations.id FROM attestations WHERE attestations.subject = s.subject OFFSET 0) AS r"
)
# Which of the log positions :keys (an array) the member :who is a party to.
_VISIBLE_POSTGRESQL = text(
    "SELECT r.idx FROM unnest(CAST(:keys AS BIGINT[])) AS q(k) CROSS JOIN LATERAL"
    " (SELECT entry_parties.idx FROM entry_parties WHERE entry_parties.participant = :who"
    " AND entry_parties.idx = q.k OFFSET 0) AS r"
)


@functools.lru_cache(maxsize=32)
def _moves_query(size: int) -> Any:
    """The handoffs of up to ``size`` lots, with how each was closed and its contract."""
    lh, h = t.lot_handoffs, t.handoffs
    return (
        select(lh.c.handoff, h.c.closed_by, h.c.contract)
        .join(h, h.c.id == lh.c.handoff)
        .where(lh.c.lot.in_([bindparam(f"p{j}") for j in range(size)]))
    )


@functools.lru_cache(maxsize=32)
def _visible_query(size: int) -> Any:
    """Which of up to ``size`` log positions the member ``:who`` is a party to."""
    ep = t.entry_parties
    return select(ep.c.idx).where(ep.c.participant == bindparam("who"), ep.c.idx.in_([bindparam(f"p{j}") for j in range(size)]))


@functools.lru_cache(maxsize=16)
def _probe_postgresql(table: str, key: str, columns: tuple[str, ...]) -> Any:
    """``columns`` of the rows of ``table`` whose ``key`` is one of the array ``:keys``: one
    statement for any number of keys, one index probe per key (see _STORY_POSTGRESQL)."""
    return text(
        f"SELECT {', '.join('r.' + c for c in columns)} FROM unnest(CAST(:keys AS VARCHAR[])) AS q(k)"
        f" CROSS JOIN LATERAL (SELECT {', '.join(columns)} FROM {table} WHERE {table}.{key} = q.k OFFSET 0) AS r"
    )


def _in(conn: Connection, table: Table, key: str, values: Iterable[Any], columns: tuple[str, ...]) -> list[Any]:
    """The rows of ``table`` whose ``key`` is one of ``values``: on PostgreSQL in one
    statement, on SQLite in one per :data:`~.statements.MAX_IN` values."""
    keys = sorted(set(values))
    if not keys:
        return []
    if conn.dialect.name == "postgresql":
        return list(conn.execute(_probe_postgresql(table.name, key, columns), {"keys": keys}))
    rows: list[Any] = []
    for size, params in chunks(keys):
        rows.extend(conn.execute(select_in(table, key, size, columns), params))
    return rows


@contextmanager
def _snapshot(store: Store) -> Iterator[Connection]:
    """One read transaction that sees one state of the database throughout: SQLite's WAL
    snapshot does by itself; PostgreSQL needs REPEATABLE READ (READ COMMITTED would let a
    block sealed between two queries show entries the checkpoint read first does not cover)."""
    if store.dialect != "postgresql":
        with store.read() as conn:
            yield conn
        return
    with store.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        yield conn


def read_view(store: Store, lot: str, *, viewer: Viewer | None, max_lots: int = DEFAULT_MAX_LOTS) -> ProvenanceView | None:
    """The provenance view of ``lot`` as ``viewer`` may see it (None: the public view), with
    every entry's inclusion proof against the latest checkpoint. None if no such lot.

    The lineage followed is at most ``max_lots`` lots; beyond, the view says the origins are
    unknown. Raises NotInitialised on a ledger without genesis.
    """
    with _snapshot(store) as conn:
        head = store.head(conn)
        policy = store.policy(conn)
        if head is None or policy is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        # Once witnesses have cosigned the head (a quiet ledger), the proofs carry their
        # cosignatures (PROTOCOL §5).
        head = with_cosignatures(conn, head)
        story = _story(conn, lot, max(1, max_lots))
        if story is None:
            return None
        wanted, contracts = story
        if viewer is not None and contracts:
            wanted.update(_commercial(conn, viewer, contracts))
        rows = [r for r in _in(conn, t.entries, "id", wanted, ("idx", "id", "leaf_hash", "leaf_data")) if r.idx < head.tree_size]
        rows.sort(key=lambda r: r.idx)
        plans = {r.idx: inclusion_plan(index=r.idx, tree_size=head.tree_size) for r in rows}
        nodes = store.nodes(conn, _union(plans.values()))
        envelopes = [json.loads(r.leaf_data) for r in rows]
        names = {p.id: p.name for p in store.participants_by_id(conn, sorted(_named(envelopes))).values()}
    entries = tuple(
        ProvedEntry(id=r.id, index=r.idx, leaf_hash=r.leaf_hash, envelope=env, hashes=tuple(build_proof(plans[r.idx], nodes)))
        for r, env in zip(rows, envelopes)
    )
    return ProvenanceView(
        ledger=policy.origin,
        scope="public" if viewer is None else viewer.id,
        provenance=assemble(lot, (e.story_entry() for e in entries)),
        checkpoint=head.checkpoint,
        tree_size=head.tree_size,
        root=head.root,
        entries=entries,
        names=names,
    )


def _story(conn: Connection, lot: str, cap: int) -> tuple[set[str], set[str]] | None:
    """The ids of the entries that tell the story of ``lot`` (at most ``cap`` lots of its
    lineage), and the contracts its handoffs name; None if there is no such lot."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_STORY_POSTGRESQL, {"lot": lot, "cap": cap}).all()
        lots = {r.key: r.a for r in rows if r.kind == "lot"}
        moves = [(r.key, r.a, r.b) for r in rows if r.kind == "handoff"]
        consumer = next((r.key for r in rows if r.kind == "consumer"), None)
        attested = {r.key for r in rows if r.kind == "attestation"}
    else:
        lots = {r.lot: r.created_by for r in conn.execute(_LINEAGE_SQLITE, {"lot": lot, "cap": cap})}
        if lot not in lots:
            return None
        consumer = conn.execute(_CONSUMER, {"lot": lot}).scalar()
        moves = [(r.handoff, r.closed_by, r.contract) for size, params in chunks(sorted(lots)) for r in conn.execute(_moves_query(size), params)]
        attested = {r.id for r in _in(conn, t.attestations, "subject", set(lots) | set(lots.values()), ("id",))}
    if lot not in lots:
        return None
    wanted = set(lots.values()) | attested
    if consumer is not None:
        wanted.add(consumer)
    contracts: set[str] = set()
    for handoff, closed_by, contract in moves:
        wanted.add(handoff)
        if closed_by is not None:
            wanted.add(closed_by)
        if contract is not None:
            contracts.add(contract)
    return wanted, contracts


def _commercial(conn: Connection, viewer: Viewer, contracts: set[str]) -> set[str]:
    """The contracts named by the story's handoffs and the payments under them, those the
    viewer may see (PROTOCOL §6: its parties, auditors and admins)."""
    found = {r.entry: r.idx for r in _in(conn, t.contracts, "id", contracts, ("entry", "idx"))}
    found.update({r.id: r.idx for r in _in(conn, t.payments, "contract", contracts, ("id", "idx"))})
    if viewer.sees_all:
        return set(found)
    positions = sorted(set(found.values()))
    visible: set[int] = set()
    if positions and conn.dialect.name == "postgresql":
        visible.update(conn.scalars(_VISIBLE_POSTGRESQL, {"who": viewer.id, "keys": positions}))
    else:
        for size, params in chunks(positions):
            visible.update(conn.scalars(_visible_query(size), {"who": viewer.id, **params}))
    return {entry for entry, idx in found.items() if idx in visible}


def _union(plans: Iterable[Sequence[Sequence[NodeId]]]) -> set[NodeId]:
    needed: set[NodeId] = set()
    for plan in plans:
        needed |= plan_nodes(plan)
    return needed


_NAMING = ("author", "from", "to", "buyer", "seller", "payer", "payee")


def _named(envelopes: Iterable[Any]) -> set[str]:
    return {str(env["payload"][k]) for env in envelopes for k in _NAMING if k in env["payload"]}
