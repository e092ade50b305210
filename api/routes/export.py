"""``GET /v1/export`` (PROTOCOL §6): the whole ledger, or a range of whole blocks, as an audit
bundle (:mod:`ledger.bundle`, ``filiera-bundle/v1`` NDJSON), streamed.

The export holds every entry, commercial terms included, so only auditors and admins (the
roles that see every entry, PROTOCOL §6) may read it. The range is resolved and checked before
the first byte is sent, so a bad range is a 400 problem, never a stream cut short; the lines
themselves come from :func:`ledger.storage.export.bundle_lines`, a page at a time, so memory
stays bounded whatever the size of the log.
"""

from __future__ import annotations

import itertools
import re

from flask import Blueprint, Response, stream_with_context

from ledger.bundle import MEDIA_TYPE
from ledger.encoding import format_time
from ledger.errors import AuditorsOnly, InvalidExportRange
from ledger.storage.export import bundle_lines, plan_export

from ..auth import current_member, member_required
from ..openapi import NDJSON, operation
from ..schemas.export import ExportQuerySchema
from ..services import load_query, services

__all__ = ["bp", "attachment_name"]

bp = Blueprint("export", __name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def attachment_name(origin: str, start: int, end: int) -> str:
    """``<origin>-<from>-<to>.ndjson``, the origin reduced to characters safe in a file name
    and an HTTP token (an origin may hold ``/``, e.g. ``ledger.example.com/olive-oil``)."""
    return f"{_UNSAFE.sub('_', origin)}-{start}-{end}.ndjson"


@bp.get("/v1/export")
@operation(
    summary="The ledger as an audit bundle (NDJSON), for auditors and admins",
    tag="export",
    query=ExportQuerySchema,
    responses={200: NDJSON},
    headers={
        "Content-Disposition": "attachment; filename=<origin>-<from>-<to>.ndjson (the resolved range)",
        "Filiera-Export-From": "first entry index the bundle holds (the first whole block's)",
        "Filiera-Export-To": "tree size the bundle ends at (its last block's and its checkpoint's)",
    },
    errors=(400, 403),
    member=True,
)
@member_required
def export() -> Response:
    """Whole blocks covering entries [``from``, ``to``) (default: the whole log), each followed
    by its entries, then the last block's checkpoint and an ``end`` record; with ``since`` a
    consistency proof from that trusted tree size comes first. Line by line (``filiera-bundle/v1``,
    see ``docs/auditing.md``). A stream without its ``end`` record was cut short in transit.
    Auditors and admins only (403 ``auditors_only``)."""
    member = current_member()
    if not member.sees_all:
        raise AuditorsOnly(
            f"{member.id} may not export the ledger: the export holds every entry, so only "
            "members with the auditor or admin role may read it",
            participant=member.id,
        )
    args = load_query(ExportQuerySchema, InvalidExportRange)
    svc = services()
    rng = plan_export(svc.store, start=args["from_"], end=args.get("to"), since=args.get("since"))
    lines = bundle_lines(svc.store, rng, created=format_time(svc.sealer.clock.now()))
    # The header line is produced here, before the response starts, so that a ledger that
    # cannot be read is still answered with a problem document rather than an empty stream.
    first = next(lines)
    with svc.store.read() as conn:
        policy = svc.store.policy(conn)
    origin = policy.origin if policy is not None else ""
    resp = Response(stream_with_context(itertools.chain([first], lines)), mimetype=MEDIA_TYPE)
    resp.headers["Content-Disposition"] = f"attachment; filename={attachment_name(origin, rng.start, rng.end)}"
    resp.headers["Filiera-Export-From"] = str(rng.start)
    resp.headers["Filiera-Export-To"] = str(rng.end)
    # Every entry is in here, commercial terms included: no shared cache may keep a copy.
    resp.headers["Cache-Control"] = "no-store"
    return resp
