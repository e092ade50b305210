"""Member identity for reads (PROTOCOL §6): RFC 9421 signatures checked once per request.

Health, ledger info, checkpoints and proofs are public; entries, blocks and participants need
a member's signed request. Auditors and admins see every entry; other members see the entries
they author, sign or are named in (``entry_parties``, written at sealing).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g, request

from ledger.httpsig import verify_request
from ledger.state import ParticipantRecord
from ledger.visibility import SEE_ALL_ROLES

from .services import services

__all__ = ["Member", "current_member", "optional_member", "member_required", "target_uri"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Member:
    participant: ParticipantRecord
    key_id: str

    @property
    def id(self) -> str:
        return self.participant.id

    @property
    def sees_all(self) -> bool:
        return not SEE_ALL_ROLES.isdisjoint(self.participant.roles)


def target_uri() -> str:
    """The request's RFC 9421 ``@target-uri``: the absolute URI as the client sent it.

    Werkzeug's ``request.url`` is an IRI rebuilt from the decoded path and query ("%C3%A0"
    becomes "à", "%2F" becomes "/"), which is not the string a client signed; the raw
    request-target (``RAW_URI``, set by gunicorn and Werkzeug) keeps its percent-encoding.
    """
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return request.host_url.rstrip("/") + raw
    return request.url


def _authenticate() -> Member:
    svc = services()
    body = request.get_data(cache=True)
    with svc.store.read() as conn:

        def resolve(key_id: str) -> bytes | None:
            rec = svc.store.key(conn, key_id)
            # A revoked key no longer speaks for its member, on reads as on entries.
            return rec.public_key if rec is not None and rec.revoked_index is None else None

        verified = verify_request(request.method, target_uri(), dict(request.headers), body, resolve)
        key = svc.store.key(conn, verified.key_id)
        assert key is not None
        participant = svc.store.participant(conn, key.participant)
        assert participant is not None
    svc.record_nonce(verified.nonce, verified.key_id, int(time.time()))
    return Member(participant, verified.key_id)


def current_member() -> Member:
    """The member who signed this request. Raises an Unauthenticated leaf."""
    member: Member | None = g.get("filiera_member")
    if member is None:
        member = g.filiera_member = _authenticate()
    return member


def optional_member() -> Member | None:
    """The member who signed this request, or None if it carries no signature at all (public
    resources that show members more). A signature that is present must verify: a bad one
    is refused (401), never read as anonymous."""
    if "Signature" not in request.headers and "Signature-Input" not in request.headers:
        return None
    return current_member()


def member_required(view: F) -> F:
    """Refuse the request (401 problem) unless a member signed it."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_member()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
