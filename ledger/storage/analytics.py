"""Reading the facts projection: the feed, the exports and the KPIs (docs/analytics.md).

Every read takes a ``viewer``: None for auditors and admins (every fact), else a participant,
who gets only the facts whose every named entry they may see (PROTOCOL §6, through
``entry_parties``). KPIs are counted, summed and averaged in SQL, grouped by the dimensions
asked for; medians and 90th percentiles are taken in Python from the sorted values.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select

from ..facts import KINDS, Fact
from . import schema as t
from .facts import fact_from_row, visible_to

__all__ = ["DIMENSIONS", "Cursor", "feed", "export_rows", "kpis", "percentile"]

# What KPIs may be grouped by; ``month`` is the fact's day, YYYY-MM.
DIMENSIONS = ("customer", "supplier", "region", "product", "month")


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in the feed: after every fact at log index < ``index``, and those of
    ``index`` up to ``seq`` (``seq`` None: all of ``index``'s)."""

    index: int
    seq: int | None = None

    def __str__(self) -> str:
        return str(self.index) if self.seq is None else f"{self.index}.{self.seq}"


def _where(table: Any, *, viewer: str | None, first: date | None, last: date | None) -> list[Any]:
    clauses = []
    if viewer is not None:
        clauses.append(visible_to(table, viewer))
    if first is not None:
        clauses.append(table.c.day >= first.isoformat())
    if last is not None:
        clauses.append(table.c.day <= last.isoformat())
    return clauses


def feed(
    conn: Connection, *, after: Cursor | None, limit: int, viewer: str | None, kinds: Sequence[str] = KINDS
) -> list[Fact]:
    """Up to ``limit`` facts after ``after``, in log order (index, then seq), of ``kinds``."""
    pages = []
    for kind in kinds:
        table = t.fact_tables[kind]
        q = select(table).where(*_where(table, viewer=viewer, first=None, last=None))
        if after is not None:
            if after.seq is None:
                q = q.where(table.c.idx > after.index)
            else:
                q = q.where(or_(table.c.idx > after.index, and_(table.c.idx == after.index, table.c.seq > after.seq)))
        q = q.order_by(table.c.idx, table.c.seq).limit(limit)
        pages.append([fact_from_row(kind, r) for r in conn.execute(q)])
    merged = heapq.merge(*pages, key=lambda f: (f.index, f.seq))
    return [f for _, f in zip(range(limit), merged)]


