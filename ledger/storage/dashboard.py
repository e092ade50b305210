"""The figures of a member's dashboard (docs/analytics.md, "The dashboard"), read from the
facts projection and the engagement counts, over what the member may see.

On-time trend and certified share per month come from the KPIs (``analytics.kpis`` grouped
by month); the transit-time histogram and the origin mix from the member's shipment and
delivery facts; engagement from ``engagement_daily`` (aggregate counts any member may read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from . import schema as t
from .analytics import kpis
from .facts import visible_to

__all__ = ["TRANSIT_BINS", "Month", "Bin", "Share", "Day", "Figures", "figures"]

# Transit-time histogram bins, hours [low, high); the last is open.
TRANSIT_BINS: tuple[tuple[float, float | None], ...] = (
    (0, 6), (6, 12), (12, 24), (24, 48), (48, 96), (96, None),
)


@dataclass(frozen=True, slots=True)
class Month:
    month: str
    shipments: int
    on_time_rate: float | None
    certified_share: float | None
    delivered_quantity: float


@dataclass(frozen=True, slots=True)
class Bin:
    low: float
    high: float | None
    count: int

    @property
    def label(self) -> str:
        return f"{self.low:g}–{self.high:g} h" if self.high is not None else f"{self.low:g} h and more"


@dataclass(frozen=True, slots=True)
class Share:
    name: str
    share: float


@dataclass(frozen=True, slots=True)
class Day:
    day: str
    views: int


@dataclass(frozen=True, slots=True)
class Figures:
    months: list[Month]
    transit: list[Bin]
    transit_median: float | None
    transit_p90: float | None
    on_time_rate: float | None
    shipments: int
    origins: list[Share]
    certified_share: float | None
    delivered_quantity: float
    engagement: list[Day]
    engagement_total: int


def _where(table: Any, viewer: str | None) -> list[Any]:
    return [] if viewer is None else [visible_to(table, viewer)]


def figures(conn: Connection, *, viewer: str | None, today: date, engagement_days: int = 30) -> Figures:
    """Every figure of the dashboard for ``viewer`` (None: auditors and admins, every fact)."""
    months = [
        Month(
            month=g["group"]["month"], shipments=g["shipments"], on_time_rate=g["on_time_rate"],
            certified_share=g["certified_share"], delivered_quantity=g["delivered_quantity"],
        )
        for g in kpis(conn, group_by=["month"], first=None, last=None, viewer=viewer)
    ]
    overall = kpis(conn, group_by=[], first=None, last=None, viewer=viewer)
    total = overall[0] if overall else {}

    s = t.fact_tables["shipment"]
    hours = [float(r.transit_hours) for r in conn.execute(
        select(s.c.transit_hours).where(s.c.receipt.is_not(None), s.c.transit_hours.is_not(None), *_where(s, viewer))
    )]
    bins = [
        Bin(low, high, sum(1 for h in hours if h >= low and (high is None or h < high)))
        for low, high in TRANSIT_BINS
    ]

    d = t.fact_tables["delivery"]
    weights: dict[str, float] = {}
    quantity = 0.0
    for r in conn.execute(select(d.c.quantity, d.c.origins).where(*_where(d, viewer))):
        q = float(r.quantity or 0)
        quantity += q
        for region, share in json.loads(r.origins or "{}").items():
            weights[region] = weights.get(region, 0.0) + q * float(share)
    origins = sorted(
        (Share(region, w / quantity) for region, w in weights.items() if quantity),
        key=lambda o: (-o.share, o.name),
    )

    e = t.engagement_daily.c
    start = today - timedelta(days=engagement_days - 1)
    counts = dict(conn.execute(
        select(e.day, func.sum(e.views)).where(e.day >= start.isoformat(), e.day <= today.isoformat()).group_by(e.day)
    ).all())
    days = [
        Day(day.isoformat(), int(counts.get(day.isoformat(), 0)))
        for day in (start + timedelta(days=i) for i in range(engagement_days))
    ]
    return Figures(
        months=months, transit=bins, transit_median=total.get("transit_hours_median"),
        transit_p90=total.get("transit_hours_p90"), on_time_rate=total.get("on_time_rate"),
        shipments=int(total.get("shipments", 0)), origins=origins,
        certified_share=total.get("certified_share"), delivered_quantity=float(total.get("delivered_quantity", 0.0)),
        engagement=days, engagement_total=sum(x.views for x in days),
    )
