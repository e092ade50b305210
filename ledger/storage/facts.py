"""Storing the facts projection (:mod:`ledger.facts`): writing a block's facts and the
derivation's memory in the sealing transaction, loading that memory back, and reading facts
as rows for the feed, the exports and ``filiera verify``'s comparison.

Facts are written in the same transaction as the block that seals their entries (never in a
later one, and never through a queue), so a crash at any point leaves either the block and its
facts or neither: none is lost or written twice, and the projection never lags the log.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, exists, or_, select

from ..facts import COLUMNS, Fact
from ..facts_state import ContractProgress, FactsState, LotTrace
from . import schema as t
from .projection import existing_keys, iter_rows
from .statements import chunks, select_in

__all__ = [
    "DbFactsSource",
    "write_facts",
    "flush_state",
    "fact_from_row",
    "facts_in_range",
    "stored_traces",
    "stored_progress",
    "clear_facts",
    "visible_to",
    "write_state",
    "trace_row",
    "progress_row",
]


def _fact_row(f: Fact) -> tuple[Any, ...]:
    """The row's values in the table's column order (see :func:`_insert_sql`)."""
    named = [i for _, i in f.entries] + [None, None]
    # Entry ids are hex: no JSON escaping needed.
    ids = '["' + '","'.join(e for e, _ in f.entries) + '"]'
    return (f.index, f.seq, f.tree_size, ids, named[0], named[1], named[2], f.day, *f.values.values())


_COMMON = ("idx", "seq", "tree_size", "entries", "entry_1", "entry_2", "entry_3", "day")


@functools.lru_cache(maxsize=32)
def _insert_sql(kind: str, dialect: str) -> str:
    """The INSERT of a kind's table with positional parameters in the driver's style. Sealing
    writes about one fact per entry; handing the driver tuples directly costs a fraction of
    building SQLAlchemy parameters for each of the ~25 columns of every row."""
    table = t.fact_tables[kind]
    cols = [*_COMMON, *COLUMNS[kind]]
    assert [c.name for c in table.columns] == cols
    mark = "?" if dialect == "sqlite" else "%s"
    return f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"


def write_facts(conn: Connection, facts: Sequence[Fact]) -> None:
    """Insert facts, one statement per kind."""
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for f in facts:
        by_kind.setdefault(f.kind, []).append(_fact_row(f))
    dialect = conn.dialect.name
    for kind, rows in by_kind.items():
        conn.exec_driver_sql(_insert_sql(kind, dialect), rows)


def trace_row(tr: LotTrace) -> dict[str, Any]:
    return {
        "lot": tr.lot, "created_by": tr.created_by, "custodian": tr.custodian,
        "arrived_at": tr.arrived_at, "arrival": tr.arrival, "arrival_index": tr.arrival_index,
        "hops": tr.hops, "origins": json.dumps([list(o) for o in tr.origins]), "certified": tr.certified,
    }


def _trace(row: Any) -> LotTrace:
    return LotTrace(
        lot=row.lot, created_by=row.created_by, custodian=row.custodian, arrived_at=row.arrived_at,
        arrival=row.arrival, arrival_index=row.arrival_index, hops=row.hops,
        origins=tuple((str(r), float(s)) for r, s in json.loads(row.origins)), certified=float(row.certified),
    )


def progress_row(p: ContractProgress) -> dict[str, Any]:
    return {
        "contract": p.contract, "delivered": p.delivered, "deliveries": p.deliveries,
        "received_at": p.received_at, "receipt": p.receipt, "receipt_index": p.receipt_index,
        "region": p.region,
    }


def _progress(row: Any) -> ContractProgress:
    return ContractProgress(
        contract=row.contract, delivered=row.delivered, deliveries=row.deliveries,
        received_at=row.received_at, receipt=row.receipt, receipt_index=row.receipt_index, region=row.region,
    )


_UPDATE_TRACE = t.fact_lot_traces.update().where(t.fact_lot_traces.c.lot == bindparam("_key"))
_UPDATE_PROGRESS = t.fact_contract_progress.update().where(t.fact_contract_progress.c.contract == bindparam("_key"))


def _upsert(conn: Connection, table: Table, update: Any, key: str, rows: list[dict[str, Any]], new: frozenset[str]) -> None:
    if not rows:
        return
    unsure = [r[key] for r in rows if r[key] not in new]
    existing = existing_keys(conn, table, key, unsure) if unsure else set()
    inserts = [r for r in rows if r[key] not in existing]
    updates = [{**{k: v for k, v in r.items() if k != key}, "_key": r[key]} for r in rows if r[key] in existing]
    if inserts:
        conn.execute(table.insert(), inserts)
    if updates:
        conn.execute(update, updates)


def flush_state(conn: Connection, state: FactsState) -> None:
    """Write the traces and contract progress that changed, then mark them written."""
    _upsert(conn, t.fact_lot_traces, _UPDATE_TRACE, "lot", [trace_row(x) for x in state.changed_traces()], state.new_traces())
    _upsert(
        conn, t.fact_contract_progress, _UPDATE_PROGRESS, "contract",
        [progress_row(x) for x in state.changed_progress()], state.new_progress(),
    )
    state.clear_changes()


class DbFactsSource:
    """Loads traces and progress inside the caller's transaction (the sealing one)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def load_traces(self, lots: Sequence[str]) -> dict[str, LotTrace]:
        found: dict[str, LotTrace] = {}
        for size, params in chunks(list(lots)):
            for r in self.conn.execute(select_in(t.fact_lot_traces, "lot", size), params):
                found[r.lot] = _trace(r)
        return found

    def load_traces_created_by(self, entries: Sequence[str]) -> dict[str, LotTrace]:
        found: dict[str, LotTrace] = {}
        for size, params in chunks(list(entries)):
            for r in self.conn.execute(select_in(t.fact_lot_traces, "created_by", size), params):
                found[r.lot] = _trace(r)
        return found

    def load_progress(self, contracts: Sequence[str]) -> dict[str, ContractProgress]:
        found: dict[str, ContractProgress] = {}
        for size, params in chunks(list(contracts)):
            for r in self.conn.execute(select_in(t.fact_contract_progress, "contract", size), params):
                found[r.contract] = _progress(r)
        return found


