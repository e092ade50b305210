"""Consumer engagement figures (issue #6): views of the public product pages, for members.

Aggregates only: views per UTC day and lot, with the lot's product and origin labels. The
table behind them has no column for anything about a viewer (docs/privacy.md).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, jsonify

from ledger.errors import InvalidPage
from ledger.storage.public import read_counts, total_views

from ..auth import member_required
from ..openapi import operation
from ..schemas.engagement import EngagementQuerySchema, EngagementSchema
from ..services import load_query, services

bp = Blueprint("engagement", __name__)

DEFAULT_DAYS = 30


@bp.get("/v1/analytics/engagement")
@operation(
    summary="Views of the public product pages per day and lot (aggregate counts)",
    tag="analytics",
    query=EngagementQuerySchema,
    responses={200: EngagementSchema},
    member=True,
)
@member_required
def engagement() -> Response:
    """Counts of views of `/p/{lot}` and `/01/{gtin}/10/{lot}` per UTC day and lot, with the
    lot's product and origin countries and regions, days ``from`` to ``to`` inclusive (default:
    the last 30 days), optionally of one ``lot``; ordered by day then lot, ``limit`` rows a
    page (default 1000), ``next`` the cursor for the following page. ``total_views`` sums the
    whole range. Any member may read them: they are counts, never a viewer's data."""
    svc = services()
    args = load_query(EngagementQuerySchema)
    if args["limit"] > svc.settings.page_max:
        raise InvalidPage(f"limit must be at most {svc.settings.page_max}", limit=svc.settings.page_max)
    end = args["to"] or svc.sealer.clock.now().date()
    start = args["from_"] or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidPage("from must not be after to", fields=["from", "to"])
    after = None
    if args["after"] is not None:
        after = (args["after"][:10], args["after"][11:])
    rows = read_counts(svc.store, start=start, end=end, lot=args["lot"], after=after, limit=args["limit"])
    last = rows[-1] if len(rows) == args["limit"] else None
    return jsonify({
        "from": start.isoformat(),
        "to": end.isoformat(),
        "lot": args["lot"],
        "total_views": total_views(svc.store, start=start, end=end, lot=args["lot"]),
        "counts": [r.to_json() for r in rows],
        "next": f"{last.day}/{last.lot}" if last is not None else None,
    })
