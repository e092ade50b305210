"""Who may see an entry (PROTOCOL §6): auditors and admins see all; other members see the
entries they author, sign or are named in. Commercial terms stay among the parties.

:func:`entry_parties` is computed once, when the entry is sealed, from the entry and the state
right after it; the API filters reads with it.
"""

from __future__ import annotations

from .entries import Envelope
from .payloads import EntryType
from .state import LedgerState

__all__ = ["entry_parties", "SEE_ALL_ROLES"]

SEE_ALL_ROLES = frozenset({"auditor", "admin"})

# Payload fields that name a participant directly.
_NAMING_FIELDS = ("from", "to", "buyer", "seller", "payer", "payee")


def entry_parties(env: Envelope, state: LedgerState) -> frozenset[str]:
    """The participants an entry concerns: author, signers, named parties, and for entries that
    refer to another (receipt, payment.confirm), the parties of the one referred to."""
    p = env.payload
    parties = {env.author, *env.signers()}
    parties.update(str(p[f]) for f in _NAMING_FIELDS if f in p)
    if env.type in (EntryType.PARTICIPANT_UPDATE, EntryType.KEY_ADD, EntryType.KEY_REVOKE):
        parties.add(str(p["participant"]))
    elif env.type is EntryType.PARTICIPANT_REGISTER:
        parties.add(str(p["participant"]["id"]))
    elif env.type is EntryType.RECEIPT:
        h = state.handoff(str(p["handoff"]))
        if h is not None:
            parties.update((h.sender, h.recipient))
    elif env.type is EntryType.PAYMENT_CONFIRM:
        pay = state.payment(str(p["payment"]))
        if pay is not None:
            parties.update((pay.payer, pay.payee))
    elif env.type is EntryType.CONTRACT_CLOSE:
        c = state.contract(str(p["contract"]))
        if c is not None:
            parties.update(c.parties())
    elif env.type is EntryType.ATTESTATION:
        # Whoever holds the attested lot, or wrote the attested entry, sees the attestation.
        subject = str(p["subject"])
        lot = state.lot(subject)
        if lot is not None:
            parties.add(lot.custodian)
    if env.type in (EntryType.HANDOFF, EntryType.PAYMENT) and "contract" in p:
        # The parties to a contract follow the deliveries and payments made under it.
        c = state.contract(str(p["contract"]))
        if c is not None:
            parties.update(c.parties())
    parties.discard("ledger")
    return frozenset(parties)