# --- reading ------------------------------------------------------------------------------


def fact_from_row(kind: str, row: Any) -> Fact:
    """A stored row as a Fact."""
    m = row._mapping
    ids = json.loads(row.entries)
    indexes = [row.entry_1, row.entry_2, row.entry_3]
    values = {c: m[c] for c in COLUMNS[kind]}
    for c, kind_of in COLUMNS[kind].items():
        if kind_of == "bool" and values[c] is not None:
            values[c] = bool(values[c])
    entries = tuple(zip(ids, indexes)) if len(ids) <= 3 else tuple((e, -1) for e in ids)
    return Fact(kind, row.idx, row.seq, row.tree_size, entries, row.day, values)


def visible_to(table: Table, participant: str) -> Any:
    """A WHERE clause: every entry the fact names is visible to ``participant`` (PROTOCOL §6:
    they author, sign or are named in it, as ``entry_parties`` records at sealing)."""
    ep = t.entry_parties

    def sees(col: Any) -> Any:
        return exists().where(ep.c.participant == participant, ep.c.idx == col)

    c = table.c
    return and_(sees(c.entry_1), or_(c.entry_2.is_(None), sees(c.entry_2)), or_(c.entry_3.is_(None), sees(c.entry_3)))


def facts_in_range(conn: Connection, kind: str, start: int, end: int) -> list[Fact]:
    """The stored facts of ``kind`` at log positions [start, end), in order."""
    table = t.fact_tables[kind]
    rows = conn.execute(select(table).where(table.c.idx >= start, table.c.idx < end).order_by(table.c.idx, table.c.seq))
    return [fact_from_row(kind, r) for r in rows]


def stored_traces(conn: Connection) -> Generator[LotTrace, None, None]:
    """Every stored lot trace, streamed in code-point order of the lot."""
    with contextlib.closing(iter_rows(conn, t.fact_lot_traces, t.fact_lot_traces.c.lot)) as rows:
        for r in rows:
            yield _trace(r)


def stored_progress(conn: Connection) -> Generator[ContractProgress, None, None]:
    """Every stored contract progress record, streamed in code-point order of the contract."""
    with contextlib.closing(iter_rows(conn, t.fact_contract_progress, t.fact_contract_progress.c.contract)) as rows:
        for r in rows:
            yield _progress(r)


def clear_facts(conn: Connection) -> None:
    """Delete the whole projection (``filiera facts rebuild`` writes it again)."""
    for table in (*t.fact_tables.values(), t.fact_lot_traces, t.fact_contract_progress):
        conn.execute(delete(table))


def write_state(conn: Connection, traces: Iterable[LotTrace], progress: Iterable[ContractProgress]) -> None:
    """Insert traces and progress into emptied tables (rebuild), in chunks."""
    for table, rows in (
        (t.fact_lot_traces, [trace_row(x) for x in traces]),
        (t.fact_contract_progress, [progress_row(x) for x in progress]),
    ):
        for i in range(0, len(rows), 2000):
            conn.execute(table.insert(), rows[i : i + 2000])

