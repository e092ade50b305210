"""Member identity on reads: HTTP Message Signatures (RFC 9421) with the member's Ed25519 key.

The maintained ``http-message-signatures`` library does the RFC 9421 work (signature base,
structured fields, Content-Digest per RFC 9530); Ed25519 itself is checked here with libsodium
(``ledger.keys``), because PROTOCOL §2 wants one strict verifier for every signature and
OpenSSL's is more lenient.

A request signature must cover ``@method`` and ``@target-uri`` (and ``content-digest`` when
there is a body), carry ``created`` within the replay window, a fresh ``nonce`` and the
member's ``key_id`` as ``keyid``. Replay of a nonce is caught by the caller (the API keeps seen
nonces in the database so that every worker sees them).
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import http_message_signatures as hms

from .errors import Unauthenticated
from .keys import SigningKey, unsafe_verify

__all__ = [
    "LABEL",
    "MAX_AGE",
    "MAX_SKEW",
    "REQUIRED_COMPONENTS",
    "SignatureRequired",
    "RequestSignatureInvalid",
    "RequestSignatureExpired",
    "RequestReplayed",
    "Message",
    "sign_request",
    "verify_request",
    "VerifiedRequest",
]

LABEL = "filiera"
MAX_AGE = _dt.timedelta(minutes=5)
MAX_SKEW = _dt.timedelta(seconds=60)
REQUIRED_COMPONENTS = ("@method", "@target-uri")


class SignatureRequired(Unauthenticated):
    code = "signature_required"
    title = "Signed request required"


class RequestSignatureInvalid(Unauthenticated):
    code = "request_signature_invalid"
    title = "Request signature does not verify"


class RequestSignatureExpired(Unauthenticated):
    code = "request_signature_expired"
    title = "Request signature too old or from the future"


class RequestReplayed(Unauthenticated):
    code = "request_replayed"
    title = "Request nonce already used"


class _Headers:
    """A case-insensitive, ordered header mapping the library can read and write."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for k, v in (items or {}).items():
            self[k] = v

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, _ in self._items.values())

    def items(self) -> list[tuple[str, str]]:
        return list(self._items.values())

    def get(self, name: str, default: str | None = None) -> str | None:
        item = self._items.get(name.lower())
        return item[1] if item else default

    def as_dict(self) -> dict[str, str]:
        return dict(self._items.values())


@dataclass
class Message:
    """An HTTP request as the signature library sees it."""

    method: str
    url: str
    headers: _Headers

    @classmethod
    def of(cls, method: str, url: str, headers: Mapping[str, str] | None = None) -> Message:
        return cls(method.upper(), url, _Headers(headers))


class _Ed25519(hms.HTTPSignatureAlgorithm):
    algorithm_id = "ed25519"

    def __init__(self, public_key: Any = None, private_key: Any = None) -> None:
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        assert isinstance(self.private_key, SigningKey)
        return self.private_key.unsafe_sign(message)

    def verify(self, signature: bytes, message: bytes) -> None:
        # Raises ledger InvalidSignature; the library wraps it in its own InvalidSignature.
        unsafe_verify(self.public_key, message, signature)


class _Keys(hms.HTTPSignatureKeyResolver):
    def __init__(self, resolve: Callable[[str], bytes | None] | None = None, key: SigningKey | None = None) -> None:
        self._resolve = resolve
        self._key = key

    def resolve_public_key(self, key_id: str) -> bytes | None:
        return self._resolve(key_id) if self._resolve else None

    def resolve_private_key(self, key_id: str) -> SigningKey:
        assert self._key is not None
        return self._key


def sign_request(
    method: str,
    url: str,
    key: SigningKey,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    created: _dt.datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to send with a request signed by ``key`` (Signature-Input, Signature, and
    Content-Digest when there is a body). ``url`` is the absolute URL requested."""
    msg = Message.of(method, url, headers)
    signer = hms.HTTPMessageSigner(signature_algorithm=_Ed25519, key_resolver=_Keys(key=key))
    components: tuple[str, ...] = REQUIRED_COMPONENTS
    signer.sign(
        msg,
        key_id=key.public_key.key_id,
        created=created or _dt.datetime.now(_dt.timezone.utc),
        nonce=nonce or secrets.token_urlsafe(18),
        label=LABEL,
        covered_component_ids=components,
        body=body if body else None,
    )
    return msg.headers.as_dict()


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    key_id: str
    nonce: str
    created: int


class _Verifier(hms.HTTPMessageVerifier):
    max_clock_skew = MAX_SKEW


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    resolve: Callable[[str], bytes | None],
) -> VerifiedRequest:
    """Check a request's RFC 9421 signature. ``resolve`` maps a keyid to the raw public key of
    an active member key (None if unknown or revoked).

    Raises SignatureRequired, RequestSignatureExpired, RequestSignatureInvalid. The caller
    must still refuse a reused nonce (RequestReplayed) and decide what the member may see.
    """
    if "signature" not in {k.lower() for k in headers} or "signature-input" not in {k.lower() for k in headers}:
        raise SignatureRequired(
            "this resource is for members: sign the request (RFC 9421) with your key, e.g. "
            "with `filiera get` or ledger.client",
        )
    msg = Message.of(method, url, headers)
    verifier = _Verifier(signature_algorithm=_Ed25519, key_resolver=_Keys(resolve=resolve))
    try:
        results = verifier.verify(
            msg, max_age=MAX_AGE, require_components=REQUIRED_COMPONENTS, body=body
        )
    except hms.InvalidSignature as exc:
        text = str(exc)
        if "future" in text or "age exceeds" in text or "in the past" in text:
            raise RequestSignatureExpired(
                f"the request signature's created time is outside the {int(MAX_AGE.total_seconds())} s "
                "window; check the client's clock and sign each request afresh",
            ) from exc
        raise RequestSignatureInvalid(f"the request signature does not verify: {text}") from exc
    except hms.HTTPMessageSignaturesException as exc:
        raise RequestSignatureInvalid(f"malformed request signature: {exc}") from exc
    (result,) = results
    nonce = result.parameters.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise RequestSignatureInvalid("a request signature needs a nonce of 16 to 64 characters")
    return VerifiedRequest(
        key_id=str(result.parameters["keyid"]), nonce=nonce, created=int(result.parameters["created"])
    )
