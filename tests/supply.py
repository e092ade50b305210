"""Builders for supply-chain entries (PROTOCOL §4). Every envelope is signed by factories."""

from __future__ import annotations

from typing import Any

from .factories import ORIGIN, Member, envelope, now, payload


def lot(lot_id: str, product: str = "olives", quantity: str = "1000", unit: str = "kg") -> dict[str, str]:
    return {"lot": lot_id, "product": product, "quantity": quantity, "unit": unit}


def origin(producer: Member, *lots: dict[str, str], country: str = "IT", region: str = "Puglia", claims: list[str] | None = None, origin_: str = ORIGIN) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "lots": list(lots),
        "site": "Uliveto di Bitonto",
        "origin": {"country": country, "region": region, "produced_on": "2026-10-15"},
    }
    if claims:
        fields["claims"] = claims
    p = payload("origin", producer.id, origin=origin_)
    p.update(fields)
    return envelope(p, producer)


def handoff(sender: Member, recipient: Member, lots: list[str], *, cosign: bool = False, contract: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"from": sender.id, "to": recipient.id, "lots": lots, "dispatched_at": now()}
    if contract:
        fields["contract"] = contract
    signers = (sender, recipient) if cosign else (sender,)
    return envelope(payload("handoff", sender.id, **fields), *signers)


def receipt(recipient: Member, handoff_id: str, status: str = "accepted") -> dict[str, Any]:
    return envelope(payload("receipt", recipient.id, handoff=handoff_id, status=status, received_at=now()), recipient)


def transform(processor: Member, inputs: list[str], *outputs: dict[str, str]) -> dict[str, Any]:
    return envelope(payload("transform", processor.id, inputs=inputs, outputs=list(outputs), site="Frantoio", process="cold pressing"), processor)


def attestation(certifier: Member, subject: str, claims: list[str]) -> dict[str, Any]:
    cert = {"scheme": "EU organic", "number": "IT-BIO-006-1234", "valid_until": "2027-12-31"}
    return envelope(payload("attestation", certifier.id, subject=subject, claims=claims, certificate=cert), certifier)


def contract(buyer: Member, seller: Member, contract_id: str, *, signers: tuple[Member, ...] | None = None, currency: str = "EUR") -> dict[str, Any]:
    terms = {
        "product": "extra virgin olive oil", "quantity": "500", "unit": "l", "price": "4250.00",
        "currency": currency, "deliver_by": "2026-12-20",
        "requirements": {"countries": ["IT"], "claims": ["organic"]},
    }
    p = payload("contract", buyer.id, contract=contract_id, buyer=buyer.id, seller=seller.id, terms=terms)
    return envelope(p, *(signers or (buyer, seller)))


def close_contract(party: Member, contract_id: str, status: str = "fulfilled") -> dict[str, Any]:
    return envelope(payload("contract.close", party.id, contract=contract_id, status=status), party)


def payment(payer: Member, payee: Member, amount: str = "4250.00", *, contract: str | None = None, currency: str = "EUR") -> dict[str, Any]:
    fields: dict[str, Any] = {"payer": payer.id, "payee": payee.id, "amount": amount, "currency": currency, "paid_at": now()}
    if contract:
        fields["contract"] = contract
    return envelope(payload("payment", payer.id, **fields), payer)


def confirm(payee: Member, payment_id: str) -> dict[str, Any]:
    return envelope(payload("payment.confirm", payee.id, payment=payment_id), payee)
