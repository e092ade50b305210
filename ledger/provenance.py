"""The provenance of a lot (issue #5; PROTOCOL §4, §7): its lineage through transforms back to
every origin, the custody chain of each lot of that lineage, the attestations, and the checks
an origin certificate reports, each failed one with a named reason.

Pure: :func:`assemble` derives everything from the entries of the lot's story alone, whether
they come from the store (``ledger.storage.stories``) or from a certificate being checked
offline (``ledger.certificates``). The server and an offline verifier therefore reach the same
view from the same entries, and a certificate cannot claim more than its entries show. What
entries cannot show is what was left out: the log proves inclusion, not absence, so a story is
as complete as the ledger that signs it says (the custody checks catch most omissions: a
handoff left out breaks the chain of holders).

The verdict is ``certified`` only if every check holds:

* ``origins_known``: every lot of the lineage was made by an ``origin`` or ``transform`` entry
  of the story (reason ``origin_unknown``: the lineage is cut there);
* ``claims_attested``: every claim a producer makes in an ``origin`` entry is attested by a
  certifier, of that entry or of one of its lots (``claim_unattested``);
* ``custody_continuous``: every handoff is sent by the lot's holder at that point, and every
  transform consumes lots its author then holds (``custody_break``);
* ``handoffs_received``: every handoff was received, by a receipt or the recipient's
  co-signature (``receipt_missing``: the lot is, or was left, in transit);
* ``contract_requirements``, only when the story includes contracts (members who may see
  them): every lot delivered under a contract comes only from its required countries
  (``contract_country``) and carries its required claims (``contract_claim``).

A claim *holds* for a lot if a certifier attested it for the lot, for the entry that made
it, or, for a transform's output, if it holds for every input: the producer's own claims
never count without an attestation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .story import (
    CERTIFIED,
    COMMERCIAL_TYPES,
    NOT_CERTIFIED,
    PUBLIC_TYPES,
    STORY_TYPES,
    Attestation,
    Check,
    CheckName,
    ClaimEvidence,
    Custody,
    Failure,
    LineageLot,
    Origin,
    Provenance,
    Reason,
    Step,
    StoryEntry,
)

__all__ = [
    "PUBLIC_TYPES",
    "COMMERCIAL_TYPES",
    "STORY_TYPES",
    "CERTIFIED",
    "NOT_CERTIFIED",
    "CheckName",
    "Reason",
    "StoryEntry",
    "Failure",
    "Check",
    "LineageLot",
    "ClaimEvidence",
    "Origin",
    "Step",
    "Custody",
    "Attestation",
    "Provenance",
    "assemble",
]


# --- assembling ---------------------------------------------------------------------------


@dataclass
class _Index:
    """The story's entries by the questions provenance asks of them."""

    makers: dict[str, StoryEntry] = field(default_factory=dict)
    specs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    consumers: dict[str, StoryEntry] = field(default_factory=dict)
    handoffs: dict[str, list[StoryEntry]] = field(default_factory=dict)
    receipts: dict[str, StoryEntry] = field(default_factory=dict)
    attestations: dict[str, list[StoryEntry]] = field(default_factory=dict)
    contracts: dict[str, StoryEntry] = field(default_factory=dict)
    payments: list[StoryEntry] = field(default_factory=list)

    @classmethod
    def of(cls, entries: Sequence[StoryEntry]) -> _Index:
        ix = cls()
        # In log order, so that the first entry wins where a forged story offers two.
        for e in entries:
            p = e.payload
            if e.type in ("origin", "transform"):
                for spec in p["lots"] if e.type == "origin" else p["outputs"]:
                    if ix.makers.setdefault(str(spec["lot"]), e) is e:
                        ix.specs[str(spec["lot"])] = spec
            if e.type == "transform":
                for lot in p["inputs"]:
                    ix.consumers.setdefault(str(lot), e)
            elif e.type == "handoff":
                for lot in p["lots"]:
                    ix.handoffs.setdefault(str(lot), []).append(e)
            elif e.type == "receipt":
                ix.receipts.setdefault(str(p["handoff"]), e)
            elif e.type == "attestation":
                ix.attestations.setdefault(str(p["subject"]), []).append(e)
            elif e.type == "contract":
                ix.contracts.setdefault(str(p["contract"]), e)
            elif e.type == "payment":
                ix.payments.append(e)
        return ix

    def spec(self, lot: str) -> Mapping[str, Any] | None:
        """The lot's ``{lot, product, quantity, unit}`` in the entry that made it."""
        return self.specs.get(lot)

    def parents(self, lot: str) -> tuple[str, ...]:
        m = self.makers.get(lot)
        return tuple(str(x) for x in m.payload["inputs"]) if m is not None and m.type == "transform" else ()

    def attested(self, subject: str, claim: str) -> list[StoryEntry]:
        return [a for a in self.attestations.get(subject, ()) if claim in a.payload["claims"]]


