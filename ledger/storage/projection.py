"""The supply-chain projection: reading and writing lots, handoffs, contracts, payments and
attestations, in the sealing transaction. Derived data: ``filiera verify`` rebuilds it from
the log alone and compares."""

from __future__ import annotations

import functools
import json
from collections.abc import Generator, Iterable, Mapping, Sequence, Set
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, select

from ..state import (
    AttestationRecord,
    ContractRecord,
    HandoffRecord,
    LotRecord,
    PaymentRecord,
)
from . import schema as t
from .statements import chunks, select_in

__all__ = ["load", "flush", "write_parties", "existing_keys", "PROJECTED_KINDS", "iter_records", "iter_rows", "iter_lineage"]


def _lot_row(r: LotRecord) -> dict[str, Any]:
    return {
        "lot": r.lot, "product": r.product, "quantity": r.quantity, "unit": r.unit,
        "custodian": r.custodian, "status": r.status, "created_by": r.created_by,
        "created_index": r.created_index, "parents": json.dumps(list(r.parents)),
        "handoff": r.handoff, "updated_index": r.updated_index,
    }


def _lot(row: Any) -> LotRecord:
    return LotRecord(
        lot=row.lot, product=row.product, quantity=row.quantity, unit=row.unit,
        custodian=row.custodian, status=row.status, created_by=row.created_by,
        created_index=row.created_index, parents=tuple(json.loads(row.parents)),
        handoff=row.handoff, updated_index=row.updated_index,
    )


def _handoff_row(r: HandoffRecord) -> dict[str, Any]:
    return {
        "id": r.id, "sender": r.sender, "recipient": r.recipient, "lots": json.dumps(list(r.lots)),
        "status": r.status, "dispatched_at": r.dispatched_at, "idx": r.index,
        "contract": r.contract, "received_at": r.received_at, "closed_by": r.closed_by,
    }


def _handoff(row: Any) -> HandoffRecord:
    return HandoffRecord(
        id=row.id, sender=row.sender, recipient=row.recipient, lots=tuple(json.loads(row.lots)),
        status=row.status, dispatched_at=row.dispatched_at, index=row.idx, contract=row.contract,
        received_at=row.received_at, closed_by=row.closed_by,
    )


def _contract_row(r: ContractRecord) -> dict[str, Any]:
    return {
        "id": r.id, "buyer": r.buyer, "seller": r.seller, "terms": json.dumps(r.terms, sort_keys=True),
        "status": r.status, "entry": r.entry, "idx": r.index, "closed_index": r.closed_index,
    }


def _contract(row: Any) -> ContractRecord:
    return ContractRecord(
        id=row.id, buyer=row.buyer, seller=row.seller, terms=json.loads(row.terms),
        status=row.status, entry=row.entry, index=row.idx, closed_index=row.closed_index,
    )


def _payment_row(r: PaymentRecord) -> dict[str, Any]:
    return {
        "id": r.id, "payer": r.payer, "payee": r.payee, "amount": r.amount, "currency": r.currency,
        "paid_at": r.paid_at, "idx": r.index, "contract": r.contract, "confirmed_index": r.confirmed_index,
    }


def _payment(row: Any) -> PaymentRecord:
    return PaymentRecord(
        id=row.id, payer=row.payer, payee=row.payee, amount=row.amount, currency=row.currency,
        paid_at=row.paid_at, index=row.idx, contract=row.contract, confirmed_index=row.confirmed_index,
    )


def _attestation_row(r: AttestationRecord) -> dict[str, Any]:
    return {"id": r.id, "author": r.author, "subject": r.subject, "claims": json.dumps(list(r.claims)), "idx": r.index}


def _attestation(row: Any) -> AttestationRecord:
    return AttestationRecord(id=row.id, author=row.author, subject=row.subject, claims=tuple(json.loads(row.claims)), index=row.idx)


# kind -> (table, key column, record -> row, row -> record)
_KINDS: Mapping[str, tuple[Table, str, Any, Any]] = {
    "lot": (t.lots, "lot", _lot_row, _lot),
    "handoff": (t.handoffs, "id", _handoff_row, _handoff),
    "contract": (t.contracts, "id", _contract_row, _contract),
    "payment": (t.payments, "id", _payment_row, _payment),
    "attestation": (t.attestations, "id", _attestation_row, _attestation),
}
PROJECTED_KINDS = tuple(_KINDS)


