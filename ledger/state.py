"""The ledger state: what the log says at a position.

Governance (participants, keys, the genesis policy) and the supply chain (lots and their
custodians, open handoffs, contracts, payments, attestations), plus the nonces and entry ids
already used. One class serves sealing and verification. Sealing gives it a *source* that loads
records from the database on first use and flushes what changed in the same transaction as the
block; ``filiera verify`` and the offline audit start from nothing and replay the log. Both then
run the same rule code (``ledger.rules``), so they cannot disagree.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "Policy",
    "KeyRecord",
    "ParticipantRecord",
    "LotRecord",
    "HandoffRecord",
    "ContractRecord",
    "PaymentRecord",
    "AttestationRecord",
    "KINDS",
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

    @property
    def ident(self) -> str:
        return self.key_id

    def active_at(self, index: int) -> bool:
        """Whether the key may sign the entry at log position ``index``.

        Revocation takes effect at the revoking entry's own position: entries sealed before it
        (in earlier blocks, or earlier in the same block) stay valid (PROTOCOL §3).
        """
        return self.added_index <= index and (
            self.revoked_index is None or index < self.revoked_index
        )

    def to_json(self) -> dict[str, Any]:
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

    @property
    def ident(self) -> str:
        return self.id

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_any_role(self, roles: frozenset[str]) -> bool:
        return not roles.isdisjoint(self.roles)


@dataclass(slots=True)
class LotRecord:
    """A lot and who holds it. ``status``: held, in_transit or consumed."""

    lot: str
    product: str
    quantity: str
    unit: str
    custodian: str
    status: str
    created_by: str  # entry id of the origin or transform that made it
    created_index: int
    parents: tuple[str, ...] = ()  # input lots of the transform that made it
    handoff: str | None = None  # entry id of the open handoff while in transit
    updated_index: int = 0

    @property
    def ident(self) -> str:
        return self.lot


@dataclass(slots=True)
class HandoffRecord:
    """A custody handoff. ``status``: open, accepted or rejected."""

    id: str
    sender: str
    recipient: str
    lots: tuple[str, ...]
    status: str
    dispatched_at: str
    index: int
    contract: str | None = None
    received_at: str | None = None
    closed_by: str | None = None  # entry id of the receipt (or the handoff itself if co-signed)

    @property
    def ident(self) -> str:
        return self.id


@dataclass(slots=True)
class ContractRecord:
    """A contract between buyer and seller. ``status``: open, fulfilled or terminated."""

    id: str
    buyer: str
    seller: str
    terms: dict[str, Any]
    status: str
    entry: str
    index: int
    closed_index: int | None = None

    @property
    def ident(self) -> str:
        return self.id

    def parties(self) -> frozenset[str]:
        return frozenset({self.buyer, self.seller})


@dataclass(slots=True)
class PaymentRecord:
    id: str
    payer: str
    payee: str
    amount: str
    currency: str
    paid_at: str
    index: int
    contract: str | None = None
    confirmed_index: int | None = None

    @property
    def ident(self) -> str:
        return self.id


@dataclass(slots=True)
class AttestationRecord:
    id: str
    author: str
    subject: str
    claims: tuple[str, ...]
    index: int

    @property
    def ident(self) -> str:
        return self.id


# Record kinds the state tracks by key, and the type of each.
KINDS: dict[str, type] = {
    "participant": ParticipantRecord,
    "key": KeyRecord,
    "lot": LotRecord,
    "handoff": HandoffRecord,
    "contract": ContractRecord,
    "payment": PaymentRecord,
    "attestation": AttestationRecord,
}

R = TypeVar("R")


class StateSource(Protocol):
    """Where records not yet in memory come from (the database, for sealing)."""

    def load_policy(self) -> Policy | None: ...

    def load(self, kind: str, key: str) -> Any | None: ...

    def load_many(self, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        """The records among ``keys`` that exist (one query, where ``load`` makes one each)."""
        ...

    def load_nonce(self, author: str, nonce: str) -> str | None: ...

    def load_nonces(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The entries that used the (author, nonce) pairs among ``pairs`` that were used."""
        ...

    def load_entry_exists(self, entry_id: str) -> bool: ...


def _digest(text: str) -> bytes:
    # 16-byte digests keep a replayed million-entry log's nonce and id sets small in memory.
    return hashlib.sha256(text.encode()).digest()[:16]


_MISSING = object()


