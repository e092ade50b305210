"""Builders for signed envelopes and members. No test hand-writes a signature."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ledger.encoding import format_time
from ledger.entries import sign_payload
from ledger.keys import SigningKey

ORIGIN = "test.filiera.example"


@dataclass
class Member:
    id: str
    key: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def key_id(self) -> str:
        return self.key.public_key.key_id

    @property
    def public_key(self) -> str:
        return self.key.public_key.b64


def nonce() -> str:
    return secrets.token_urlsafe(18)


def now() -> str:
    return format_time(datetime.now(timezone.utc))


def payload(type_: str, author: str, *, origin: str = ORIGIN, **fields: Any) -> dict[str, Any]:
    return {"ledger": origin, "type": type_, "author": author, "time": now(), "nonce": nonce(), **fields}


def envelope(p: dict[str, Any], *signers: Member, key_of: dict[str, SigningKey] | None = None) -> dict[str, Any]:
    return sign_payload(p, [(m.id, m.key) for m in signers])


def register(admin: Member, new: Member, roles: list[str], *, name: str | None = None, origin: str = ORIGIN, extra_admins: tuple[Member, ...] = ()) -> dict[str, Any]:
    p = payload(
        "participant.register",
        admin.id,
        origin=origin,
        participant={
            "id": new.id,
            "name": name or f"{new.id} S.p.A.",
            "roles": roles,
            "keys": [{"public_key": new.public_key}],
        },
    )
    return envelope(p, admin, *extra_admins)


def key_add(owner: Member, new_key: SigningKey, *, signer: Member | None = None, origin: str = ORIGIN) -> dict[str, Any]:
    p = payload("key.add", owner.id, origin=origin, participant=owner.id, public_key=new_key.public_key.b64)
    s = signer or owner
    return sign_payload(p, [(s.id, s.key), (owner.id, new_key)])


def key_revoke(owner: Member, key_id: str, *, signer: Member | None = None, reason: str = "rotated", origin: str = ORIGIN) -> dict[str, Any]:
    s = signer or owner
    p = payload("key.revoke", s.id, origin=origin, participant=owner.id, key_id=key_id, reason=reason)
    return envelope(p, s)


def update(admin: Member, participant: str, *, name: str | None = None, roles: list[str] | None = None, origin: str = ORIGIN, extra_admins: tuple[Member, ...] = ()) -> dict[str, Any]:
    """A participant.update signed by ``admin`` (and ``extra_admins``)."""
    fields: dict[str, Any] = {"participant": participant}
    if name is not None:
        fields["name"] = name
    if roles is not None:
        fields["roles"] = roles
    return envelope(payload("participant.update", admin.id, origin=origin, **fields), admin, *extra_admins)


def participant_object(member: Member, roles: list[str], *, name: str | None = None) -> dict[str, Any]:
    """The participant object of a register entry or of genesis ``admins``."""
    return {
        "id": member.id,
        "name": name or f"{member.id} S.p.A.",
        "roles": roles,
        "keys": [{"public_key": member.public_key}],
    }


def with_key(member: Member, key: SigningKey) -> Member:
    """The same participant, signing with another of its keys."""
    return Member(member.id, key)


# --- HTTP, as a supplier system calls the API -------------------------------------------


def post_entry(client: Any, env: Any, **headers: str) -> Any:
    """POST one envelope (any JSON value) to /v1/entries."""
    return client.post("/v1/entries", json=env, headers=headers)


def post_batch(client: Any, envs: list[Any]) -> Any:
    return client.post("/v1/entries/batch", json={"entries": envs})


def checkpoint_bytes(client: Any) -> bytes:
    resp = client.get("/v1/checkpoint")
    assert resp.status_code == 200
    data: bytes = resp.data
    return data


def tree_size(client: Any) -> int:
    resp = client.get("/v1/ledger")
    assert resp.status_code == 200
    return int(resp.json["tree_size"])
