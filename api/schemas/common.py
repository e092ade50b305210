"""Shared schema pieces: the problem document, hex hashes, paging."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

HEX64 = validate.Regexp(r"^[0-9a-f]{64}$", error="must be 64 lowercase hex digits")
MAX_INT = 2**62


class ProblemSchema(Schema):
    """RFC 9457 problem details, with Filiera's stable ``code``.

    The error's facts travel as extension members (RFC 9457 §3.2: e.g. ``entry``, ``fields``,
    ``required``), so the document is open: clients must ignore members they do not know.
    """

    class Meta:
        unknown = "include"

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True, metadata={"description": "stable error code"})


def hex64(*, metadata: dict[str, object] | None = None, **kw: object) -> fields.String:
    meta = {"pattern": "^[0-9a-f]{64}$", **(metadata or {})}
    return fields.String(validate=HEX64, metadata=meta, **kw)  # type: ignore[arg-type]