def _fail(reason: Reason, detail: str, **facts: str) -> Failure:
    return Failure(reason=reason, detail=detail, facts=tuple(sorted(facts.items())))


def assemble(lot: str, entries: Iterable[StoryEntry]) -> Provenance:
    """The provenance of ``lot`` told by ``entries`` (any order; duplicates by id ignored).

    Deterministic: the same entries give the same view, byte for byte once serialised.
    """
    unique = {e.id: e for e in entries}
    ordered = sorted(unique.values(), key=lambda e: (e.index, e.id))
    ix = _Index.of(ordered)
    lineage = _lineage(lot, ix)
    topo = _parents_first(lineage, ix)
    custody, custody_failures, open_failures = _custody(lineage, ix)
    origins = _origins(lineage, ix)
    claims_in_play = sorted(
        {str(c) for a in ordered if a.type == "attestation" for c in a.payload["claims"]}
        | {str(c) for c in _required_claims(ix)}
    )
    holds = {c: _holds(c, topo, ix) for c in claims_in_play}
    checks = [
        Check(CheckName.ORIGINS_KNOWN, tuple(
            _fail(Reason.ORIGIN_UNKNOWN,
                  f"no entry of the story makes lot {x}, so its origin is unknown: the lineage "
                  "is cut there (a longer lineage than a provenance query follows, or evidence "
                  "left out)", lot=x)
            for x in lineage if x not in ix.makers
        )),
        Check(CheckName.CLAIMS_ATTESTED, tuple(
            _fail(Reason.CLAIM_UNATTESTED,
                  f"{o.producer} claims {c.claim!r} for the harvest of entry {o.entry}, and no "
                  "certifier attests it for that entry or its lots", entry=o.entry, producer=o.producer, claim=c.claim)
            for o in origins for c in o.claims if not c.attested_by
        )),
        Check(CheckName.CUSTODY_CONTINUOUS, tuple(custody_failures + _orphan_receipts(ordered, custody))),
        Check(CheckName.HANDOFFS_RECEIVED, tuple(open_failures)),
    ]
    if ix.contracts:
        checks.append(Check(CheckName.CONTRACT_REQUIREMENTS, tuple(_contract_failures(custody, ix, holds))))
    mine = next(c for c in custody if c.lot == lot)
    spec = ix.spec(lot)
    return Provenance(
        lot=lot,
        product=None if spec is None else str(spec["product"]),
        quantity=None if spec is None else str(spec["quantity"]),
        unit=None if spec is None else str(spec["unit"]),
        status=mine.status,
        custodian=mine.custodian,
        claims=tuple(c for c in claims_in_play if holds[c].get(lot, False)),
        lineage=tuple(_lineage_lot(x, ix) for x in lineage),
        origins=tuple(origins),
        custody=tuple(custody),
        attestations=tuple(
            Attestation(
                entry=a.id, index=a.index, certifier=a.author, subject=str(a.payload["subject"]),
                claims=tuple(str(c) for c in a.payload["claims"]), certificate=a.payload.get("certificate"),
            )
            for a in ordered if a.type == "attestation"
        ),
        checks=tuple(checks),
        contracts=tuple(
            {"contract": str(c.payload["contract"]), "entry": c.id, "index": c.index, "buyer": c.payload["buyer"],
             "seller": c.payload["seller"], "terms": c.payload["terms"]}
            for c in sorted(ix.contracts.values(), key=lambda e: e.index)
        ),
        payments=tuple(
            {"entry": p.id, "index": p.index, **{k: p.payload[k] for k in ("payer", "payee", "amount", "currency", "contract", "invoice", "paid_at") if k in p.payload}}
            for p in ix.payments
        ),
    )


