"""ledger.provenance alone: the story derived from entries, each check and its named reason,
including stories no honest ledger could hold (a forged or incomplete certificate's), which
only an offline verifier ever sees. No database, no HTTP."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from ledger.provenance import CERTIFIED, NOT_CERTIFIED, CheckName, Reason, StoryEntry, assemble


class Story:
    """Entries in log order, as a sealed log would hold them (ids are payload hashes)."""

    def __init__(self) -> None:
        self.entries: list[StoryEntry] = []

    def add(self, type_: str, author: str, *, cosigners: tuple[str, ...] = (), **fields: Any) -> str:
        payload = {"type": type_, "author": author, "n": len(self.entries), **fields}
        entry_id = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        self.entries.append(StoryEntry(id=entry_id, index=len(self.entries) + 10, payload=payload, signers=frozenset({author, *cosigners})))
        return entry_id

    def origin(self, producer: str, *lots: str, country: str = "IT", claims: tuple[str, ...] = ()) -> str:
        fields: dict[str, Any] = {
            "lots": [{"lot": x, "product": "olives", "quantity": "100", "unit": "kg"} for x in lots],
            "site": "grove", "origin": {"country": country, "region": "Puglia"},
        }
        if claims:
            fields["claims"] = list(claims)
        return self.add("origin", producer, **fields)

    def transform(self, processor: str, inputs: list[str], *outputs: str) -> str:
        return self.add("transform", processor, inputs=inputs, site="mill",
                        outputs=[{"lot": x, "product": "oil", "quantity": "10", "unit": "l"} for x in outputs])

    def handoff(self, sender: str, recipient: str, lots: list[str], *, cosign: bool = False, contract: str | None = None) -> str:
        fields: dict[str, Any] = {"from": sender, "to": recipient, "lots": lots, "dispatched_at": "2026-10-16T08:00:00Z"}
        if contract:
            fields["contract"] = contract
        return self.add("handoff", sender, cosigners=(recipient,) if cosign else (), **fields)

    def receipt(self, recipient: str, handoff: str, status: str = "accepted") -> str:
        return self.add("receipt", recipient, handoff=handoff, status=status, received_at="2026-10-16T12:00:00Z")

    def attest(self, subject: str, *claims: str) -> str:
        return self.add("attestation", "cert", subject=subject, claims=list(claims))

    def contract(self, contract_id: str, *, countries: list[str] | None = None, claims: list[str] | None = None) -> str:
        reqs: dict[str, Any] = {}
        if countries:
            reqs["countries"] = countries
        if claims:
            reqs["claims"] = claims
        terms = {"product": "oil", "quantity": "10", "unit": "l", "price": "99.00", "currency": "EUR",
                 "deliver_by": "2026-12-01", "requirements": reqs}
        return self.add("contract", "shop", contract=contract_id, buyer="shop", seller="mill", terms=terms)


def chain() -> Story:
    """Two groves, a mill, a bottler: a certified story of lot BTL."""
    s = Story()
    a = s.origin("farm", "OLV-A", claims=("organic",))
    s.attest(a, "organic")
    b = s.origin("farm2", "OLV-B", claims=("organic",))
    s.attest("OLV-B", "organic")
    s.handoff("farm", "mill", ["OLV-A"], cosign=True)
    h = s.handoff("farm2", "mill", ["OLV-B"])
    s.receipt("mill", h)
    s.transform("mill", ["OLV-A", "OLV-B"], "OIL")
    h = s.handoff("mill", "bottler", ["OIL"])
    s.receipt("bottler", h)
    s.transform("bottler", ["OIL"], "BTL")
    assert a != b
    return s


def failures(prov: Any, check: CheckName) -> list[dict[str, Any]]:
    return next(c for c in prov.to_json()["checks"] if c["check"] == check)["failures"]


def test_a_complete_story_is_certified_with_its_lineage_origins_and_custody() -> None:
    prov = assemble("BTL", chain().entries)
    assert prov.verdict == CERTIFIED
    assert [x.lot for x in prov.lineage] == ["BTL", "OIL", "OLV-A", "OLV-B"]
    assert [o.producer for o in prov.origins] == ["farm", "farm2"]
    assert prov.claims == ("organic",)  # holds for every origin, so for the oil and the bottles
    custody = {c.lot: c for c in prov.custody}
    assert [(s.sender, s.recipient, s.status, s.cosigned) for s in custody["OLV-A"].steps] == [("farm", "mill", "accepted", True)]
    assert custody["OLV-B"].steps[0].receipt is not None
    assert (custody["OLV-A"].status, custody["OIL"].status, custody["BTL"].status) == ("consumed", "consumed", "held")
    assert (prov.status, prov.custodian) == ("held", "bottler")
    assert [c.name for c in prov.checks] == [
        CheckName.ORIGINS_KNOWN, CheckName.CLAIMS_ATTESTED, CheckName.CUSTODY_CONTINUOUS, CheckName.HANDOFFS_RECEIVED,
    ]


def test_the_same_entries_give_the_same_view_in_any_order() -> None:
    entries = chain().entries
    assert assemble("BTL", entries).to_json() == assemble("BTL", list(reversed(entries)) + entries[:3]).to_json()


def test_a_missing_creator_makes_the_origin_unknown() -> None:
    s = chain()
    without_a = [e for e in s.entries if not (e.type == "origin" and e.author == "farm")]
    prov = assemble("BTL", without_a)
    assert prov.verdict == NOT_CERTIFIED
    assert [(f["reason"], f["lot"]) for f in failures(prov, CheckName.ORIGINS_KNOWN)] == [("origin_unknown", "OLV-A")]
    assert prov.claims == ()  # organic was attested for OLV-A's harvest entry, now unknown


def test_a_claim_without_attestation_is_named() -> None:
    s = chain()
    s.origin("farm3", "OLV-C", claims=("organic", "PDO Terra di Bari"))
    c = s.entries[-1].id
    s.attest(c, "organic")
    h = s.handoff("farm3", "bottler", ["OLV-C"])
    s.receipt("bottler", h)
    s.transform("bottler", ["BTL", "OLV-C"], "BLEND")
    prov = assemble("BLEND", s.entries)
    assert [(f["reason"], f["entry"], f["claim"], f["producer"]) for f in failures(prov, CheckName.CLAIMS_ATTESTED)] == [
        ("claim_unattested", c, "PDO Terra di Bari", "farm3")
    ]
    assert prov.claims == ("organic",)


def test_an_attestation_of_the_output_does_not_attest_the_producers_claim() -> None:
    s = Story()
    s.origin("farm", "OLV", claims=("organic",))
    s.transform("farm", ["OLV"], "OIL")  # a producer-processor: no handoff
    s.attest("OIL", "organic")
    prov = assemble("OIL", s.entries)
    assert [f["reason"] for f in failures(prov, CheckName.CLAIMS_ATTESTED)] == ["claim_unattested"]
    assert prov.claims == ("organic",)  # the oil itself is attested


def test_an_open_handoff_is_a_missing_receipt() -> None:
    s = chain()
    h = s.handoff("bottler", "shop", ["BTL"])
    prov = assemble("BTL", s.entries)
    assert (prov.status, prov.custodian) == ("in_transit", None)
    assert [(f["reason"], f["lot"], f["entry"]) for f in failures(prov, CheckName.HANDOFFS_RECEIVED)] == [("receipt_missing", "BTL", h)]
    s.receipt("shop", h, status="rejected")
    prov = assemble("BTL", s.entries)
    assert (prov.verdict, prov.custodian) == (CERTIFIED, "bottler")  # returned: no gap


def test_custody_breaks_are_named() -> None:
    s = chain()
    h = s.handoff("mill", "shop", ["BTL"])  # the mill never held the bottles
    prov = assemble("BTL", s.entries)
    assert [(f["reason"], f["entry"]) for f in failures(prov, CheckName.CUSTODY_CONTINUOUS)] == [("custody_break", h)]

    s = chain()
    left_out = next(e for e in s.entries if e.type == "handoff" and e.payload["from"] == "mill")
    prov = assemble("BTL", [e for e in s.entries if e is not left_out])
    reasons = sorted((f["reason"], f.get("entry")) for f in failures(prov, CheckName.CUSTODY_CONTINUOUS))
    assert len(reasons) == 2  # the orphan receipt, and the bottler transforming oil it never got
    assert prov.verdict == NOT_CERTIFIED


def test_contract_requirements_are_checked_only_when_the_story_has_the_contract() -> None:
    s = chain()
    s.entries[2] = StoryEntry(id=s.entries[2].id, index=s.entries[2].index, signers=s.entries[2].signers,
                              payload={**s.entries[2].payload, "origin": {"country": "ES"}})
    s.contract("C-1", countries=["IT"], claims=["organic", "PDO"])
    h = s.handoff("bottler", "shop", ["BTL"], contract="C-1")
    s.receipt("shop", h)
    prov = assemble("BTL", s.entries)
    found = sorted((f["reason"], f["lot"], f.get("country", f.get("claim"))) for f in failures(prov, CheckName.CONTRACT_REQUIREMENTS))
    assert found == [("contract_claim", "BTL", "PDO"), ("contract_country", "BTL", "ES")]
    assert prov.to_json()["contracts"][0]["terms"]["price"] == "99.00"
    public = assemble("BTL", [e for e in s.entries if e.type != "contract"])
    assert public.verdict == CERTIFIED and "contracts" not in public.to_json()
    assert all(c.name != CheckName.CONTRACT_REQUIREMENTS for c in public.checks)
    assert public.custody[0].steps[-1].contract is None  # not named where the contract is not shown


def test_a_lineage_thousands_deep_needs_no_recursion() -> None:
    s = Story()
    s.origin("farm", "L0")
    for i in range(1, 3001):
        s.transform("farm", [f"L{i - 1}"], f"L{i}")
    prov = assemble("L3000", s.entries)
    assert prov.verdict == CERTIFIED and len(prov.lineage) == 3001


@pytest.mark.parametrize("pick", range(7))
def test_leaving_out_a_maker_or_handoff_never_leaves_a_certified_story(pick: int) -> None:
    """Left-out makers and handoffs before the lot's own last step always show; that last
    step with its receipt could vanish unseen, which is why the ledger signs what it includes."""
    s = chain()
    candidates = [e for e in s.entries if e.type in ("origin", "transform", "handoff")]
    assert len(candidates) == 7
    gone = candidates[pick]
    prov = assemble("BTL", [e for e in s.entries if e is not gone])
    assert prov.verdict == NOT_CERTIFIED
    assert any(f.reason in (Reason.ORIGIN_UNKNOWN, Reason.CUSTODY_BREAK) for f in prov.failures())
