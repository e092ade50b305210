"""Consumer engagement figures for members (issue #6): page views per day and lot."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ledger.encoding import LOT_ID_RE

from .common import MAX_INT

_LOT = validate.Regexp(LOT_ID_RE, error="must be a lot id")
# A cursor is the last row's day and lot: "2026-11-24/EVO-MIL-000001" (the day has a fixed
# length, so a lot id with slashes still splits in one way).
CURSOR_RE = r"^\d{4}-\d{2}-\d{2}/[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"


class EngagementQuerySchema(Schema):
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "first day, YYYY-MM-DD (UTC); default 29 days before `to`"})
    to = fields.Date(load_default=None, metadata={"description": "last day, YYYY-MM-DD (UTC), inclusive; default today"})
    lot = fields.String(load_default=None, validate=_LOT, metadata={"description": "only this lot"})
    after = fields.String(
        load_default=None,
        validate=validate.Regexp(CURSOR_RE, error="must be a cursor from `next`"),
        metadata={"description": "the `next` of the previous page"},
    )
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=MAX_INT))


class ViewCountSchema(Schema):
    day = fields.String(required=True, metadata={"description": "UTC date, YYYY-MM-DD"})
    lot = fields.String(required=True)
    product = fields.String(required=True)
    country = fields.String(required=True, metadata={"description": "the lot's origin countries, comma-separated"})
    region = fields.String(required=True, metadata={"description": "the lot's origin regions, comma-separated"})
    views = fields.Integer(required=True, metadata={"description": "views of the lot's public page that day"})


class EngagementSchema(Schema):
    from_ = fields.String(data_key="from", required=True)
    to = fields.String(required=True)
    lot = fields.String(allow_none=True, required=True)
    total_views = fields.Integer(required=True, metadata={"description": "all views in the range (every page)"})
    counts = fields.List(fields.Nested(ViewCountSchema), required=True)
    next = fields.String(allow_none=True, required=True, metadata={"description": "pass as ?after= for the next page"})
