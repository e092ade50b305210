"""The ledger state: what the log says at a position (participants, keys, policy, nonces).

One class serves sealing and verification. Sealing gives it a *source* that loads records
from the database on first use and flushes what changed in the same transaction as the block;
``filiera verify`` and the offline audit start from nothing and replay the log. Both then run
the same rule code (``ledger.rules``), so they cannot disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Policy",
    "KeyRecord",
    "ParticipantRecord",
    "StateSource",
    "LedgerState",
]


@dataclass(frozen=True, slots=True)
class Policy:
    """Fixed at genesis: the ledger's origin, its own public key and the admin quorum."""

    origin: str
    ledger_key: bytes
    admin_quorum: int


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    participant: str
    public_key: bytes
    added_index: int
    added_height: int
    revoked_index: int | None = None
    revoked_height: int | None = None
    reason: str | None = None

    def active_at(self, index: int) -> bool:
        """Whether the key may sign the entry at log position ``index``.

        Revocation takes effect at the revoking entry's own position: entries sealed before it
        (in earlier blocks, or earlier in the same block) stay valid (PROTOCOL §3).
        """
        return self.added_index <= index and (
            self.revoked_index is None or index < self.revoked_index
        )

    def to_json(self) -> dict[str, Any]:
        import base64

        return {
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "status": "revoked" if self.revoked_index is not None else "active",
            "added_index": self.added_index,
            "added_height": self.added_height,
            "revoked_index": self.revoked_index,
            "revoked_height": self.revoked_height,
            "reason": self.reason,
        }


@dataclass(slots=True)
class ParticipantRecord:
    id: str
    name: str
    roles: tuple[str, ...]
    attributes: dict[str, str]
    registered_index: int
    registered_height: int
    updated_index: int

    def has_role(self, role: str) -> bool:
        return role in self.roles


class StateSource(Protocol):
    """Where records not yet in memory come from (the database, for sealing)."""

    def load_policy(self) -> Policy | None: ...

    def load_participant(self, participant_id: str) -> ParticipantRecord | None: ...

    def load_key(self, key_id: str) -> KeyRecord | None: ...

    def load_nonce(self, author: str, nonce: str) -> str | None: ...


def _nonce_key(author: str, nonce: str) -> bytes:
    # A 16-byte digest keeps a replayed million-entry log's nonce set small in memory.
    return hashlib.sha256(f"{author}\x00{nonce}".encode()).digest()[:16]


_MISSING = object()


@dataclass
class LedgerState:
    """Records by key, loaded from ``source`` on first use; changes are tracked for flushing."""

    source: StateSource | None = None
    policy: Policy | None = None
    _participants: dict[str, ParticipantRecord | None] = field(default_factory=dict)
    _keys: dict[str, KeyRecord | None] = field(default_factory=dict)
    _nonces: dict[bytes, str | None] = field(default_factory=dict)
    dirty_participants: set[str] = field(default_factory=set)
    dirty_keys: set[str] = field(default_factory=set)
    _policy_loaded: bool = False

    def get_policy(self) -> Policy | None:
        if self.policy is None and not self._policy_loaded and self.source is not None:
            self.policy = self.source.load_policy()
        self._policy_loaded = True
        return self.policy

    def participant(self, participant_id: str) -> ParticipantRecord | None:
        rec = self._participants.get(participant_id, _MISSING)
        if rec is _MISSING:
            rec = self.source.load_participant(participant_id) if self.source else None
            self._participants[participant_id] = rec
        return rec  # type: ignore[return-value]

    def key(self, key_id: str) -> KeyRecord | None:
        rec = self._keys.get(key_id, _MISSING)
        if rec is _MISSING:
            rec = self.source.load_key(key_id) if self.source else None
            self._keys[key_id] = rec
        return rec  # type: ignore[return-value]

    def nonce_entry(self, author: str, nonce: str) -> str | None:
        k = _nonce_key(author, nonce)
        found = self._nonces.get(k, _MISSING)
        if found is _MISSING:
            found = self.source.load_nonce(author, nonce) if self.source else None
            self._nonces[k] = found
        return found  # type: ignore[return-value]

    def put_policy(self, policy: Policy) -> None:
        self.policy = policy
        self._policy_loaded = True

    def put_participant(self, rec: ParticipantRecord) -> None:
        self._participants[rec.id] = rec
        self.dirty_participants.add(rec.id)

    def put_key(self, rec: KeyRecord) -> None:
        self._keys[rec.key_id] = rec
        self.dirty_keys.add(rec.key_id)

    def put_nonce(self, author: str, nonce: str, entry_id: str) -> None:
        self._nonces[_nonce_key(author, nonce)] = entry_id

    def changed_participants(self) -> list[ParticipantRecord]:
        return [r for p in sorted(self.dirty_participants) if (r := self._participants.get(p))]

    def changed_keys(self) -> list[KeyRecord]:
        return [r for k in sorted(self.dirty_keys) if (r := self._keys.get(k))]

    def clear_dirty(self) -> None:
        self.dirty_participants.clear()
        self.dirty_keys.clear()

    def snapshot(self) -> LedgerState:
        """A copy-on-write child: reads fall through to this state, writes stay in the child.

        Used to check a batch against the state it would meet without touching this one.
        """
        return LedgerState(source=_Overlay(self), policy=self.get_policy(), _policy_loaded=True)


class _Overlay:
    def __init__(self, parent: LedgerState) -> None:
        self.parent = parent

    def load_policy(self) -> Policy | None:
        return self.parent.get_policy()

    def load_participant(self, participant_id: str) -> ParticipantRecord | None:
        rec = self.parent.participant(participant_id)
        if rec is None:
            return None
        return ParticipantRecord(
            rec.id, rec.name, rec.roles, dict(rec.attributes), rec.registered_index,
            rec.registered_height, rec.updated_index,
        )

    def load_key(self, key_id: str) -> KeyRecord | None:
        rec = self.parent.key(key_id)
        if rec is None:
            return None
        return KeyRecord(
            rec.key_id, rec.participant, rec.public_key, rec.added_index, rec.added_height,
            rec.revoked_index, rec.revoked_height, rec.reason,
        )

    def load_nonce(self, author: str, nonce: str) -> str | None:
        return self.parent.nonce_entry(author, nonce)
