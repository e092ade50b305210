"""Entry envelopes, receipts and batch results (PROTOCOL §3, §6)."""

from __future__ import annotations

from marshmallow import Schema, fields

from .common import hex64


class SignatureSchema(Schema):
    signer = fields.String(required=True, metadata={"pattern": "^[a-z0-9][a-z0-9._:-]{1,127}$"})
    key_id = fields.String(required=True, metadata={"pattern": "^[0-9a-f]{16}$"})
    sig = fields.String(required=True, metadata={"description": "base64 Ed25519 signature (64 bytes)"})


class PayloadSchema(Schema):
    ledger = fields.String(required=True)
    type = fields.String(required=True)
    author = fields.String(required=True)
    time = fields.String(required=True, metadata={"format": "date-time"})
    nonce = fields.String(required=True, metadata={"pattern": "^[A-Za-z0-9_-]{16,64}$"})

    class Meta:
        # Type fields vary by entry type (PROTOCOL §4); the server checks them strictly.
        unknown = "include"


class EnvelopeSchema(Schema):
    payload = fields.Nested(PayloadSchema, required=True)
    signatures = fields.List(fields.Nested(SignatureSchema), required=True)


class ReceiptSchema(Schema):
    id = hex64(required=True)
    index = fields.Integer(required=True)
    height = fields.Integer(required=True)
    leaf_hash = hex64(required=True)
    tlog_proof = fields.String(
        required=True, metadata={"description": "C2SP tlog-proof: index, audit path, checkpoint"}
    )


class PendingSchema(Schema):
    id = hex64(required=True)
    status = fields.String(required=True, metadata={"enum": ["pending"]})


class EntrySchema(Schema):
    id = hex64(required=True)
    index = fields.Integer(required=True)
    height = fields.Integer(required=True)
    leaf_hash = hex64(required=True)
    payload = fields.Dict(required=True)
    signatures = fields.List(fields.Nested(SignatureSchema), required=True)


class BatchRequestSchema(Schema):
    entries = fields.List(fields.Nested(EnvelopeSchema), required=True)


class BatchResultSchema(Schema):
    status = fields.Integer(required=True, metadata={"description": "HTTP status this entry alone would get"})
    id = hex64()
    index = fields.Integer()
    height = fields.Integer()
    leaf_hash = hex64()
    tlog_proof = fields.String()
    problem = fields.Dict(metadata={"description": "problem details when refused"})


class BatchResponseSchema(Schema):
    results = fields.List(fields.Nested(BatchResultSchema), required=True)
