"""Custody rules (PROTOCOL §4): origins, handoffs, receipts, transformations, attestations.

Custody passes only through signed entries. A lot is born in an ``origin`` (held by its
producer) or as the output of a ``transform`` (held by the processor, with its inputs as
parents); it moves when its custodian hands it off and the recipient receives it; a rejected
receipt returns it. Every check here runs at sealing against the state at the entry's exact
position, so of two handoffs of the same lot racing, exactly one is sealed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..entries import Envelope
from ..errors import (
    DuplicateLot,
    HandoffNotOpen,
    LotConsumed,
    LotInTransit,
    NotAParty,
    NotCustodian,
    NotRecipient,
    RoleNotAllowed,
    SameParty,
    UnknownHandoff,
    UnknownLot,
    UnknownParticipant,
    UnknownSubject,
)
from ..payloads import EntryType, Role
from ..state import AttestationRecord, HandoffRecord, LedgerState, LotRecord, ParticipantRecord
from . import Handler, Position, SignedBy

__all__ = ["HANDLERS", "CUSTODY_ROLES", "check_signers", "require_participant"]

CUSTODY_ROLES = frozenset(
    {Role.PRODUCER, Role.PROCESSOR, Role.CARRIER, Role.WAREHOUSE, Role.RETAILER}
)


def require_participant(
    state: LedgerState, pid: str, field: str, *, roles: frozenset[str] | None = None, to: str = ""
) -> ParticipantRecord:
    """The registered participant ``pid`` named by ``field``; with ``roles``, one of which it
    must hold so that it can later ``to`` (sign the receipt, confirm the payment), else the
    entry would leave lots or payments stuck for ever. Raises UnknownParticipant,
    RoleNotAllowed."""
    rec = state.participant(pid)
    if rec is None:
        raise UnknownParticipant(f"{field} {pid} is not a registered participant", participant=pid, field=field)
    if roles is not None and not rec.has_any_role(roles):
        raise RoleNotAllowed(
            f"{field} {pid} has none of the roles {', '.join(sorted(roles))} and could never {to}",
            participant=pid,
            field=field,
        )
    return rec


def check_signers(
    state: LedgerState,
    env: Envelope,
    signed: SignedBy,
    *,
    parties: Iterable[str],
    roles: frozenset[str],
) -> None:
    """Every signer must be one of ``parties``, signing with an existing key, with one of
    ``roles`` (PROTOCOL §3: a signature counts only if the signer's roles allow the type)."""
    allowed = frozenset(parties)
    for signer in sorted(signed.signers()):
        if signer not in allowed:
            raise NotAParty(
                f"{signer} is not a party to this {env.type}; only {', '.join(sorted(allowed))} may sign",
                signer=signer,
            )
        rec = state.participant(signer)
        if rec is None or not rec.has_any_role(roles):
            raise RoleNotAllowed(
                f"{signer} has no role allowed to sign {env.type} ({', '.join(sorted(roles))})",
                signer=signer,
                type=str(env.type),
            )


def _lot_held_by(state: LedgerState, lot_id: str, holder: str, field: str) -> LotRecord:
    lot = state.lot(lot_id)
    if lot is None:
        raise UnknownLot(f"{field}: lot {lot_id} is not in the ledger", lot=lot_id)
    if lot.status == "consumed":
        raise LotConsumed(f"{field}: lot {lot_id} was consumed by a transformation", lot=lot_id)
    if lot.status == "in_transit":
        raise LotInTransit(
            f"{field}: lot {lot_id} is in transit (handoff {lot.handoff}); wait for its receipt",
            lot=lot_id,
            handoff=lot.handoff,
        )
    if lot.custodian != holder:
        raise NotCustodian(
            f"{field}: lot {lot_id} is held by {lot.custodian}, not {holder}",
            lot=lot_id,
            custodian=lot.custodian,
        )
    return lot


def _new_lots(
    state: LedgerState, lots: list[Mapping[str, str]], *, holder: str, env: Envelope, pos: Position, parents: tuple[str, ...]
) -> list[LotRecord]:
    made = []
    for i, spec in enumerate(lots):
        if state.lot(spec["lot"]) is not None:
            raise DuplicateLot(f"lot id {spec['lot']} is already in the ledger", lot=spec["lot"], field=f"lots[{i}]")
        made.append(
            LotRecord(
                lot=spec["lot"], product=spec["product"], quantity=spec["quantity"], unit=spec["unit"],
                custodian=holder, status="held", created_by=env.id, created_index=pos.index,
                parents=parents, updated_index=pos.index,
            )
        )
    return made


def _moved(lot: LotRecord, pos: Position, **changes: object) -> LotRecord:
    fields = {
        "lot": lot.lot, "product": lot.product, "quantity": lot.quantity, "unit": lot.unit,
        "custodian": lot.custodian, "status": lot.status, "created_by": lot.created_by,
        "created_index": lot.created_index, "parents": lot.parents, "handoff": lot.handoff,
        "updated_index": pos.index,
    }
    fields.update(changes)
    return LotRecord(**fields)  # type: ignore[arg-type]


def _origin(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    check_signers(state, env, signed, parties=[env.author], roles=frozenset({Role.PRODUCER}))
    for lot in _new_lots(state, env.payload["lots"], holder=env.author, env=env, pos=pos, parents=()):
        state.put("lot", lot)


def _handoff(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    sender, recipient = str(p["from"]), str(p["to"])
    if env.author != sender:
        raise NotCustodian(f"a handoff is authored by its sender {sender}, not {env.author}")
    if sender == recipient:
        raise SameParty(f"a handoff from {sender} to itself moves nothing")
    require_participant(state, recipient, "to", roles=CUSTODY_ROLES, to="receive the lots")
    check_signers(state, env, signed, parties=[sender, recipient], roles=CUSTODY_ROLES)
    if "contract" in p:
        from .commerce import open_contract

        open_contract(state, str(p["contract"]), "contract")
    lots = [_lot_held_by(state, lot, sender, f"lots[{i}]") for i, lot in enumerate(p["lots"])]
    cosigned = signed.signed_with_existing_key(recipient)
    for lot in lots:
        if cosigned:
            # The recipient signed the handoff itself: received at once (PROTOCOL §4).
            state.put("lot", _moved(lot, pos, custodian=recipient, status="held", handoff=None))
        else:
            state.put("lot", _moved(lot, pos, status="in_transit", handoff=env.id))
    state.put(
        "handoff",
        HandoffRecord(
            id=env.id, sender=sender, recipient=recipient, lots=tuple(p["lots"]),
            status="accepted" if cosigned else "open", dispatched_at=str(p["dispatched_at"]),
            index=pos.index, contract=p.get("contract"),
            received_at=str(p["dispatched_at"]) if cosigned else None,
            closed_by=env.id if cosigned else None,
        ),
    )


def _receipt(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    h = state.handoff(str(p["handoff"]))
    if h is None:
        raise UnknownHandoff(f"no handoff {p['handoff']} in the ledger", handoff=p["handoff"])
    if env.author != h.recipient:
        raise NotRecipient(
            f"only {h.recipient}, the handoff's recipient, can receive it", recipient=h.recipient
        )
    check_signers(state, env, signed, parties=[h.recipient], roles=CUSTODY_ROLES)
    if h.status != "open":
        raise HandoffNotOpen(f"handoff {h.id} is already {h.status}", handoff=h.id, status=h.status)
    accepted = p["status"] == "accepted"
    for lot_id in h.lots:
        lot = state.lot(lot_id)
        assert lot is not None and lot.handoff == h.id
        state.put(
            "lot",
            _moved(lot, pos, custodian=h.recipient if accepted else h.sender, status="held", handoff=None),
        )
    state.put(
        "handoff",
        HandoffRecord(
            id=h.id, sender=h.sender, recipient=h.recipient, lots=h.lots,
            status="accepted" if accepted else "rejected", dispatched_at=h.dispatched_at,
            index=h.index, contract=h.contract, received_at=str(p["received_at"]), closed_by=env.id,
        ),
    )


def _transform(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    check_signers(state, env, signed, parties=[env.author], roles=frozenset({Role.PROCESSOR}))
    inputs = [_lot_held_by(state, lot, env.author, f"inputs[{i}]") for i, lot in enumerate(p["inputs"])]
    overlap = set(p["inputs"]) & {o["lot"] for o in p["outputs"]}
    if overlap:
        raise DuplicateLot(f"lot {sorted(overlap)[0]} cannot be both input and output", lot=sorted(overlap)[0])
    outputs = _new_lots(state, p["outputs"], holder=env.author, env=env, pos=pos, parents=tuple(p["inputs"]))
    for lot in inputs:
        state.put("lot", _moved(lot, pos, status="consumed"))
    for lot in outputs:
        state.put("lot", lot)


def _attestation(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    check_signers(state, env, signed, parties=[env.author], roles=frozenset({Role.CERTIFIER}))
    subject = str(p["subject"])
    known = state.entry_exists(subject) if _is_entry_id(subject) else state.lot(subject) is not None
    if not known:
        raise UnknownSubject(
            f"subject {subject} is neither a sealed entry id nor a lot in the ledger", subject=subject
        )
    state.put(
        "attestation",
        AttestationRecord(id=env.id, author=env.author, subject=subject, claims=tuple(p["claims"]), index=pos.index),
    )


def _is_entry_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


HANDLERS: Mapping[EntryType, Handler] = {
    EntryType.ORIGIN: _origin,
    EntryType.HANDOFF: _handoff,
    EntryType.RECEIPT: _receipt,
    EntryType.TRANSFORM: _transform,
    EntryType.ATTESTATION: _attestation,
}
