"""The ledger's rules, applied entry by entry at sealing, by ``filiera verify`` and by the audit.

:func:`apply_entry` decides whether an entry may stand at a position of the log and, if so,
applies its effects to the :class:`~ledger.state.LedgerState`. A rule checks everything before
it changes anything, so a refused entry leaves the state as it found it.

Signatures (PROTOCOL §3): a signature counts only if its key belonged to the signer and was
active at the entry's position; every signature on an entry must verify, and each type's
handler says whose signatures it needs and which roles may give them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..encoding import parse_time, unb64
from ..entries import Envelope, Signature, verify_entry_signature
from ..errors import (
    GenesisRequired,
    LedgerError,
    KeyRevoked,
    MissingSignature,
    NonceReused,
    NotInitialised,
    TimeInFuture,
    UnknownKey,
)
from ..keys import key_id as compute_key_id
from ..payloads import EntryType
from ..state import KeyRecord, LedgerState

__all__ = [
    "Position",
    "SignedBy",
    "VerifiedKeys",
    "MAX_CLOCK_SKEW",
    "apply_entry",
    "prefetch",
    "verify_signatures",
    "signature_keys",
    "introduced_keys",
]

# An entry may be dated at most this far after the block that seals it: clocks of supplier
# systems drift, but an entry from the future would let an author back-date a revocation race.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# (key id, raw public key) pairs whose signatures on this entry already verified.
VerifiedKeys = Set[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Position:
    """Where an entry is being sealed: log index, block height and the block's time."""

    index: int
    height: int
    block_time: datetime


@dataclass(frozen=True, slots=True)
class SignedBy:
    """The signatures of an entry that verified, resolved to their keys."""

    keys: Mapping[str, tuple[KeyRecord | None, ...]]  # signer -> keys (None: introduced here)
    new_keys: Mapping[str, bytes]  # key id -> public key, for keys this entry introduces

    def signers(self) -> frozenset[str]:
        return frozenset(self.keys)

    def signed_with_existing_key(self, participant: str) -> bool:
        return any(k is not None for k in self.keys.get(participant, ()))

    def signed_with_new_key(self, participant: str, key_id: str) -> bool:
        return participant in self.keys and any(
            k is None for k in self.keys[participant]
        ) and key_id in self.new_keys


def introduced_keys(env: Envelope) -> dict[str, tuple[str, bytes]]:
    """Keys an entry brings with it, by key id: (owner, public key).

    Only these may sign an entry without being registered already: the ledger key on genesis
    and the new key on ``key.add`` (which must prove possession).
    """
    p = env.payload
    if env.type is EntryType.GENESIS:
        raw = unb64(p["ledger_key"], field="payload.ledger_key", length=32)
        return {compute_key_id(raw): ("ledger", raw)}
    if env.type is EntryType.KEY_ADD:
        raw = unb64(p["public_key"], field="payload.public_key", length=32)
        return {compute_key_id(raw): (str(p["participant"]), raw)}
    return {}


def _resolve(
    state: LedgerState, env: Envelope, sig: Signature, new: Mapping[str, tuple[str, bytes]]
) -> tuple[KeyRecord | None, bytes]:
    if sig.key_id in new:
        owner, raw = new[sig.key_id]
        if owner != sig.signer:
            raise UnknownKey(
                f"key {sig.key_id} is introduced for {owner}, not {sig.signer}",
                key_id=sig.key_id,
                signer=sig.signer,
            )
        return None, raw
    rec = state.key(sig.key_id)
    if rec is None or rec.participant != sig.signer:
        raise UnknownKey(
            f"{sig.signer} has no key {sig.key_id}; register it with key.add first",
            key_id=sig.key_id,
            signer=sig.signer,
        )
    return rec, rec.public_key


def signature_keys(state: LedgerState, env: Envelope) -> list[tuple[Signature, bytes]]:
    """Each signature of ``env`` with the public key it names, as the state at the entry
    resolves it (a registered key of the signer, or a key the entry itself introduces).

    For checking the Ed25519 work elsewhere (the audit spreads it over processes). No
    cryptography, no authorisation. Raises UnknownKey.
    """
    new = introduced_keys(env)
    return [(sig, _resolve(state, env, sig, new)[1]) for sig in env.signatures]


def verify_signatures(state: LedgerState, env: Envelope) -> frozenset[tuple[str, bytes]]:
    """Check every signature cryptographically against the key it names. No authorisation.

    Returns the (key id, public key) pairs that verified, to hand to :func:`apply_entry` so
    that sealing does not repeat the Ed25519 work. Raises UnknownKey, InvalidSignature.
    """
    done: set[tuple[str, bytes]] = set()
    for sig, raw in signature_keys(state, env):
        verify_entry_signature(env, sig, raw)
        done.add((sig.key_id, raw))
    return frozenset(done)


