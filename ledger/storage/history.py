"""Which entries make a lot's history, read from the supply-chain projection.

A lot's history is the lot and its inputs back to their origins (``lot_lineage``), and for each
of those lots the entry that made it, the transform that consumed it, the handoffs that moved
it and the receipts that closed them. Every lookup goes through an index except the handoffs',
whose lots are a JSON list: those are matched with ``LIKE`` on the quoted lot id, which the
history's size bounds (:data:`MAX_LOTS` lots).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, or_, select

from ..errors import HistoryTooLarge
from . import schema as t
from .statements import chunks, select_in
from .store import EntryRow

__all__ = ["MAX_LOTS", "MAX_ENTRIES", "HistoryRow", "lot_history"]

MAX_LOTS = 5_000
MAX_ENTRIES = 10_000
_LIKE_PER_QUERY = 64


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A sealed entry of the history and the time of the block that sealed it."""

    entry: EntryRow
    block_time: str


def _lineage(conn: Connection, lot: str) -> tuple[list[str], set[str]]:
    """The lot and its ancestors (breadth first), and the transforms that made them."""
    lots, seen, entries = [lot], {lot}, set()
    frontier = [lot]
    while frontier:
        parents: list[str] = []
        for size, params in chunks(frontier):
            for row in conn.execute(select_in(t.lot_lineage, "child", size), params):
                entries.add(row.entry)
                if row.parent not in seen:
                    seen.add(row.parent)
                    parents.append(row.parent)
        lots.extend(parents)
        if len(lots) > MAX_LOTS:
            raise HistoryTooLarge(
                f"lot {lot} descends from more than {MAX_LOTS} lots; export one of its inputs instead",
                lot=lot,
                limit=MAX_LOTS,
            )
        frontier = parents
    return lots, entries


def _like(lot: str) -> str:
    # The lots column is a JSON list of strings; a lot id (PROTOCOL §1) needs no JSON escape,
    # and of LIKE's wildcards only "_" can occur in one.
    return '%"' + lot.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'


def _handoffs(conn: Connection, lots: Sequence[str]) -> set[str]:
    """Ids of the handoffs that moved any of ``lots`` and of the entries that closed them."""
    found: set[str] = set()
    for i in range(0, len(lots), _LIKE_PER_QUERY):
        batch = lots[i : i + _LIKE_PER_QUERY]
        query = select(t.handoffs.c.id, t.handoffs.c.lots, t.handoffs.c.closed_by).where(
            or_(*(t.handoffs.c.lots.like(_like(lot), escape="\\") for lot in batch))
        )
        wanted = set(batch)
        for row in conn.execute(query):
            # LIKE only narrows; the parsed list decides.
            if wanted.isdisjoint(json.loads(row.lots)):
                continue
            found.add(row.id)
            if row.closed_by:
                found.add(row.closed_by)
    return found


def _select_all(conn: Connection, table: Any, key: str, values: Iterable[Any], columns: tuple[str, ...] = ()) -> list[Any]:
    rows: list[Any] = []
    ordered = sorted(set(values))
    for size, params in chunks(ordered):
        rows.extend(conn.execute(select_in(table, key, size, columns), params))
    return rows


def lot_history(conn: Connection, lot: str, *, visible_to: str | None = None) -> list[HistoryRow] | None:
    """The sealed entries of ``lot``'s history in log order, or None if there is no such lot.

    With ``visible_to``, only the entries that participant is party to (PROTOCOL §6; auditors
    and admins pass None). Raises HistoryTooLarge past :data:`MAX_LOTS` lots or
    :data:`MAX_ENTRIES` entries.
    """
    if not _select_all(conn, t.lots, "lot", [lot], ("lot",)):
        return None
    lots, ids = _lineage(conn, lot)
    for row in _select_all(conn, t.lot_lineage, "parent", lots, ("entry",)):
        ids.add(row.entry)  # the transforms that consumed them
    ids |= _handoffs(conn, lots)
    created = {row.created_index for row in _select_all(conn, t.lots, "lot", lots, ("created_index",))}
    rows = {r.idx: r for r in _select_all(conn, t.entries, "id", ids)}
    rows.update((r.idx, r) for r in _select_all(conn, t.entries, "idx", created - set(rows)))
    if len(rows) > MAX_ENTRIES:
        raise HistoryTooLarge(
            f"the history of lot {lot} has more than {MAX_ENTRIES} entries; export one of its inputs instead",
            lot=lot,
            limit=MAX_ENTRIES,
        )
    indexes = sorted(rows)
    if visible_to is not None and indexes:
        seen = {
            r.idx
            for r in _select_all(conn, t.entry_parties, "idx", indexes, ("idx", "participant"))
            if r.participant == visible_to
        }
        indexes = [i for i in indexes if i in seen]
    heights = {rows[i].height for i in indexes}
    times = {r.height: r.time for r in _select_all(conn, t.blocks, "height", heights, ("height", "time"))}
    return [
        HistoryRow(EntryRow(**rows[i]._mapping), times[rows[i].height]) for i in indexes
    ]