def export_rows(
    conn: Connection, kind: str, *, first: date | None, last: date | None, viewer: str | None
) -> Iterator[Fact]:
    """Every fact of ``kind`` with ``first <= day <= last``, in log order, lazily."""
    table = t.fact_tables[kind]
    q = select(table).where(*_where(table, viewer=viewer, first=first, last=last)).order_by(table.c.idx, table.c.seq)
    # Closed even when the reader stops early (a client that goes away mid-download): a
    # PostgreSQL server-side cursor must not outlive its result.
    with conn.execute(q.execution_options(yield_per=2000)) as result:
        for row in result:
            yield fact_from_row(kind, row)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted ``values`` by linear interpolation between the
    closest ranks (numpy's default, ``statistics.quantiles(method="inclusive")``)."""
    if not values:
        return None
    h = (len(values) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (h - lo) * (values[hi] - values[lo])


def _dims(table: Any, group_by: Sequence[str]) -> list[Any]:
    return [func.substr(table.c.day, 1, 7).label("month") if d == "month" else table.c[d].label(d) for d in group_by]


def _key(row: Any, group_by: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row._mapping[d] for d in group_by)


def _grouped(conn: Connection, kind: str, group_by: Sequence[str], cols: Sequence[Any], where: Sequence[Any]) -> dict[tuple[Any, ...], Any]:
    table = t.fact_tables[kind]
    dims = _dims(table, group_by)
    q = select(*dims, *cols).select_from(table).where(*where)
    if dims:
        q = q.group_by(*dims)
    return {_key(r, group_by): r for r in conn.execute(q)}


def _values(conn: Connection, kind: str, group_by: Sequence[str], value: Any, where: Sequence[Any]) -> dict[tuple[Any, ...], list[float]]:
    table = t.fact_tables[kind]
    q = select(*_dims(table, group_by), value.label("v")).select_from(table).where(*where, value.is_not(None)).order_by(value)
    out: dict[tuple[Any, ...], list[float]] = {}
    for r in conn.execute(q):
        out.setdefault(_key(r, group_by), []).append(float(r.v))
    return out


def _ratio(num: Any, den: Any) -> float | None:
    return float(num) / float(den) if den else None


def kpis(
    conn: Connection, *, group_by: Sequence[str], first: date | None, last: date | None, viewer: str | None
) -> list[dict[str, Any]]:
    """One row of figures per group (every dimension in ``group_by``), sorted by group:

    shipments (count, on-time rate over those under a contract, rejected count, median and
    90th percentile of transit hours over those closed by a receipt), deliveries (lots,
    quantity, certified-origin share of the quantity), payments (count, mean and median days
    to pay), contracts closed (count, mean fulfilment)."""
    s, d, p, c = (t.fact_tables[k] for k in ("shipment", "delivery", "payment", "contract"))
    w = {k: _where(t.fact_tables[k], viewer=viewer, first=first, last=last) for k in ("shipment", "delivery", "payment", "contract")}
    on_time = s.c.on_time.is_(True)
    ship = _grouped(conn, "shipment", group_by, [
        func.count().label("n"),
        func.count(s.c.on_time).label("with_deadline"),
        func.sum(case((on_time, 1), else_=0)).label("on_time"),
        func.sum(case((s.c.status == "rejected", 1), else_=0)).label("rejected"),
    ], w["shipment"])
    transit = _values(conn, "shipment", group_by, case((s.c.receipt.is_not(None), s.c.transit_hours)), w["shipment"])
    deliv = _grouped(conn, "delivery", group_by, [
        func.count().label("n"),
        func.sum(d.c.quantity).label("quantity"),
        func.sum(d.c.quantity * d.c.certified).label("certified"),
    ], w["delivery"])
    pay = _grouped(conn, "payment", group_by, [
        func.count().label("n"),
        func.avg(p.c.days_to_pay).label("mean"),
    ], w["payment"])
    days = _values(conn, "payment", group_by, p.c.days_to_pay, w["payment"])
    con = _grouped(conn, "contract", group_by, [func.count().label("n"), func.avg(c.c.fulfilment).label("fulfilment")], w["contract"])
    out = []
    keys = set(ship) | set(deliv) | set(pay) | set(con)
    for key in sorted(keys, key=lambda k: tuple((v is None, v or "") for v in k)):
        sr, dr, pr, cr = ship.get(key), deliv.get(key), pay.get(key), con.get(key)
        tv, dv = transit.get(key, []), days.get(key, [])
        out.append({
            "group": dict(zip(group_by, key)),
            "shipments": sr.n if sr else 0,
            "on_time_rate": _ratio(sr.on_time, sr.with_deadline) if sr else None,
            "rejected": int(sr.rejected or 0) if sr else 0,
            "transit_hours_median": percentile(tv, 0.5),
            "transit_hours_p90": percentile(tv, 0.9),
            "delivered_lots": dr.n if dr else 0,
            "delivered_quantity": float(dr.quantity or 0) if dr else 0.0,
            "certified_share": _ratio(dr.certified, dr.quantity) if dr else None,
            "payments": pr.n if pr else 0,
            "days_to_pay_mean": float(pr.mean) if pr and pr.mean is not None else None,
            "days_to_pay_median": percentile(dv, 0.5),
            "contracts_closed": cr.n if cr else 0,
            "fulfilment_mean": float(cr.fulfilment) if cr and cr.fulfilment is not None else None,
        })
    return out
