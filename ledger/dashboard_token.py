"""Dashboard links (docs/analytics.md, "The dashboard"): a short-lived token a member signs
with their own key, so that a browser, which cannot sign requests (RFC 9421), can open the
member's dashboard.

A token is ``v1.<payload>.<signature>``, both parts unpadded base64url: the payload is the JCS
(RFC 8785) JSON ``{"exp": UNIX_SECONDS, "key_id": KEY_ID, "ledger": ORIGIN}``, the signature
Ed25519 by that key over ``filiera/dashboard/v1\\n`` followed by the payload bytes. The prefix
keeps a token from being anything else the key signs (an entry, a request); the ledger's
origin keeps it from opening another ledger's dashboard. The server accepts a token until
``exp``, if ``exp`` is at most :data:`MAX_LIFETIME` seconds ahead, and if the key is a
member's active key: revoking the key closes its links at once. Nothing is stored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from . import jcs
from .errors import DashboardTokenExpired, DashboardTokenInvalid, LedgerError
from .keys import SigningKey, unsafe_verify

__all__ = ["MAX_LIFETIME", "DashboardToken", "make_token", "verify_token"]

MAX_LIFETIME = 12 * 3600
_PREFIX = b"filiera/dashboard/v1\n"
_MAX_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class DashboardToken:
    key_id: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(key: SigningKey, *, ledger: str, expires: int) -> str:
    """A dashboard token for ``key`` on ``ledger``, valid until ``expires`` (Unix seconds)."""
    payload = jcs.canonicalize({"exp": expires, "key_id": key.public_key.key_id, "ledger": ledger})
    return f"v1.{_b64(payload)}.{_b64(key.unsafe_sign(_PREFIX + payload))}"


def verify_token(token: str, *, ledger: str, now: int, resolve: Callable[[str], bytes | None]) -> DashboardToken:
    """Check a token for ``ledger`` at ``now``; ``resolve`` maps a key id to the raw public key
    of an active member key (None if unknown or revoked).

    Raises DashboardTokenInvalid (malformed, another ledger, unknown or revoked key, bad
    signature) or DashboardTokenExpired (past ``exp``, or ``exp`` too far ahead)."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN:
        raise DashboardTokenInvalid("the dashboard link is malformed; make a new one with `filiera dashboard-link`")
    parts = token.split(".")
    try:
        if len(parts) != 3 or parts[0] != "v1":
            raise ValueError("not v1.payload.signature")
        payload, sig = _unb64(parts[1]), _unb64(parts[2])
        claims = jcs.loads(payload)
        if not isinstance(claims, dict) or set(claims) != {"exp", "key_id", "ledger"} or jcs.canonicalize(claims) != payload:
            raise ValueError("not the token's canonical payload")
        expires, key_id, origin = claims["exp"], claims["key_id"], claims["ledger"]
        if not isinstance(expires, int) or isinstance(expires, bool) or not isinstance(key_id, str) or not isinstance(origin, str):
            raise ValueError("wrong claim types")
    except (ValueError, binascii.Error, LedgerError) as exc:
        raise DashboardTokenInvalid(
            "the dashboard link is malformed; make a new one with `filiera dashboard-link`"
        ) from exc
    if origin != ledger:
        raise DashboardTokenInvalid(f"the dashboard link is for the ledger {origin!r}, not this one")
    public_key = resolve(key_id)
    if public_key is None:
        raise DashboardTokenInvalid("the dashboard link's key is unknown here or revoked", key_id=key_id)
    try:
        unsafe_verify(public_key, _PREFIX + payload, sig)
    except LedgerError as exc:  # a bad signature, or one of the wrong length
        raise DashboardTokenInvalid("the dashboard link's signature does not verify", key_id=key_id) from exc
    if expires <= now:
        raise DashboardTokenExpired("the dashboard link has expired; make a new one with `filiera dashboard-link`")
    if expires - now > MAX_LIFETIME:
        raise DashboardTokenExpired(
            f"a dashboard link may live at most {MAX_LIFETIME // 3600} hours; make a shorter one"
        )
    return DashboardToken(key_id=key_id, expires=expires)