def _lineage(lot: str, ix: _Index) -> list[str]:
    """The lot, then its ancestors breadth first (each once), as far as the story reaches."""
    order, seen, i = [lot], {lot}, 0
    while i < len(order):
        for parent in ix.parents(order[i]):
            if parent not in seen:
                seen.add(parent)
                order.append(parent)
        i += 1
    return order


def _parents_first(lineage: list[str], ix: _Index) -> list[str]:
    """The lineage ordered so that every lot comes after its parents (no recursion: a
    lineage may be thousands of lots deep)."""
    members = set(lineage)
    done: set[str] = set()
    out: list[str] = []
    for root in lineage:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            lot, expanded = stack.pop()
            if lot in done:
                continue
            if expanded:
                done.add(lot)
                out.append(lot)
                continue
            stack.append((lot, True))
            stack.extend((p, False) for p in ix.parents(lot) if p in members and p not in done)
    return out


def _holds(claim: str, topo: list[str], ix: _Index) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for lot in topo:
        m = ix.makers.get(lot)
        direct = bool(ix.attested(lot, claim)) or (m is not None and bool(ix.attested(m.id, claim)))
        inherited = m is not None and m.type == "transform" and all(result.get(p, False) for p in ix.parents(lot))
        result[lot] = direct or inherited
    return result


def _lineage_lot(lot: str, ix: _Index) -> LineageLot:
    m, spec = ix.makers.get(lot), ix.spec(lot)
    if m is None or spec is None:
        return LineageLot(lot=lot)
    return LineageLot(
        lot=lot, made_by=m.id, maker=m.author, kind=m.type, product=str(spec["product"]),
        quantity=str(spec["quantity"]), unit=str(spec["unit"]), site=str(m.payload["site"]),
        process=m.payload.get("process"), parents=ix.parents(lot),
    )


def _origins(lineage: list[str], ix: _Index) -> list[Origin]:
    lots_of: dict[str, list[str]] = {}
    makers: dict[str, StoryEntry] = {}
    for lot in lineage:
        m = ix.makers.get(lot)
        if m is not None and m.type == "origin":
            lots_of.setdefault(m.id, []).append(lot)
            makers[m.id] = m
    out = []
    for m in sorted(makers.values(), key=lambda e: e.index):
        subjects = [m.id, *lots_of[m.id]]
        claims = []
        for claim in m.payload.get("claims", ()):
            backing = {a.id: a for s in subjects for a in ix.attested(s, str(claim))}
            evidence = tuple((a.author, a.id) for a in sorted(backing.values(), key=lambda e: e.index))
            claims.append(ClaimEvidence(claim=str(claim), attested_by=evidence))
        out.append(
            Origin(
                entry=m.id, index=m.index, producer=m.author, site=str(m.payload["site"]),
                where=m.payload["origin"], lots=tuple(lots_of[m.id]), claims=tuple(claims),
            )
        )
    return out


