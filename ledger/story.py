"""The values of a lot's provenance view (issue #5): the story's entries, the lineage, the
origins with their claims, each lot's custody chain, the attestations, and the checks with
their named failures. ``ledger.provenance`` derives them; every value serialises with
``to_json`` to the shape the API and the origin certificate (PROTOCOL §7) carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
    "ProvedEntry",
    "ProvenanceView",
]

# Entry types a lot's story is told with. The commercial ones are shown only to members who
# may see them (PROTOCOL §6 visibility): a contract's existence is itself a commercial fact.
PUBLIC_TYPES = frozenset({"origin", "transform", "handoff", "receipt", "attestation"})
COMMERCIAL_TYPES = frozenset({"contract", "payment"})
STORY_TYPES = PUBLIC_TYPES | COMMERCIAL_TYPES

CERTIFIED = "certified"
NOT_CERTIFIED = "not_certified"


class CheckName(StrEnum):
    ORIGINS_KNOWN = "origins_known"
    CLAIMS_ATTESTED = "claims_attested"
    CUSTODY_CONTINUOUS = "custody_continuous"
    HANDOFFS_RECEIVED = "handoffs_received"
    CONTRACT_REQUIREMENTS = "contract_requirements"


class Reason(StrEnum):
    ORIGIN_UNKNOWN = "origin_unknown"
    CLAIM_UNATTESTED = "claim_unattested"
    CUSTODY_BREAK = "custody_break"
    RECEIPT_MISSING = "receipt_missing"
    CONTRACT_COUNTRY = "contract_country"
    CONTRACT_CLAIM = "contract_claim"


@dataclass(frozen=True, slots=True)
class StoryEntry:
    """A sealed entry of the story: id, log index, payload and who signed it.

    Requires a payload well formed for its type (checked at intake, or by ``parse_envelope``
    when a certificate is verified)."""

    id: str
    index: int
    payload: Mapping[str, Any]
    signers: frozenset[str]

    @property
    def type(self) -> str:
        return str(self.payload["type"])

    @property
    def author(self) -> str:
        return str(self.payload["author"])

    @classmethod
    def of(cls, envelope: Mapping[str, Any], *, id: str, index: int) -> StoryEntry:
        """From an envelope's JSON (``{"payload", "signatures"}``)."""
        signers = frozenset(str(s["signer"]) for s in envelope["signatures"])
        return cls(id=id, index=index, payload=envelope["payload"], signers=signers)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a check failed, once: a stable ``reason``, the facts, and a sentence built from them."""

    reason: Reason
    detail: str
    facts: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"reason": str(self.reason), "detail": self.detail, **dict(self.facts)}


@dataclass(frozen=True, slots=True)
class Check:
    name: CheckName
    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"check": str(self.name), "passed": self.passed, "failures": [f.to_json() for f in self.failures]}


@dataclass(frozen=True, slots=True)
class LineageLot:
    """A lot of the lineage and the entry that made it (None where the story does not reach it)."""

    lot: str
    made_by: str | None = None
    maker: str | None = None
    kind: str | None = None  # "origin" or "transform"
    product: str | None = None
    quantity: str | None = None
    unit: str | None = None
    site: str | None = None
    process: str | None = None
    parents: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot, "made_by": self.made_by, "maker": self.maker, "kind": self.kind,
            "product": self.product, "quantity": self.quantity, "unit": self.unit,
            "site": self.site, "process": self.process, "parents": list(self.parents),
        }


@dataclass(frozen=True, slots=True)
class ClaimEvidence:
    """A producer's claim and the attestations (certifier, attestation entry id) that back it."""

    claim: str
    attested_by: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "attested_by": [{"certifier": c, "attestation": a} for c, a in self.attested_by],
        }


