"""Webhook subscriptions on the wire (docs/webhooks.md)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from ledger.facts import KINDS
from ledger.webhooks import MAX_DESCRIPTION, MAX_URL

from .analytics import _Cursor


class WebhookCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    url = fields.String(required=True, validate=validate.Length(min=1, max=MAX_URL), metadata={"description": "the endpoint: an absolute http(s) URL on a public address"})
    types = fields.List(
        fields.String(validate=validate.OneOf(KINDS)), required=True,
        metadata={"description": f"the kinds of fact to receive: {', '.join(KINDS)}"},
    )
    description = fields.String(validate=validate.Length(max=MAX_DESCRIPTION), load_default=None, allow_none=True)
    after = _Cursor(metadata={"description": "a facts cursor to start after (`0` for every fact from the start); default: facts sealed from now on"})

    @validates("types")
    def _types(self, value: list[str], **kwargs: object) -> None:
        if not value or len(set(value)) != len(value):
            raise ValidationError("must list one or more distinct kinds of fact")


class WebhookSchema(Schema):
    id = fields.String(metadata={"description": "wh_ and 24 hex digits"})
    url = fields.String()
    types = fields.List(fields.String())
    description = fields.String(allow_none=True)
    created_at = fields.String()
    status = fields.String(metadata={"description": "active, or gone: the endpoint answered 410 and gets nothing more"})
    after = fields.String(metadata={"description": "the facts cursor up to which deliveries are queued"})
    pending = fields.Integer(metadata={"description": "facts queued and not yet acknowledged"})
    attempts = fields.Integer(metadata={"description": "failed attempts at the oldest pending delivery"})
    next_attempt_at = fields.String(allow_none=True)
    last_result = fields.String(allow_none=True, metadata={"description": "what the last attempt at the oldest pending delivery got, e.g. HTTP 500"})
    last_delivered_at = fields.String(allow_none=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(metadata={"description": "the signing secret, whsec_ and base64: shown this once only"})


class WebhookListSchema(Schema):
    webhooks = fields.List(fields.Nested(WebhookSchema))