def _custody(lineage: list[str], ix: _Index) -> tuple[list[Custody], list[Failure], list[Failure]]:
    """Walk each lot's handoffs in log order from the entry that made it. Returns the chains,
    the custody breaks and the handoffs never received."""
    chains: list[Custody] = []
    breaks: list[Failure] = []
    unreceived: list[Failure] = []
    for lot in lineage:
        maker = ix.makers.get(lot)
        if maker is None:
            chains.append(Custody(lot=lot, first_holder=None, steps=(), status="unknown", custodian=None))
            continue
        holder, state, last = maker.author, "held", maker.index
        steps = []
        for h in ix.handoffs.get(lot, ()):
            p = h.payload
            sender, recipient = str(p["from"]), str(p["to"])
            if h.index <= last or state != "held" or sender != holder:
                now = {"held": f"held by {holder}", "in_transit": "in transit", "consumed": "consumed"}[state]
                breaks.append(_fail(
                    Reason.CUSTODY_BREAK,
                    f"handoff {h.id} sends lot {lot} from {sender}, but the story has the lot {now} then",
                    lot=lot, entry=h.id,
                ))
            contract = str(p["contract"]) if "contract" in p and str(p["contract"]) in ix.contracts else None
            common: dict[str, Any] = {"handoff": h.id, "index": h.index, "sender": sender, "recipient": recipient,
                      "dispatched_at": str(p["dispatched_at"]), "location": p.get("location"), "contract": contract}
            receipt = ix.receipts.get(h.id)
            last = h.index
            if recipient in h.signers:
                # Co-signed by the recipient: received at once (PROTOCOL §4 handoff).
                steps.append(Step(**common, status="accepted", received_at=str(p["dispatched_at"]), cosigned=True))
                holder, state = recipient, "held"
            elif receipt is None or receipt.index <= h.index:
                steps.append(Step(**common, status="open"))
                unreceived.append(_fail(
                    Reason.RECEIPT_MISSING,
                    f"handoff {h.id} sent lot {lot} from {sender} to {recipient} at "
                    f"{p['dispatched_at']}, and no receipt records its arrival",
                    lot=lot, entry=h.id,
                ))
                state = "in_transit"
            else:
                r = receipt.payload
                accepted = r["status"] == "accepted"
                steps.append(Step(**common, status=str(r["status"]), receipt=receipt.id, received_at=str(r["received_at"])))
                holder, state, last = (recipient if accepted else sender), "held", receipt.index
        consumer = ix.consumers.get(lot)
        if consumer is not None:
            if consumer.index <= last or state != "held" or consumer.author != holder:
                breaks.append(_fail(
                    Reason.CUSTODY_BREAK,
                    f"transform {consumer.id} by {consumer.author} consumes lot {lot}, which the "
                    f"story has {'in transit' if state == 'in_transit' else 'held by ' + holder} then",
                    lot=lot, entry=consumer.id,
                ))
            state = "consumed"
        chains.append(Custody(
            lot=lot, first_holder=maker.author, steps=tuple(steps), status=state,
            custodian=holder if state == "held" else None,
            consumed_by=consumer.id if consumer is not None else None,
        ))
    return chains, breaks, unreceived


def _orphan_receipts(entries: list[StoryEntry], custody: list[Custody]) -> list[Failure]:
    """Receipts of handoffs the story does not tell: a handoff was left out."""
    told = {s.handoff for c in custody for s in c.steps}
    return [
        _fail(
            Reason.CUSTODY_BREAK,
            f"receipt {e.id} closes handoff {e.payload['handoff']}, which the story leaves out",
            entry=e.id, handoff=str(e.payload["handoff"]),
        )
        for e in entries
        if e.type == "receipt" and e.payload["handoff"] not in told
    ]


def _required_claims(ix: _Index) -> set[str]:
    return {
        str(c)
        for e in ix.contracts.values()
        for c in e.payload["terms"].get("requirements", {}).get("claims", ())
    }


def _origins_of(lot: str, ix: _Index) -> list[StoryEntry]:
    """The origin entries a lot comes from, in log order (as far as the story reaches)."""
    found: dict[str, StoryEntry] = {}
    for x in _lineage(lot, ix):
        m = ix.makers.get(x)
        if m is not None and m.type == "origin":
            found[m.id] = m
    return sorted(found.values(), key=lambda e: e.index)


def _contract_failures(custody: list[Custody], ix: _Index, holds: Mapping[str, Mapping[str, bool]]) -> list[Failure]:
    out: dict[tuple[Any, ...], Failure] = {}
    for chain in custody:
        for step in chain.steps:
            if step.contract is None:
                continue
            contract = step.contract
            reqs = ix.contracts[contract].payload["terms"].get("requirements", {})
            countries = reqs.get("countries")
            if countries:
                for o in _origins_of(chain.lot, ix):
                    country = str(o.payload["origin"]["country"])
                    if country not in countries:
                        f = _fail(
                            Reason.CONTRACT_COUNTRY,
                            f"lot {chain.lot}, delivered under contract {contract}, comes from "
                            f"{country} (origin {o.id}), not from a country the contract requires",
                            contract=contract, lot=chain.lot, entry=o.id, country=country,
                        )
                        out.setdefault((f.reason, f.facts), f)
            for claim in reqs.get("claims", ()):
                if not holds[str(claim)].get(chain.lot, False):
                    f = _fail(
                        Reason.CONTRACT_CLAIM,
                        f"lot {chain.lot}, delivered under contract {contract}, is not attested "
                        f"{claim!r}, which the contract requires",
                        contract=contract, lot=chain.lot, claim=str(claim),
                    )
                    out.setdefault((f.reason, f.facts), f)
    return list(out.values())
