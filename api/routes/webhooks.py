"""Webhook subscriptions (docs/webhooks.md): a member registers an endpoint for kinds of
fact, lists theirs, deletes one. ``filiera worker`` does the delivering.

Every call is a member's RFC 9421 signed request (a body's Content-Digest included), and a
member only ever sees and deletes their own subscriptions. The signing secret is made here,
shown once in the answer to the POST, and stored only sealed (ledger/webhook_secrets.py).
"""

from __future__ import annotations

import secrets
import socket
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, jsonify
from marshmallow import ValidationError

from ledger.encoding import format_time
from ledger.errors import InvalidWebhook, WebhookNotFound
from ledger.storage import webhooks as wh
from ledger.storage.analytics import Cursor
from ledger.webhook_secrets import SecretBox
from ledger.webhooks import check_url, new_secret

from ..auth import current_member, member_required
from ..body import read_json
from ..openapi import operation
from ..schemas.webhooks import WebhookCreatedSchema, WebhookCreateSchema, WebhookListSchema
from ..services import services

__all__ = ["bp"]

bp = Blueprint("webhooks", __name__)


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_time(datetime.fromtimestamp(ms / 1000, timezone.utc))


def _json(sub: wh.Subscription, backlog: wh.Backlog | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": sub.id, "url": sub.url, "types": list(sub.types), "description": sub.description,
        "created_at": sub.created_at, "status": sub.status, "after": str(sub.after),
    }
    if backlog is not None:
        doc |= {
            "pending": backlog.pending, "attempts": backlog.attempts,
            "next_attempt_at": _time(backlog.next_attempt_at), "last_result": backlog.last_result,
            "last_delivered_at": _time(backlog.last_delivered_at),
        }
    return doc


@bp.post("/v1/webhooks")
@operation(
    summary="Register a webhook endpoint for kinds of fact",
    tag="webhooks",
    body=WebhookCreateSchema,
    responses={201: WebhookCreatedSchema},
    errors=(400, 409, 413, 415),
    member=True,
)
@member_required
def create() -> tuple[Response, int]:
    """Subscribe ``url`` to the facts of ``types`` (shipment, dwell, delivery, contract,
    payment) that you may see, from now on (or after the cursor ``after``). Answers the
    subscription with its signing ``secret`` (Standard Webhooks, ``whsec_...``): it is shown
    this once only. The URL must be http(s) on a public address (400 ``webhook_url_refused``
    otherwise, unless the operator allows private ones); 20 subscriptions per member at most
    (409 ``too_many_webhooks``)."""
    member = current_member()
    try:
        args = WebhookCreateSchema().load(read_json())
    except ValidationError as exc:
        fields = sorted(exc.messages) if isinstance(exc.messages, dict) else []
        raise InvalidWebhook(f"invalid webhook subscription: {exc.messages}", fields=fields) from exc
    svc = services()
    url = args["url"]
    try:
        check_url(url, allow_private=svc.settings.webhook_allow_private, resolve=_resolve)
    except OSError:
        # A name that does not resolve today may tomorrow; the worker checks every address
        # it is about to call, so an unresolvable name is no way around the check.
        check_url(url, allow_private=svc.settings.webhook_allow_private, resolve=None)
    box = SecretBox.open(svc.settings.webhook_key_file)
    sub_id = "wh_" + secrets.token_hex(12)
    secret = new_secret()
    after = Cursor(*args["after"]) if args.get("after") is not None else None
    sub = wh.create_subscription(
        svc.store, id=sub_id, member=member.id, url=url, types=args["types"], description=args["description"],
        sealed_secret=box.seal(sub_id, secret), created_at=format_time(svc.sealer.clock.now()), after=after,
    )
    resp = jsonify({**_json(sub, wh.Backlog(0, 0, None, None, None)), "secret": secret})
    resp.headers["Cache-Control"] = "no-store"
    return resp, 201


@bp.get("/v1/webhooks")
@operation(summary="Your webhook subscriptions and their delivery state", tag="webhooks", responses={200: WebhookListSchema}, member=True)
@member_required
def list_() -> Response:
    """Your subscriptions (never their secrets), each with its delivery state: facts queued
    and not yet acknowledged (``pending``), failed attempts at the oldest of them, when it is
    tried next, what the last attempt got, and when a delivery last succeeded."""
    member = current_member()
    svc = services()
    with svc.store.read() as conn:
        subs = wh.subscriptions_of(conn, member.id)
        docs = [_json(s, wh.backlog(conn, s.id)) for s in subs]
    resp = jsonify(webhooks=docs)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.delete("/v1/webhooks/<webhook_id>")
@operation(summary="Delete one of your webhook subscriptions", tag="webhooks", path={"webhook_id": "string"}, responses={204: None}, errors=(404,), member=True)
@member_required
def delete(webhook_id: str) -> tuple[str, int]:
    """Delete the subscription and every delivery still queued for it; nothing more is sent
    (a delivery under way may still arrive). 404 ``webhook_not_found`` if it is not yours."""
    member = current_member()
    if not wh.delete_subscription(services().store, member=member.id, id=webhook_id):
        raise WebhookNotFound(f"you have no webhook subscription {webhook_id}", webhook=webhook_id[:64])
    return "", 204
