"""Commercial rules (PROTOCOL §4): contracts, their closing, payments and confirmations.

Commercial terms are visible only to the parties and auditors (the API's visibility rules);
here we only decide what may stand in the log: a contract needs both parties' signatures, a
payment against a contract must flow from its buyer to its seller in its currency, and only
the payee can confirm a payment.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..entries import Envelope
from ..errors import (
    ContractExists,
    ContractNotOpen,
    ContractPartiesMismatch,
    CurrencyMismatch,
    MissingCosignature,
    NotAParty,
    PaymentConfirmed,
    SameParty,
    UnknownContract,
    UnknownPayment,
)
from ..payloads import EntryType, Role
from ..state import ContractRecord, LedgerState, PaymentRecord
from . import Handler, Position, SignedBy
from .custody import check_signers, require_participant

__all__ = ["HANDLERS", "TRADE_ROLES", "open_contract"]

TRADE_ROLES = frozenset(
    {Role.PRODUCER, Role.PROCESSOR, Role.WAREHOUSE, Role.RETAILER, Role.BUYER, Role.CARRIER}
)


def open_contract(state: LedgerState, contract_id: str, field: str) -> ContractRecord:
    """The open contract ``contract_id``. Raises UnknownContract, ContractNotOpen."""
    c = state.contract(contract_id)
    if c is None:
        raise UnknownContract(f"{field}: no contract {contract_id} in the ledger", contract=contract_id)
    if c.status != "open":
        raise ContractNotOpen(f"{field}: contract {contract_id} is {c.status}", contract=contract_id, status=c.status)
    return c


def _contract(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    buyer, seller, cid = str(p["buyer"]), str(p["seller"]), str(p["contract"])
    if buyer == seller:
        raise SameParty("a contract needs two different parties")
    if env.author not in (buyer, seller):
        raise NotAParty(f"a contract is authored by its buyer or seller, not {env.author}")
    require_participant(state, buyer, "buyer")
    require_participant(state, seller, "seller")
    check_signers(state, env, signed, parties=[buyer, seller], roles=TRADE_ROLES)
    missing = [x for x in (buyer, seller) if not signed.signed_with_existing_key(x)]
    if missing:
        raise MissingCosignature(
            f"a contract needs the signatures of both buyer and seller; missing {missing[0]}",
            signer=missing[0],
        )
    if state.contract(cid) is not None:
        raise ContractExists(f"contract id {cid} is already in the ledger", contract=cid)
    state.put(
        "contract",
        ContractRecord(id=cid, buyer=buyer, seller=seller, terms=dict(p["terms"]), status="open", entry=env.id, index=pos.index),
    )


def _contract_close(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    c = state.contract(str(env.payload["contract"]))
    if c is None:
        raise UnknownContract(f"no contract {env.payload['contract']} in the ledger", contract=env.payload["contract"])
    if env.author not in c.parties():
        raise NotAParty(f"only {c.buyer} or {c.seller} can close contract {c.id}")
    check_signers(state, env, signed, parties=c.parties(), roles=TRADE_ROLES)
    open_contract(state, c.id, "contract")
    state.put(
        "contract",
        ContractRecord(
            id=c.id, buyer=c.buyer, seller=c.seller, terms=c.terms, status=str(env.payload["status"]),
            entry=c.entry, index=c.index, closed_index=pos.index,
        ),
    )


def _payment(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    p = env.payload
    payer, payee = str(p["payer"]), str(p["payee"])
    if env.author != payer:
        raise NotAParty(f"a payment is authored by its payer {payer}, not {env.author}")
    if payer == payee:
        raise SameParty("a payment needs two different parties")
    require_participant(state, payee, "payee", roles=TRADE_ROLES, to="confirm the payment")
    check_signers(state, env, signed, parties=[payer], roles=TRADE_ROLES)
    if "contract" in p:
        c = state.contract(str(p["contract"]))
        if c is None:
            raise UnknownContract(f"no contract {p['contract']} in the ledger", contract=p["contract"])
        if (payer, payee) != (c.buyer, c.seller):
            raise ContractPartiesMismatch(
                f"payments under contract {c.id} go from {c.buyer} to {c.seller}",
                contract=c.id,
            )
        if p["currency"] != c.terms["currency"]:
            raise CurrencyMismatch(
                f"contract {c.id} is in {c.terms['currency']}, not {p['currency']}", contract=c.id
            )
    state.put(
        "payment",
        PaymentRecord(
            id=env.id, payer=payer, payee=payee, amount=str(p["amount"]), currency=str(p["currency"]),
            paid_at=str(p["paid_at"]), index=pos.index, contract=p.get("contract"),
        ),
    )


def _payment_confirm(state: LedgerState, env: Envelope, pos: Position, signed: SignedBy) -> None:
    pay = state.payment(str(env.payload["payment"]))
    if pay is None:
        raise UnknownPayment(f"no payment {env.payload['payment']} in the ledger", payment=env.payload["payment"])
    if env.author != pay.payee:
        raise NotAParty(f"only the payee {pay.payee} can confirm this payment")
    check_signers(state, env, signed, parties=[pay.payee], roles=TRADE_ROLES)
    if pay.confirmed_index is not None:
        raise PaymentConfirmed(f"payment {pay.id} was confirmed at index {pay.confirmed_index}", payment=pay.id)
    state.put(
        "payment",
        PaymentRecord(
            id=pay.id, payer=pay.payer, payee=pay.payee, amount=pay.amount, currency=pay.currency,
            paid_at=pay.paid_at, index=pay.index, contract=pay.contract, confirmed_index=pos.index,
        ),
    )


HANDLERS: Mapping[EntryType, Handler] = {
    EntryType.CONTRACT: _contract,
    EntryType.CONTRACT_CLOSE: _contract_close,
    EntryType.PAYMENT: _payment,
    EntryType.PAYMENT_CONFIRM: _payment_confirm,
}
