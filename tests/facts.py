"""Business facts of supply-chain entries, to compare two ledgers' histories of the same lots.

Bookkeeping is left out: the ledger's origin, the nonce and the signing time. A receipt names
its handoff by the handoff's facts (entry ids differ between ledgers), quantities compare as
numbers (EPCIS carries them as JSON numbers), and a co-signed handoff counts as a handoff and
its receipt at the moment of dispatch, which is what it means (PROTOCOL §4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from ledger import jcs

__all__ = ["business_facts"]


def business_facts(entries: Iterable[tuple[Mapping[str, Any], Iterable[str]]]) -> list[dict[str, Any]]:
    """Facts of (payload, signers) pairs in log order."""
    handoffs: dict[str, tuple[Any, ...]] = {}
    facts: list[dict[str, Any]] = []
    for payload, signers in entries:
        p = dict(payload)
        fact = {k: v for k, v in p.items() if k not in ("ledger", "nonce", "time")}
        for key in ("lots", "outputs"):
            if p["type"] in ("origin", "transform") and key in fact:
                fact[key] = [{**lot, "quantity": Decimal(lot["quantity"])} for lot in fact[key]]
        if p["type"] == "handoff":
            named = (p["from"], p["to"], tuple(p["lots"]), p["dispatched_at"])
            handoffs[hashlib.sha256(jcs.canonicalize(p)).hexdigest()] = named
        if p["type"] == "receipt":
            fact["handoff"] = handoffs[p["handoff"]]
        facts.append(fact)
        if p["type"] == "handoff" and p["to"] in set(signers):
            received = {"type": "receipt", "author": p["to"], "handoff": named, "status": "accepted", "received_at": p["dispatched_at"]}
            if "location" in p:
                received["location"] = p["location"]
            facts.append(received)
    return facts
