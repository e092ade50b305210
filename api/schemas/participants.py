"""Participants and their keys (PROTOCOL §4 governance)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .common import MAX_INT


class KeySchema(Schema):
    key_id = fields.String(required=True)
    public_key = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["active", "revoked"]})
    added_index = fields.Integer(required=True)
    added_height = fields.Integer(required=True)
    revoked_index = fields.Integer(allow_none=True)
    revoked_height = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)


class ParticipantSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    attributes = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    registered_index = fields.Integer(required=True)
    registered_height = fields.Integer(required=True)
    keys = fields.List(fields.Nested(KeySchema), required=True)


class ParticipantListSchema(Schema):
    participants = fields.List(fields.Nested(ParticipantSchema), required=True)
    next = fields.String(allow_none=True, metadata={"description": "pass as ?after= for the next page"})


class ParticipantsQuerySchema(Schema):
    # A cursor is a participant id (or a prefix of one): PostgreSQL text cannot hold every
    # string (NUL), and nothing else can name a position in the list.
    after = fields.String(
        load_default="",
        validate=validate.Regexp(r"^[a-z0-9._:-]{0,128}$", error="must be a participant id"),
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_INT))