def _check_signatures(
    state: LedgerState, env: Envelope, pos: Position, verified: VerifiedKeys | None
) -> SignedBy:
    new = introduced_keys(env)
    by: dict[str, list[KeyRecord | None]] = {}
    for sig in env.signatures:
        rec, raw = _resolve(state, env, sig, new)
        if rec is not None and not rec.active_at(pos.index):
            raise KeyRevoked(
                f"key {sig.key_id} of {sig.signer} was revoked at log index {rec.revoked_index}"
                " and can no longer sign",
                key_id=sig.key_id,
                signer=sig.signer,
            )
        if verified is None or (sig.key_id, raw) not in verified:
            verify_entry_signature(env, sig, raw)
        by.setdefault(sig.signer, []).append(rec)
    if env.author not in by:
        raise MissingSignature(
            f"the author {env.author} must sign the entry", signer=env.author
        )
    return SignedBy(
        keys={k: tuple(v) for k, v in by.items()},
        new_keys={kid: raw for kid, (_, raw) in new.items()},
    )


Handler = Callable[[LedgerState, Envelope, Position, SignedBy], None]


_HANDLERS: dict[EntryType, Handler] = {}


def _handlers() -> Mapping[EntryType, Handler]:
    if not _HANDLERS:
        from . import commerce, custody, governance

        for module in (governance, custody, commerce):
            _HANDLERS.update(module.HANDLERS)
        assert set(_HANDLERS) == set(EntryType), "every entry type needs its rule"
    return _HANDLERS


def prefetch(state: LedgerState, envs: Sequence[Envelope]) -> None:
    """Load in bulk what :func:`apply_entry` looks up first for each of ``envs``: the nonce
    of its author, the keys that signed it and the participants who did (and the one a
    governance entry names). One query per kind for a whole block instead of one per record;
    anything else a rule needs is still loaded when asked for."""
    participants: set[str] = set()
    keys: set[str] = set()
    for env in envs:
        participants.add(env.author)
        for sig in env.signatures:
            participants.add(sig.signer)
            keys.add(sig.key_id)
        named = env.payload.get("participant")
        if isinstance(named, str):
            participants.add(named)
        elif isinstance(named, dict) and isinstance(named.get("id"), str):
            participants.add(named["id"])
        keys.update(_registered_key_ids(env))
    state.prefetch(
        participants=participants, keys=keys, nonces=[(env.author, env.nonce) for env in envs]
    )


def _registered_key_ids(env: Envelope) -> list[str]:
    """Ids of the keys an entry registers, which its rule looks up to refuse a key already in
    use: a participant's keys (``participant.register``, each admin's in genesis) or the new
    key of ``key.add``. The payload's shape was validated when it was parsed; a key that does
    not decode is skipped here, and its rule refuses it."""
    p = env.payload
    if env.type is EntryType.PARTICIPANT_REGISTER:
        listed = [k["public_key"] for k in p["participant"]["keys"]]
    elif env.type is EntryType.GENESIS:
        listed = [k["public_key"] for a in p["admins"] for k in a["keys"]]
    elif env.type is EntryType.KEY_ADD:
        listed = [p["public_key"]]
    else:
        return []
    out: list[str] = []
    for value in listed:
        try:
            out.append(compute_key_id(unb64(value, field="public_key", length=32)))
        except LedgerError:
            continue
    return out


def apply_entry(
    state: LedgerState,
    env: Envelope,
    pos: Position,
    *,
    verified: VerifiedKeys | None = None,
) -> None:
    """Check ``env`` against the state at ``pos`` and apply it.

    ``verified`` lists keys whose signatures on ``env`` were already checked (by the worker
    that accepted it); others are verified here. Raises a LedgerError leaf naming the rule
    broken; on error the state is unchanged.
    """
    is_genesis = env.type is EntryType.GENESIS
    if is_genesis != (pos.index == 0):
        raise GenesisRequired(
            "ledger.genesis is the only entry of block 0"
            if is_genesis
            else "the ledger has no genesis yet; run `filiera init`"
        )
    if not is_genesis and state.get_policy() is None:
        raise NotInitialised("the ledger has no genesis block; run `filiera init`")
    entry_time = parse_time(env.payload["time"], field="payload.time")
    if entry_time > pos.block_time + MAX_CLOCK_SKEW:
        raise TimeInFuture(
            f"payload.time {env.time} is more than {int(MAX_CLOCK_SKEW.total_seconds())} s"
            " ahead of the ledger clock; check the submitting system's clock",
            field="payload.time",
        )
    used = state.nonce_entry(env.author, env.nonce)
    if used is not None:
        raise NonceReused(
            f"{env.author} already used nonce {env.nonce} for entry {used}; use a fresh nonce",
            entry=used,
        )
    signed = _check_signatures(state, env, pos, verified)
    _handlers()[env.type](state, env, pos, signed)
    state.put_nonce(env.author, env.nonce, env.id)
    state.put_entry(env.id)