@dataclass
class LedgerState:
    """Records by kind and key, loaded from ``source`` on first use; changes are tracked."""

    source: StateSource | None = None
    policy: Policy | None = None
    _records: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    _dirty: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    # Keys the source was asked for and does not hold: a changed record under one of them is
    # new, so flushing it is an insert with no need to ask the source again.
    _absent: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    _nonces: dict[bytes, str | None] = field(default_factory=dict)
    _entries: dict[bytes, bool] = field(default_factory=dict)
    _policy_loaded: bool = False

    # --- reads ------------------------------------------------------------------------

    def get_policy(self) -> Policy | None:
        if self.policy is None and not self._policy_loaded and self.source is not None:
            self.policy = self.source.load_policy()
        self._policy_loaded = True
        return self.policy

    def get(self, kind: str, key: str) -> Any | None:
        records = self._records[kind]
        rec = records.get(key, _MISSING)
        if rec is _MISSING:
            rec = self.source.load(kind, key) if self.source else None
            records[key] = rec
            if rec is None and self.source is not None:
                self._absent[kind].add(key)
        return rec

    def participant(self, participant_id: str) -> ParticipantRecord | None:
        return self.get("participant", participant_id)

    def key(self, key_id: str) -> KeyRecord | None:
        return self.get("key", key_id)

    def lot(self, lot_id: str) -> LotRecord | None:
        return self.get("lot", lot_id)

    def handoff(self, entry_id: str) -> HandoffRecord | None:
        return self.get("handoff", entry_id)

    def contract(self, contract_id: str) -> ContractRecord | None:
        return self.get("contract", contract_id)

    def payment(self, entry_id: str) -> PaymentRecord | None:
        return self.get("payment", entry_id)

    def nonce_entry(self, author: str, nonce: str) -> str | None:
        k = _digest(f"{author}\x00{nonce}")
        found = self._nonces.get(k, _MISSING)
        if found is _MISSING:
            found = self.source.load_nonce(author, nonce) if self.source else None
            self._nonces[k] = found
        return found  # type: ignore[return-value]

    def entry_exists(self, entry_id: str) -> bool:
        k = _digest(entry_id)
        found = self._entries.get(k)
        if found is None:
            found = self.source.load_entry_exists(entry_id) if self.source else False
            self._entries[k] = found
        return found

    def prefetch(
        self,
        *,
        participants: Iterable[str] = (),
        keys: Iterable[str] = (),
        nonces: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Load records not in memory yet in one query per kind, as :meth:`get` and
        :meth:`nonce_entry` would load them one at a time. Only a speed-up: a record not
        prefetched is loaded when asked for, and one that does not exist is remembered as such.
        """
        if self.source is None:
            return
        for kind, wanted in (("participant", participants), ("key", keys)):
            records = self._records[kind]
            todo = sorted({k for k in wanted if k not in records})
            if todo:
                found = self.source.load_many(kind, todo)
                for k in todo:
                    records[k] = found.get(k)
                    if records[k] is None:
                        self._absent[kind].add(k)
        pairs = sorted({p for p in nonces if _digest(f"{p[0]}\x00{p[1]}") not in self._nonces})
        if pairs:
            used = self.source.load_nonces(pairs)
            for author, nonce in pairs:
                self._nonces[_digest(f"{author}\x00{nonce}")] = used.get((author, nonce))

    # --- writes -----------------------------------------------------------------------

    def put_policy(self, policy: Policy) -> None:
        self.policy = policy
        self._policy_loaded = True

    def put(self, kind: str, rec: Any) -> None:
        """Store a new or changed record (records are replaced, never mutated in place)."""
        self._records[kind][rec.ident] = rec
        self._dirty[kind].add(rec.ident)

    def put_participant(self, rec: ParticipantRecord) -> None:
        self.put("participant", rec)

    def put_key(self, rec: KeyRecord) -> None:
        self.put("key", rec)

    def put_nonce(self, author: str, nonce: str, entry_id: str) -> None:
        self._nonces[_digest(f"{author}\x00{nonce}")] = entry_id

    def put_entry(self, entry_id: str) -> None:
        self._entries[_digest(entry_id)] = True

    # --- snapshots (ledger.snapshot) ------------------------------------------------------

    def records(self, kind: str) -> dict[str, Any]:
        """Every record of ``kind`` held in memory, by key (None: known not to exist)."""
        return self._records[kind]

    def used_nonces(self) -> tuple[bytes, list[str | None]]:
        """The digests of every (author, nonce) used, concatenated, and the entry of each."""
        keys = sorted(k for k, v in self._nonces.items() if v is not None)
        return b"".join(keys), [self._nonces[k] for k in keys]

    def used_entries(self) -> bytes:
        return b"".join(sorted(k for k, v in self._entries.items() if v))

    def restore(self, kind: str, rec: Any) -> None:
        """Put a record back from a snapshot: as it was, not as a change to flush."""
        self._records[kind][rec.ident] = rec

    def restore_used(self, nonces: bytes, nonce_entries: Sequence[str | None], entries: bytes) -> None:
        size = len(nonces) // 16
        if len(nonces) != 16 * size or len(nonce_entries) != size or len(entries) % 16:
            raise ValueError("nonce and entry digests are 16 bytes each, one entry per nonce")
        for i in range(size):
            self._nonces[nonces[16 * i : 16 * i + 16]] = nonce_entries[i]
        for i in range(0, len(entries), 16):
            self._entries[entries[i : i + 16]] = True

    # --- what changed, for flushing -----------------------------------------------------

    def changed(self, kind: str) -> list[Any]:
        records = self._records[kind]
        return [r for k in sorted(self._dirty[kind]) if (r := records.get(k)) is not None]

    def created(self, kind: str) -> frozenset[str]:
        """Keys of changed records that the source is known not to hold (new records)."""
        return frozenset(self._dirty[kind] & self._absent[kind])

    def changed_participants(self) -> list[ParticipantRecord]:
        return self.changed("participant")

    def changed_keys(self) -> list[KeyRecord]:
        return self.changed("key")
