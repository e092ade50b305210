"""What the public product pages (issue #5) read and write beyond a lot's provenance view: the
product of a lot, for its label's QR code, and consumer engagement (issue #6), the views of the
pages counted per UTC day and lot with the lot's product and origin labels, read back as
aggregates for members.

One upsert per view (``INSERT ... ON CONFLICT DO UPDATE SET views = views + 1``, the SQLite
and PostgreSQL dialect forms), so concurrent views in several workers never lose a count and
never need a read first. Nothing about the viewer is a parameter of any function here: the
table cannot hold what it is never given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import schema as t
from .store import Store

__all__ = ["ViewCount", "lot_product", "count_view", "read_counts", "total_views"]

_WIDTH = 200  # every label column is String(200)


@dataclass(frozen=True, slots=True)
class ViewCount:
    day: str
    lot: str
    product: str
    country: str
    region: str
    views: int

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day, "lot": self.lot, "product": self.product, "country": self.country,
            "region": self.region, "views": self.views,
        }


def lot_product(store: Store, lot: str) -> str | None:
    """The product of ``lot`` as the entry that made it names it; None if there is no such lot."""
    with store.read() as conn:
        row = conn.execute(select(t.lots.c.product).where(t.lots.c.lot == lot)).first()
    return None if row is None else str(row.product)


def _label(value: str) -> str:
    # An origin label joins many regions; the count matters more than the label's tail.
    return value if len(value) <= _WIDTH else value[: _WIDTH - 1] + "…"


def count_view(store: Store, *, day: date, lot: str, product: str, country: str, region: str) -> None:
    """Add one view of ``lot``'s page on ``day`` (UTC), in one short write transaction.

    The labels are stored with the first view of the day; a lot's product and origins never
    change once sealed, so later views only add to ``views``."""
    c = t.engagement_daily.c
    row = {
        "day": day.isoformat(), "lot": lot, "product": _label(product), "country": _label(country),
        "region": _label(region), "views": 1,
    }
    insert = pg_insert(t.engagement_daily) if store.dialect == "postgresql" else sqlite_insert(t.engagement_daily)
    statement = insert.values(**row).on_conflict_do_update(
        index_elements=[c.day, c.lot], set_={"views": c.views + 1}
    )
    with store.write() as conn:
        conn.execute(statement)


def _where(start: date, end: date, lot: str | None) -> list[Any]:
    c = t.engagement_daily.c
    clauses: list[Any] = [c.day >= start.isoformat(), c.day <= end.isoformat()]
    if lot is not None:
        clauses.append(c.lot == lot)
    return clauses


def read_counts(
    store: Store, *, start: date, end: date, lot: str | None, after: tuple[str, str] | None, limit: int
) -> list[ViewCount]:
    """The counts of days ``start`` to ``end`` (inclusive), of one lot or all, ordered by day
    then lot, the first ``limit`` after the (day, lot) ``after``."""
    c = t.engagement_daily.c
    query = select(t.engagement_daily).where(*_where(start, end, lot))
    if after is not None:
        query = query.where(tuple_(c.day, c.lot) > tuple_(*after))
    query = query.order_by(c.day, c.lot).limit(limit)
    with store.read() as conn:
        return [
            ViewCount(day=r.day, lot=r.lot, product=r.product, country=r.country, region=r.region, views=int(r.views))
            for r in conn.execute(query)
        ]


def total_views(store: Store, *, start: date, end: date, lot: str | None) -> int:
    """The sum of the views of days ``start`` to ``end``, of one lot or all."""
    query = select(func.coalesce(func.sum(t.engagement_daily.c.views), 0)).where(*_where(start, end, lot))
    with store.read() as conn:
        return int(conn.execute(query).scalar_one())
