"""Ledger identity, health and blocks (PROTOCOL §5, §6)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .common import MAX_INT, hex64


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    database = fields.String(required=True)
    height = fields.Integer(allow_none=True)
    tree_size = fields.Integer(allow_none=True)


class LedgerInfoSchema(Schema):
    origin = fields.String(required=True)
    public_key = fields.String(required=True, metadata={"description": "base64 Ed25519 key"})
    key_id = fields.String(required=True)
    verifier_key = fields.String(required=True, metadata={"description": "C2SP note verifier key"})
    genesis = hex64(required=True, metadata={"description": "hash of block 0"})
    height = fields.Integer(required=True)
    tree_size = fields.Integer(required=True)
    root = hex64(required=True)


class BlockHeaderSchema(Schema):
    ledger = fields.String(required=True)
    height = fields.Integer(required=True)
    prev = hex64(required=True)
    time = fields.String(required=True, metadata={"format": "date-time"})
    first_index = fields.Integer(required=True)
    tree_size = fields.Integer(required=True)
    root = hex64(required=True)


class BlockSchema(Schema):
    header = fields.Nested(BlockHeaderSchema, required=True)
    hash = hex64(required=True)
    signature = fields.String(required=True)
    checkpoint = fields.String(required=True, metadata={"description": "the block's signed checkpoint"})
    entries = fields.List(hex64(), required=True)


class BlockListSchema(Schema):
    blocks = fields.List(fields.Nested(BlockSchema), required=True)


class BlocksQuerySchema(Schema):
    from_ = fields.Integer(data_key="from", load_default=0, validate=validate.Range(min=0, max=MAX_INT))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_INT))


class HeightPathSchema(Schema):
    height = fields.Integer(required=True)
