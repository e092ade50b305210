"""Governance rules (PROTOCOL §4): genesis, participants and their keys.

Membership lives on the ledger itself. Admins register and update participants with a quorum
fixed at genesis; participants add and revoke their own keys, and an admin quorum can do it for
them (a participant who lost every key is not locked out for ever).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..encoding import unb64
from ..entries import Envelope
from ..errors import (
    InvalidPolicy,
    KeyInUse,
    KeyRevoked,
    MissingSignature,
    ParticipantExists,
    ParticipantNotFound,
    ParticipantReserved,
    QuorumNotMet,
    RoleNotAllowed,
    UnknownKey,
)
from ..keys import PublicKey
from ..payloads import EntryType, Role
from ..state import KeyRecord, LedgerState, ParticipantRecord, Policy
from . import Handler, Position, SignedBy

__all__ = ["HANDLERS", "RESERVED_IDS"]

# "ledger" names the ledger's own key in signatures; no member may take it.
RESERVED_IDS = frozenset({"ledger"})


def _policy(state: LedgerState) -> Policy:
    policy = state.get_policy()
    assert policy is not None  # apply_entry refuses every entry before genesis
    return policy


def _require_admin_quorum(state: LedgerState, env: Envelope, signed: SignedBy) -> None:
    """Every signer must be an admin with an existing key, and enough of them must sign."""
    quorum = _policy(state).admin_quorum
    admins = 0
    for signer in signed.signers():
        rec = state.participant(signer)
        if rec is None or not rec.has_role(Role.ADMIN):
            raise RoleNotAllowed(
                f"{signer} is not an admin; {env.type} needs {quorum} admin signature(s)",
                signer=signer,
                type=str(env.type),
            )
        if signed.signed_with_existing_key(signer):
            admins += 1
    if admins < quorum:
        raise QuorumNotMet(
            f"{env.type} needs signatures of {quorum} distinct admins, got {admins}",
            required=quorum,
            got=admins,
        )


def _admin_quorum_met(state: LedgerState, signed: SignedBy, exclude: str) -> bool:
    quorum = _policy(state).admin_quorum
    admins = sum(
        1
        for s in signed.signers()
        if s != exclude
        and (rec := state.participant(s)) is not None
        and rec.has_role(Role.ADMIN)
        and signed.signed_with_existing_key(s)
    )
    return admins >= quorum


def _new_keys(
    state: LedgerState, keys: list[Mapping[str, Any]], field: str, pos: Position, owner: str
) -> list[KeyRecord]:
    records: list[KeyRecord] = []
    seen: set[str] = set()
    for i, k in enumerate(keys):
        pk = PublicKey.from_b64(k["public_key"], field=f"{field}[{i}].public_key")
        if pk.key_id in seen or state.key(pk.key_id) is not None:
            raise KeyInUse(
                f"key {pk.key_id} is already registered; every key belongs to one participant",
                key_id=pk.key_id,
            )
        seen.add(pk.key_id)
        records.append(KeyRecord(pk.key_id, owner, pk.raw, pos.index, pos.height))
    return records


def _participant_record(obj: Mapping[str, Any], pos: Position) -> ParticipantRecord:
    return ParticipantRecord(
        id=str(obj["id"]),
        name=str(obj["name"]),
        roles=tuple(obj["roles"]),
        attributes=dict(obj.get("attributes", {})),
        registered_index=pos.index,
        registered_height=pos.height,
        updated_index=pos.index,
    )


def _genesis(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    ledger_key = unb64(p["ledger_key"], field="payload.ledger_key", length=32)
    PublicKey(ledger_key)
    if signed.signers() != {"ledger"} or env.author != "ledger":
        raise MissingSignature(
            "ledger.genesis is authored and signed by the ledger key alone (signer \"ledger\")"
        )
    admins: list[ParticipantRecord] = []
    keys: list[KeyRecord] = []
    for i, adm in enumerate(p["admins"]):
        if adm["id"] in RESERVED_IDS or any(a.id == adm["id"] for a in admins):
            raise ParticipantExists(
                f"payload.admins[{i}].id {adm['id']!r} is reserved or listed twice",
                participant=adm["id"],
            )
        if Role.ADMIN not in adm["roles"]:
            raise InvalidPolicy(f"payload.admins[{i}] must have the admin role")
        admins.append(_participant_record(adm, pos))
        fresh = _new_keys(state, adm["keys"], f"payload.admins[{i}].keys", pos, adm["id"])
        if any(k.key_id in {x.key_id for x in keys} for k in fresh):
            raise KeyInUse("an admin key is listed twice in genesis")
        keys.extend(fresh)
    quorum = p["policy"]["admin_quorum"]
    if quorum > len(admins):
        raise InvalidPolicy(
            f"admin_quorum {quorum} exceeds the {len(admins)} admin(s) named in genesis"
        )
    state.put_policy(Policy(origin=str(p["ledger"]), ledger_key=ledger_key, admin_quorum=quorum))
    for a in admins:
        state.put_participant(a)
    for k in keys:
        state.put_key(k)


def _register(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    _require_admin_quorum(state, env, signed)
    obj = env.payload["participant"]
    pid = str(obj["id"])
    if pid in RESERVED_IDS:
        raise ParticipantReserved(f"participant id {pid!r} is reserved", participant=pid)
    if state.participant(pid) is not None:
        raise ParticipantExists(f"participant {pid} is already registered", participant=pid)
    keys = _new_keys(state, obj["keys"], "payload.participant.keys", pos, pid)
    state.put_participant(_participant_record(obj, pos))
    for k in keys:
        state.put_key(k)


def _update(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    _require_admin_quorum(state, env, signed)
    pid = str(env.payload["participant"])
    rec = state.participant(pid)
    if rec is None:
        raise ParticipantNotFound(f"participant {pid} is not registered", participant=pid)
    name = env.payload.get("name", rec.name)
    roles = tuple(env.payload.get("roles", rec.roles))
    if "name" not in env.payload and "roles" not in env.payload:
        raise InvalidPolicy("participant.update must change name or roles")
    state.put_participant(
        ParticipantRecord(
            rec.id, str(name), roles, rec.attributes, rec.registered_index,
            rec.registered_height, pos.index,
        )
    )


def _key_add(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    pid = str(env.payload["participant"])
    if state.participant(pid) is None:
        raise ParticipantNotFound(f"participant {pid} is not registered", participant=pid)
    (new,) = _new_keys(state, [{"public_key": env.payload["public_key"]}], "payload", pos, pid)
    if not signed.signed_with_new_key(pid, new.key_id):
        raise MissingSignature(
            f"key.add must be signed by the new key {new.key_id} as {pid} (proof of possession)",
            key_id=new.key_id,
        )
    _owner_or_admins(state, env, signed, pid)
    state.put_key(new)


def _owner_or_admins(state: LedgerState, env: Envelope, signed: SignedBy, pid: str) -> None:
    """The participant itself with an active key, or an admin quorum, must sign; nobody else."""
    for signer in signed.signers():
        if signer != pid:
            rec = state.participant(signer)
            if rec is None or not rec.has_role(Role.ADMIN):
                raise RoleNotAllowed(
                    f"{signer} may not sign {env.type} for {pid}: only {pid} or admins",
                    signer=signer,
                )
    if signed.signed_with_existing_key(pid) or _admin_quorum_met(state, signed, exclude=pid):
        return
    raise MissingSignature(
        f"{env.type} for {pid} needs a signature by an active key of {pid} or an admin quorum"
    )


def _key_revoke(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    pid = str(env.payload["participant"])
    kid = str(env.payload["key_id"])
    if state.participant(pid) is None:
        raise ParticipantNotFound(f"participant {pid} is not registered", participant=pid)
    rec = state.key(kid)
    if rec is None or rec.participant != pid:
        raise UnknownKey(f"{pid} has no key {kid}", key_id=kid)
    if rec.revoked_index is not None:
        raise KeyRevoked(f"key {kid} is already revoked", key_id=kid)
    _owner_or_admins(state, env, signed, pid)
    state.put_key(
        KeyRecord(
            rec.key_id, rec.participant, rec.public_key, rec.added_index, rec.added_height,
            revoked_index=pos.index, revoked_height=pos.height, reason=str(env.payload["reason"]),
        )
    )


HANDLERS: Mapping[EntryType, Handler] = {
    EntryType.GENESIS: _genesis,
    EntryType.PARTICIPANT_REGISTER: _register,
    EntryType.PARTICIPANT_UPDATE: _update,
    EntryType.KEY_ADD: _key_add,
    EntryType.KEY_REVOKE: _key_revoke,
}
