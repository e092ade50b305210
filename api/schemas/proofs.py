"""Inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .common import MAX_INT, HEX64, hex64


class InclusionQuerySchema(Schema):
    id = fields.String(validate=HEX64)
    index = fields.Integer(validate=validate.Range(min=0, max=MAX_INT))
    tree_size = fields.Integer(validate=validate.Range(min=1, max=MAX_INT))


class TlogProofQuerySchema(Schema):
    id = fields.String(validate=HEX64)
    index = fields.Integer(validate=validate.Range(min=0, max=MAX_INT))


class ConsistencyQuerySchema(Schema):
    from_ = fields.Integer(data_key="from", required=True, validate=validate.Range(min=1, max=MAX_INT))
    to = fields.Integer(validate=validate.Range(min=1, max=MAX_INT))


class InclusionProofSchema(Schema):
    index = fields.Integer(required=True)
    tree_size = fields.Integer(required=True)
    leaf_hash = hex64(required=True)
    hashes = fields.List(hex64(), required=True, metadata={"description": "audit path, leaf sibling first"})
    root = hex64(required=True)


class ConsistencyProofSchema(Schema):
    from_ = fields.Integer(data_key="from", required=True)
    to = fields.Integer(required=True)
    hashes = fields.List(hex64(), required=True)
    from_root = hex64(required=True)
    to_root = hex64(required=True)