@dataclass(frozen=True, slots=True)
class Origin:
    entry: str
    index: int
    producer: str
    site: str
    where: Mapping[str, Any]  # the entry's ``origin`` object: country, region?, place?, geo?, produced_on?
    lots: tuple[str, ...]  # the lots of the lineage it made
    claims: tuple[ClaimEvidence, ...]

    @property
    def country(self) -> str:
        return str(self.where["country"])

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry, "index": self.index, "producer": self.producer, "site": self.site,
            **dict(self.where), "lots": list(self.lots), "claims": [c.to_json() for c in self.claims],
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One handoff of a lot, and how it ended: ``accepted``, ``rejected`` or ``open``."""

    handoff: str
    index: int
    sender: str
    recipient: str
    dispatched_at: str
    status: str
    receipt: str | None = None
    received_at: str | None = None
    cosigned: bool = False
    location: str | None = None
    contract: str | None = None  # only when the story includes the contract

    def to_json(self) -> dict[str, Any]:
        return {
            "handoff": self.handoff, "index": self.index, "from": self.sender, "to": self.recipient,
            "dispatched_at": self.dispatched_at, "location": self.location, "status": self.status,
            "receipt": self.receipt, "received_at": self.received_at, "cosigned": self.cosigned,
            "contract": self.contract,
        }


@dataclass(frozen=True, slots=True)
class Custody:
    """Who held a lot from the entry that made it: its handoffs in log order and where it ended
    (``held`` by ``custodian``, ``in_transit``, ``consumed`` by a transform, or ``unknown``)."""

    lot: str
    first_holder: str | None
    steps: tuple[Step, ...]
    status: str
    custodian: str | None
    consumed_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot, "first_holder": self.first_holder, "steps": [s.to_json() for s in self.steps],
            "status": self.status, "custodian": self.custodian, "consumed_by": self.consumed_by,
        }


@dataclass(frozen=True, slots=True)
class Attestation:
    entry: str
    index: int
    certifier: str
    subject: str
    claims: tuple[str, ...]
    certificate: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry, "index": self.index, "certifier": self.certifier, "subject": self.subject,
            "claims": list(self.claims), "certificate": dict(self.certificate) if self.certificate else None,
        }


@dataclass(frozen=True, slots=True)
class Provenance:
    """A lot's story and the checks on it. ``contracts`` and ``payments`` (entry payloads) are
    only those the story was told with: none in the public view."""

    lot: str
    product: str | None
    quantity: str | None
    unit: str | None
    status: str
    custodian: str | None
    claims: tuple[str, ...]
    lineage: tuple[LineageLot, ...]
    origins: tuple[Origin, ...]
    custody: tuple[Custody, ...]
    attestations: tuple[Attestation, ...]
    checks: tuple[Check, ...]
    contracts: tuple[Mapping[str, Any], ...] = field(default=())
    payments: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def verdict(self) -> str:
        return CERTIFIED if all(c.passed for c in self.checks) else NOT_CERTIFIED

    def failures(self) -> list[Failure]:
        return [f for c in self.checks for f in c.failures]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lot": self.lot, "product": self.product, "quantity": self.quantity, "unit": self.unit,
            "status": self.status, "custodian": self.custodian, "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks], "claims": list(self.claims),
            "lineage": [x.to_json() for x in self.lineage],
            "origins": [o.to_json() for o in self.origins],
            "custody": [c.to_json() for c in self.custody],
            "attestations": [a.to_json() for a in self.attestations],
        }
        if self.contracts:
            out["contracts"] = [dict(c) for c in self.contracts]
        if self.payments:
            out["payments"] = [dict(p) for p in self.payments]
        return out


@dataclass(frozen=True, slots=True)
class ProvedEntry:
    """An entry of the story as sealed: its envelope, and its RFC 9162 audit path in the tree
    of the view's checkpoint."""

    id: str
    index: int
    leaf_hash: str
    envelope: Mapping[str, Any]
    hashes: tuple[bytes, ...]

    @property
    def type(self) -> str:
        return str(self.envelope["payload"]["type"])

    def story_entry(self) -> StoryEntry:
        return StoryEntry.of(self.envelope, id=self.id, index=self.index)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "index": self.index, "type": self.type, "leaf_hash": self.leaf_hash,
            "envelope": dict(self.envelope), "proof": [h.hex() for h in self.hashes],
        }


@dataclass(frozen=True, slots=True)
class ProvenanceView:
    """What ``GET /v1/lots/{lot}/provenance`` answers: the provenance, the entries it was
    derived from with their inclusion proofs against one checkpoint, and the public trading
    names of the participants named. ``scope`` is ``"public"`` or the member it was read for."""

    ledger: str
    scope: str
    provenance: Provenance
    checkpoint: str
    tree_size: int
    root: str
    entries: tuple[ProvedEntry, ...]
    names: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "scope": self.scope,
            **self.provenance.to_json(),
            "participants": dict(sorted(self.names.items())),
            "checkpoint": {"tree_size": self.tree_size, "root": self.root, "note": self.checkpoint},
            "entries": [e.to_json() for e in self.entries],
        }