def load(conn: Connection, kind: str, key: str) -> Any | None:
    to_record = _KINDS[kind][3]
    row = conn.execute(_queries(kind).select, {"key": key}).first()
    return to_record(row) if row else None


def flush(conn: Connection, kind: str, records: Sequence[Any], created: Set[str] = frozenset()) -> None:
    """Write changed records: update the ones that exist, insert the rest. Records whose
    keys are in ``created`` are known to be new."""
    if not records:
        return
    table, col, to_row, _ = _KINDS[kind]
    queries = _queries(kind)
    unsure = [r.ident for r in records if r.ident not in created]
    existing = existing_keys(conn, table, col, unsure) if unsure else set()
    inserts = [to_row(r) for r in records if r.ident not in existing]
    if inserts:
        conn.execute(queries.insert, inserts)
    updates = []
    for r in records:
        if r.ident in existing:
            row = to_row(r)
            row["_key"] = row.pop(col)
            updates.append(row)
    if updates:
        conn.execute(queries.update, updates)
    if kind == "handoff":
        # A handoff is inserted once, when it is sealed; its receipt only updates it.
        moves = [{"lot": lot, "idx": r["idx"], "handoff": r["id"]} for r in inserts for lot in json.loads(r["lots"])]
        if moves:
            conn.execute(_INSERT_LOT_HANDOFFS, moves)
    if kind == "lot":
        edges = [
            {"child": r["lot"], "parent": p, "entry": r["created_by"]}
            for r in inserts
            for p in json.loads(r["parents"])
        ]
        if edges:
            conn.execute(_INSERT_LINEAGE, edges)


def existing_keys(conn: Connection, table: Table, col: str, keys: Sequence[Any]) -> set[Any]:
    """Which of ``keys`` are already in ``table``'s unique column ``col``."""
    found: set[Any] = set()
    for size, params in chunks(keys):
        found.update(conn.scalars(select_in(table, col, size, (col,)), params))
    return found


# Built once per kind and reused (see statements.py).
class _Queries:
    def __init__(self, table: Table, col: str) -> None:
        self.select = select(table).where(table.c[col] == bindparam("key"))
        self.insert = table.insert()
        # Every column of the row is set; the key is bound as "_key" (a bind parameter may
        # not share its name with a column that is being set).
        self.update = table.update().where(table.c[col] == bindparam("_key"))


@functools.lru_cache(maxsize=None)
def _queries(kind: str) -> _Queries:
    table, col, _, _ = _KINDS[kind]
    return _Queries(table, col)


_INSERT_LINEAGE = t.lot_lineage.insert()
_INSERT_LOT_HANDOFFS = t.lot_handoffs.insert()
_INSERT_PARTIES = t.entry_parties.insert()


def write_parties(conn: Connection, rows: Iterable[tuple[str, int]]) -> None:
    values = [{"participant": p, "idx": i} for p, i in rows]
    if values:
        conn.execute(_INSERT_PARTIES, values)


def _code_point_order(conn: Connection, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` sorted as Python sorts text (by code point): SQLite's default BINARY
    collation does; PostgreSQL's database collation may not, its "C" collation does."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def iter_records(conn: Connection, kind: str) -> Generator[Any, None, None]:
    """Every record of a kind, streamed in code-point order of its key (for `filiera
    verify`'s projection check, which merges them with the replayed records)."""
    table, col, _, to_record = _KINDS[kind]
    query = select(table).order_by(_code_point_order(conn, table.c[col]))
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(query)
    try:
        for r in result:
            yield to_record(r)
    finally:
        # A reader that stops at the first difference leaves no server-side cursor open.
        result.close()


def iter_rows(conn: Connection, table: Table, column: ColumnElement[Any]) -> Generator[Any, None, None]:
    """Every row of ``table``, streamed in code-point order of ``column``."""
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(
        select(table).order_by(_code_point_order(conn, column))
    )
    try:
        yield from result
    finally:
        result.close()


def iter_lineage(conn: Connection) -> Generator[tuple[str, str], None, None]:
    """Every stored (child, parent) lineage edge, streamed in code-point order."""
    c = t.lot_lineage.c
    query = select(c.child, c.parent).order_by(_code_point_order(conn, c.child), _code_point_order(conn, c.parent))
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(query)
    try:
        for r in result:
            yield (r.child, r.parent)
    finally:
        result.close()
