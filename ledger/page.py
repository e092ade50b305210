"""What a lot's public product page shows (issue #5), from its public provenance view alone:
the journey as a timeline, who attested each claim, the origins a view-count is filed under
(issue #6), and the check behind the page's "verified against checkpoint N" badge.

Pure: the view comes from ``ledger.storage.stories.read_view`` with no viewer, so it holds no
contract, price or payment (PROTOCOL §6), and nothing here reads one. Handoff fields that name
commercial facts (``contract``, ``shipment``) are left out of the timeline as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .entries import parse_envelope
from .errors import InvalidProof, MalformedInput
from .merkle import verify_inclusion
from .notes import NoteVerifier, verify_checkpoint
from .story import Provenance, ProvenanceView, Step

__all__ = [
    "LotLine",
    "Event",
    "timeline",
    "claim_attesters",
    "origin_labels",
    "verify_view",
]

# The certificate fields of an attestation worth showing a shopper, in this order.
_CERTIFICATE_FIELDS = ("scheme", "number", "valid_until")


@dataclass(frozen=True, slots=True)
class LotLine:
    """A lot an event made or moved, with what the story says it is (None where it does not)."""

    lot: str
    product: str | None = None
    quantity: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One step of the journey, in log order. ``kind`` is ``harvest``, ``attestation``,
    ``handoff`` or ``transform``; ``when`` is the business date or time the entry states
    (``produced_on``, ``dispatched_at``) or, where it states none, the time its author
    recorded it (``recorded`` is then true). ``who`` and ``whom`` are participant ids."""

    index: int
    kind: str
    when: str | None
    who: str
    recorded: bool = False
    whom: str | None = None
    lots: tuple[LotLine, ...] = ()
    inputs: tuple[str, ...] = ()
    site: str | None = None
    where: tuple[str, ...] = ()
    process: str | None = None
    claims: tuple[str, ...] = ()
    certificate: tuple[tuple[str, str], ...] = ()
    status: str | None = None
    received_at: str | None = None
    cosigned: bool = False
    location: str | None = None
    others: int = 0  # lots the entry made or moved that are not of this lot's lineage


def _where(origin: Mapping[str, Any]) -> tuple[str, ...]:
    """Place, region, country: the parts an origin names, most local first."""
    return tuple(str(origin[k]) for k in ("place", "region", "country") if origin.get(k))


def timeline(view: ProvenanceView) -> tuple[Event, ...]:
    """The journey of the lot and its lineage, oldest first: harvests, attestations, handoffs
    (each once, with how it ended: receipts are folded into their handoff) and transforms."""
    p = view.provenance
    known = {x.lot: x for x in p.lineage}
    steps: dict[str, Step] = {s.handoff: s for c in p.custody for s in c.steps}

    def line(lot: str) -> LotLine:
        x = known.get(lot)
        return LotLine(lot) if x is None else LotLine(lot, x.product, x.quantity, x.unit)

    def ours(lots: list[str]) -> dict[str, Any]:
        # An entry may make or move other products' lots too: the page names only those of
        # this lot's lineage, and counts the rest.
        mine = [x for x in lots if x in known]
        return {"lots": tuple(line(x) for x in mine), "others": len(lots) - len(mine)}

    events: list[Event] = []
    for e in sorted(view.entries, key=lambda e: e.index):
        pl = e.envelope["payload"]
        kind, author = str(pl["type"]), str(pl["author"])
        if kind == "origin":
            origin = pl["origin"]
            events.append(Event(
                index=e.index, kind="harvest", who=author,
                when=str(origin["produced_on"]) if origin.get("produced_on") else str(pl["time"]),
                recorded=not origin.get("produced_on"), site=str(pl["site"]), where=_where(origin),
                **ours([str(spec["lot"]) for spec in pl["lots"]]), claims=tuple(str(c) for c in pl.get("claims", ())),
            ))
        elif kind == "attestation":
            cert = pl.get("certificate") or {}
            events.append(Event(
                index=e.index, kind="attestation", who=author, when=str(pl["time"]), recorded=True,
                claims=tuple(str(c) for c in pl["claims"]),
                certificate=tuple((k, str(cert[k])) for k in _CERTIFICATE_FIELDS if isinstance(cert.get(k), str)),
                lots=(line(str(pl["subject"])),) if str(pl["subject"]) in known else (),
            ))
        elif kind == "handoff":
            step = steps.get(e.id)
            events.append(Event(
                index=e.index, kind="handoff", who=str(pl["from"]), whom=str(pl["to"]),
                when=str(pl["dispatched_at"]), **ours([str(x) for x in pl["lots"]]),
                status=step.status if step is not None else "open",
                received_at=step.received_at if step is not None else None,
                cosigned=step.cosigned if step is not None else False,
                location=str(pl["location"]) if pl.get("location") else None,
            ))
        elif kind == "transform":
            events.append(Event(
                index=e.index, kind="transform", who=author, when=str(pl["time"]), recorded=True,
                site=str(pl["site"]), process=str(pl["process"]) if pl.get("process") else None,
                inputs=tuple(str(x) for x in pl["inputs"]), **ours([str(spec["lot"]) for spec in pl["outputs"]]),
            ))
        # Receipts are told by their handoff; contracts and payments are never in a public view.
    return tuple(events)


def claim_attesters(p: Provenance) -> dict[str, tuple[str, ...]]:
    """Each claim that holds for the lot, and the certifiers (ids, in log order, each once)
    whose attestations in the story name it."""
    out: dict[str, tuple[str, ...]] = {}
    for claim in p.claims:
        who: list[str] = []
        for a in p.attestations:
            if claim in a.claims and a.certifier not in who:
                who.append(a.certifier)
        out[claim] = tuple(who)
    return out


def origin_labels(p: Provenance) -> tuple[str, str]:
    """The lot's origin as two aggregate labels, for counting views (issue #6): its distinct
    countries and its distinct regions, each sorted and comma-separated ("" if unknown)."""
    countries = sorted({o.country for o in p.origins})
    regions = sorted({str(o.where["region"]) for o in p.origins if o.where.get("region")})
    return ", ".join(countries), ", ".join(regions)


def verify_view(view: ProvenanceView, verifier: NoteVerifier) -> int:
    """Check what the badge claims: the view's checkpoint is signed by the ledger key, and
    every entry the page tells is in its tree (each leaf hash recomputed from the envelope,
    each RFC 9162 inclusion proof checked). Returns the checkpoint's tree size.

    Raises an IntegrityFailure leaf (InvalidNoteSignature, NoTrustedSignature, OriginMismatch,
    InvalidProof) or InvalidProof for an entry whose envelope is not what its id says.
    """
    checkpoint = verify_checkpoint(view.checkpoint, verifier=verifier, origin=view.ledger)
    if checkpoint.tree_size != view.tree_size or checkpoint.root.hex() != view.root:
        raise InvalidProof("the view's tree size and root are not its checkpoint's")
    for e in view.entries:
        try:
            env = parse_envelope(e.envelope, origin=view.ledger)
        except MalformedInput as exc:
            raise InvalidProof(f"entry {e.id} is not a well-formed envelope: {exc.detail}", entry=e.id) from exc
        if env.id != e.id or env.leaf_hash.hex() != e.leaf_hash:
            raise InvalidProof(f"entry {e.id}'s envelope has another id or leaf hash", entry=e.id)
        verify_inclusion(
            leaf_hash=env.leaf_hash, index=e.index, tree_size=checkpoint.tree_size,
            proof=list(e.hashes), root=checkpoint.root,
        )
    return checkpoint.tree_size
