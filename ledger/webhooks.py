"""Webhooks, the pure part (docs/webhooks.md): subscriptions' checks, the message a fact
becomes, its Standard Webhooks signature, and the retry schedule.

Standard Webhooks 1.0 (standardwebhooks.com): a message is a JSON body with ``type``,
``timestamp`` and ``data``, sent with the headers ``webhook-id`` (the same on every attempt:
the receiver's idempotency key), ``webhook-timestamp`` (of the attempt, integer Unix seconds)
and ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``
under the secret, which is ``whsec_`` and the base64 of 24 to 64 random bytes.

No I/O here except :func:`check_url`'s name resolution, which the caller injects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import WebhookUrlRefused

__all__ = [
    "SECRET_PREFIX",
    "MAX_URL",
    "MAX_DESCRIPTION",
    "MAX_SUBSCRIPTIONS",
    "Target",
    "new_secret",
    "secret_key",
    "signature",
    "sign_headers",
    "message_id",
    "message_body",
    "event_type",
    "retry_delay",
    "check_url",
    "public_address",
    "Resolve",
]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks: at least 24 bytes, at most 64
MAX_URL = 2000
MAX_DESCRIPTION = 200
MAX_SUBSCRIPTIONS = 20  # per member

# (host, port) -> the addresses it resolves to. Raises OSError when it does not resolve.
Resolve = Callable[[str, int], Sequence[str]]


def new_secret() -> str:
    """A fresh signing secret as members are shown it: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the bytes its base64 encodes). Raises ValueError."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = msg_id.encode("ascii") + b"." + str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def message_id(subscription: str, index: int, seq: int) -> str:
    """The message id of a fact's delivery to a subscription: the same on every attempt and
    after every restart, never the same for two facts or two subscriptions. No ``.`` in it,
    as the spec asks (the signed content is dot-separated)."""
    return f"msg_{subscription}_{index}_{seq}"


def event_type(kind: str) -> str:
    """The Standard Webhooks ``type`` of a fact of ``kind``: ``fact.shipment`` and so on."""
    return f"fact.{kind}"


def message_body(fact: Mapping[str, Any], *, sealed_at: str) -> bytes:
    """The body of a fact's message: ``type``, ``timestamp`` (when the block that sealed the
    fact was made, RFC 3339) and ``data``, the fact as ``GET /v1/analytics/facts`` shows it.
    Compact JSON in UTF-8; the bytes stored are the bytes sent and signed on every attempt."""
    doc = {"type": event_type(str(fact["kind"])), "timestamp": sealed_at, "data": dict(fact)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def retry_delay(attempts: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1, 2, ...): exponential,
    ``base * 2**(attempts-1)``, capped at ``cap``, with "equal jitter": half of it fixed and
    half random (``jitter`` in [0, 1)). So, below the cap, a pause never shrinks from one
    attempt to the next (the ranges only touch); at the cap it stays between half of it and
    all of it; receivers that failed together do not all come back at once."""
    if attempts < 1:
        raise ValueError("attempts counts from 1")
    exponent = min(attempts - 1, 62)  # 2**62 s outlasts any cap; stops the float overflowing
    full = min(cap, base * 2.0**exponent)
    return full / 2 + full / 2 * jitter


def public_address(address: str) -> bool:
    """Whether an IP address is on the public internet: not loopback, private (RFC 1918,
    unique-local), link-local (cloud metadata services live there), shared (RFC 6598),
    multicast, reserved or unspecified. IPv4-mapped IPv6 addresses are judged as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL: scheme, host, port, and the request target (path and query)."""

    url: str
    scheme: str
    host: str
    port: int
    target: str


_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


def check_url(url: str, *, allow_private: bool, resolve: Resolve | None) -> Target:
    """Check a webhook URL as a member registers it or as the worker is about to call it.

    Only ``http`` and ``https``; no user name or password (they would sit in the database);
    no fragment. Unless ``allow_private``, every address the host resolves to (with
    ``resolve``; an IP literal is its own) must be public, so that the worker cannot be
    aimed at the server's own network (SSRF). With ``resolve`` None only IP literals are
    checked (names are checked when they are called).

    Raises WebhookUrlRefused, or OSError from ``resolve`` when the name does not resolve.
    """
    if not isinstance(url, str) or not url or len(url) > 2000 or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise WebhookUrlRefused("a webhook URL is an absolute http(s) URL of at most 2000 characters", fields=["url"])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlRefused(f"not a valid URL: {exc}", fields=["url"]) from exc
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlRefused("a webhook URL must be http or https", fields=["url"])
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused(
            "a webhook URL must not carry a user name or password: verify the signature instead", fields=["url"]
        )
    if parts.fragment:
        raise WebhookUrlRefused("a webhook URL has no #fragment", fields=["url"])
    host = parts.hostname or ""
    if not (_is_ip(host) or _HOST.fullmatch(host)):
        # Names in ASCII only (an internationalised name is sent in its punycode form).
        raise WebhookUrlRefused("a webhook URL needs a host name (ASCII) or IP address", fields=["url"])
    port = port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    checked = Target(url=url, scheme=parts.scheme, host=host, port=port, target=target)
    if allow_private:
        return checked
    addresses: Iterable[str]
    if _is_ip(host):
        addresses = [host]
    elif host.lower() == "localhost" or host.lower().endswith(".localhost"):
        addresses = ["127.0.0.1"]  # RFC 6761 §6.3: always loopback, whatever DNS says
    elif resolve is None:
        return checked
    else:
        addresses = resolve(host, port)
    for address in addresses:
        if not public_address(address):
            raise WebhookUrlRefused(
                f"{host} is a loopback, private or otherwise non-public address ({address}); webhooks "
                "go to public addresses (an operator may allow others: FILIERA_WEBHOOK_ALLOW_PRIVATE)",
                fields=["url"],
            )
    return checked


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
