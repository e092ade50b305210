"""Analytics over the facts projection (docs/analytics.md): the facts feed, the KPIs and the
fact tables as CSV or Parquet, for members.

Auditors and admins see every fact; other members see the facts whose every named entry they
may see (PROTOCOL §6), so each figure is computed only over data the caller may read.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from ledger.errors import InvalidAnalyticsQuery, InvalidPage
from ledger.facts import KINDS
from ledger.storage.analytics import Cursor, export_rows, feed, kpis

from ..analytics_files import MEDIA_TYPES, csv_lines, parquet_bytes
from ..auth import current_member, member_required
from ..openapi import NDJSON, operation
from ..schemas.analytics import ExportQuerySchema, FactPageSchema, FactsQuerySchema, KpisQuerySchema, KpisSchema
from ..services import load_query, services

__all__ = ["bp"]

bp = Blueprint("analytics", __name__)


def _viewer() -> str | None:
    member = current_member()
    return None if member.sees_all else member.id


def _tree_size() -> int:
    svc = services()
    with svc.store.read() as conn:
        head = svc.store.head(conn)
    return head.tree_size if head else 0


@bp.get("/v1/analytics/facts")
@operation(
    summary="The facts feed, in log order from a cursor",
    tag="analytics",
    query=FactsQuerySchema,
    responses={200: [FactPageSchema, "application/x-ndjson"]},
    headers={"Filiera-Next-Cursor": "cursor for the next page (NDJSON answers)"},
    member=True,
)
@member_required
def facts() -> Response:
    """At most ``limit`` facts after the cursor ``after``, in log order: shipments, dwell times,
    deliveries, contract fulfilment and payments, each naming its entries and the tree size
    it was sealed at. ``next`` is the cursor to pass as ``after`` for the following page (a
    page with no facts: nothing more yet). Cursors are log positions: stable across restarts
    and rebuilds. ``format=ndjson`` (or ``Accept: application/x-ndjson``) answers one fact a
    line. Members see the facts over entries they may see."""
    args = load_query(FactsQuerySchema, InvalidPage)
    svc = services()
    if args["limit"] > svc.settings.page_max:
        raise InvalidPage(f"limit must be at most {svc.settings.page_max}", limit=svc.settings.page_max)
    after = Cursor(*args["after"]) if "after" in args else None
    viewer = _viewer()
    with svc.store.read() as conn:
        head = svc.store.head(conn)
        page = feed(conn, after=after, limit=args["limit"], viewer=viewer, kinds=args.get("kind") or KINDS)
    nxt = page[-1].cursor if page else (str(after) if after is not None else None)
    ndjson = args["format"] == "ndjson" or request.accept_mimetypes.best == NDJSON
    if ndjson:
        body = "".join(json.dumps(f.to_json(), ensure_ascii=False) + "\n" for f in page)
        resp = Response(body, mimetype=NDJSON)
        if nxt is not None:
            resp.headers["Filiera-Next-Cursor"] = nxt
    else:
        resp = jsonify(facts=[f.to_json() for f in page], next=nxt, tree_size=head.tree_size if head else 0)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.get("/v1/analytics/kpis")
@operation(summary="KPIs grouped by customer, supplier, origin region, product or month", tag="analytics", query=KpisQuerySchema, responses={200: KpisSchema}, member=True)
@member_required
def get_kpis() -> Response:
    """Per group (the dimensions of ``group_by``, none for one overall group), over facts
    dated ``from`` to ``to``: on-time rate, rejected receipts, median and 90th percentile of
    transit hours, delivered quantity and its certified-origin share, mean and median days to
    pay, contracts closed and their mean fulfilment. Members' figures cover only the facts
    over entries they may see."""
    args = load_query(KpisQuerySchema, InvalidAnalyticsQuery)
    group_by: list[str] = args.get("group_by") or []
    svc = services()
    with svc.store.read() as conn:
        head = svc.store.head(conn)
        groups = kpis(conn, group_by=group_by, first=args.get("from_"), last=args.get("to"), viewer=_viewer())
    resp = jsonify(group_by=group_by, tree_size=head.tree_size if head else 0, groups=groups)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.get("/v1/analytics/export/<any(shipment, dwell, delivery, contract, payment):table>")
@operation(
    summary="One fact table as CSV or Parquet, with a date range",
    tag="analytics",
    query=ExportQuerySchema,
    path={"table": "string"},
    responses={200: ["text/csv", "application/vnd.apache.parquet"]},
    headers={"Content-Disposition": "attachment; filename=<table>-<from>-<to>.<csv|parquet>"},
    errors=(400, 404),
    member=True,
)
@member_required
def export_table(table: str) -> Response:
    """The facts of ``table`` (shipment, dwell, delivery, contract, payment) dated ``from`` to
    ``to`` (inclusive, default all), in log order: ``format=csv`` (default) or ``parquet``
    (``application/vnd.apache.parquet``; needs the ``analytics`` extra, else 503
    ``parquet_unavailable``). Members get the facts over entries they may see."""
    args = load_query(ExportQuerySchema, InvalidAnalyticsQuery)
    fmt, first, last = args["format"], args.get("from_"), args.get("to")
    viewer = _viewer()
    svc = services()
    name = f"{table}-{first.isoformat() if first else 'start'}-{last.isoformat() if last else 'end'}.{fmt}"
    if fmt == "parquet":
        with svc.store.read() as conn:
            data: Any = parquet_bytes(table, export_rows(conn, table, first=first, last=last, viewer=viewer))
    else:

        def lines() -> Any:
            # One read transaction for the whole file: a consistent snapshot of the table.
            with svc.store.read() as conn:
                yield from csv_lines(table, export_rows(conn, table, first=first, last=last, viewer=viewer))

        data = stream_with_context(lines())
    resp = Response(data, mimetype=MEDIA_TYPES[fmt].split(";")[0])
    if fmt == "csv":
        resp.headers["Content-Type"] = MEDIA_TYPES["csv"]
    resp.headers["Content-Disposition"] = f"attachment; filename={name}"
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
