"""The export's query (PROTOCOL §6 ``GET /v1/export``; the bundle format is :mod:`ledger.bundle`)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .common import MAX_INT


class ExportQuerySchema(Schema):
    from_ = fields.Integer(
        data_key="from",
        load_default=0,
        validate=validate.Range(min=0, max=MAX_INT),
        metadata={"description": "first entry index wanted (default 0); the bundle starts at the "
                  "first whole block at or after it"},
    )
    to = fields.Integer(
        validate=validate.Range(min=0, max=MAX_INT),
        metadata={"description": "end of the range, exclusive: a tree size (default: the head); "
                  "the bundle ends with the last whole block at or before it"},
    )
    since = fields.Integer(
        validate=validate.Range(min=1, max=MAX_INT),
        metadata={"description": "a tree size the caller trusts: adds a consistency proof from it "
                  "to the bundle's checkpoint"},
    )
