"""EPCIS 2.0 documents to unsigned ledger payloads, event by event (``filiera epcis import``).

Pure: the document is checked against GS1's JSON Schema first (``ledger.epcis.schema``), then
each event becomes a payload or a refusal that names the event and why. What maps:

==================================================  ========================================
ObjectEvent ADD, bizStep ``commissioning`` (or none)  ``origin``: lots, site, ``ilmd`` origin
ObjectEvent OBSERVE ``shipping``                      ``handoff`` from the source party to the
                                                      destination party
ObjectEvent OBSERVE ``receiving``                     ``receipt`` of the handoff that shipped
                                                      the same lots (``returned``: rejected)
AggregationEvent OBSERVE ``shipping``/``receiving``   the same, for the container's children
TransformationEvent with inputs and outputs           ``transform``
==================================================  ========================================

An import map (``ledger.epcis.partners``) says which member a GLN is and which lot an EPC is;
an event that names no party is then signed by the member operating its place.

Everything else is refused with a code (docs/epcis.md lists them). A payload is deterministic:
its ``time`` is the event's time and its nonce is derived from the event, so importing the same
document twice makes the same entries, which the ledger answers as already present.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import jcs
from ..errors import LedgerError
from ..payloads import validate_payload
from .partners import ImportMap
from .reading import LedgerHandoff, Reader, Unmappable
from .schema import events_of, validate_document
from .vocabulary import MDA_COUNTRY_OF_ORIGIN, Kind, cbv_name, utc_time

__all__ = ["Mapped", "Refused", "Outcome", "HandoffFinder", "map_document", "describe", "REFUSAL_CODES"]

REFUSAL_CODES = (
    "unsupported_event_type", "error_declaration", "unsupported_action", "unsupported_biz_step",
    "invalid_identifier", "missing_lot", "missing_product", "missing_quantity", "missing_site",
    "missing_country", "missing_party", "invalid_party", "not_signer", "no_handoff",
    "partial_receipt", "partial_transformation", "invalid_entry",
)

_NONCE_CONTEXT = b"filiera/epcis-nonce/v1\n"

_OTHER_TYPES = {
    "AggregationEvent": "packing objects into a container or unpacking them (aggregation) is not a "
    "ledger entry; lots move whole (an AggregationEvent OBSERVE shipping or receiving maps, for "
    "its children)",
    "AssociationEvent": "associating objects with assets or sensors is not a ledger entry",
    "TransactionEvent": "linking objects to a business transaction is not a ledger entry on its own; "
    "name the transaction on the shipping event (bizTransactionList)",
}


@dataclass(frozen=True, slots=True)
class Mapped:
    """An event that maps: the payload to sign (by ``payload['author']``) and its entry id.

    A shipping event whose goods the document receives in several receiving events maps to one
    handoff per part (``part`` of ``parts``, from 1), as a receipt closes a whole handoff."""

    index: int
    event_id: str | None
    event: str
    payload: dict[str, Any]
    entry_id: str
    ignored: tuple[str, ...] = ()
    part: int = 1
    parts: int = 1

    @property
    def author(self) -> str:
        return str(self.payload["author"])


@dataclass(frozen=True, slots=True)
class Refused:
    """An event that does not map: ``code`` (one of :data:`REFUSAL_CODES`) and why."""

    index: int
    event_id: str | None
    event: str
    code: str
    detail: str


Outcome = Mapped | Refused


# (lot, recipient) -> the handoff in the ledger that sends the lot to the recipient: the open
# one, else the last one received (a receipt imported again is then the same entry).
HandoffFinder = Callable[[str, str], LedgerHandoff | None]


@dataclass
class _Shipped:
    index: int
    entry_id: str | None  # None: refused
    source_entry: str | None
    to: str | None
    lots: frozenset[str] = field(default_factory=frozenset)


def describe(event: Mapping[str, Any]) -> str:
    """``ObjectEvent OBSERVE shipping``: the event's type, action and bizStep."""
    parts = [str(event.get("type"))]
    if "action" in event:
        parts.append(str(event["action"]))
    step = cbv_name(event.get("bizStep"), "bizStep")
    if step:
        parts.append(step)
    return " ".join(parts)


class _Mapper:
    def __init__(self, doc: Mapping[str, Any], events: Sequence[Mapping[str, Any]], origin: str, signers: Sequence[str], finder: HandoffFinder | None, import_map: ImportMap | None) -> None:
        self.read = Reader(doc, import_map)
        self.events = list(events)
        self.origin = origin
        self.signers = list(signers)
        self.finder = finder
        self.shipped: list[_Shipped] = []

    def actor(self, named: str | None, why: str) -> str:
        who = named or (self.signers[0] if self.signers else None)
        if who is None or who not in self.signers:
            raise Unmappable(
                "not_signer",
                f"this event is {who}'s ({why}); sign it with {who}'s key file (--key)"
                if who else "no key to sign with",
            )
        return who

    def entry_ext(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        ext = self.read.get(event, "entry")
        return ext if isinstance(ext, dict) else {}

    def author(self, event: Mapping[str, Any]) -> str | None:
        value = self.read.get(self.entry_ext(event), "author")
        return value if isinstance(value, str) else None

    def maker(self, event: Mapping[str, Any]) -> str | None:
        """Who commissions or transforms: the author a Filiera export names, else the member
        the import map says operates the place."""
        return self.author(event) or self.read.operator(event, "bizLocation", "readPoint")

    def recipient(self, event: Mapping[str, Any]) -> str | None:
        """Who receives: the destination party, else the operator of the receiving place."""
        return self.read.party(event.get("destinationList"), "destination") or self.read.operator(event, "bizLocation", "readPoint")

    def later_recipient(self, index: int, lots: frozenset[str]) -> str | None:
        """The recipient of the first receiving event after ``index`` that takes any of
        ``lots``: where a shipping event that names no destination went."""
        for event in self.events[index + 1 :]:
            if _moves(event) != "receiving" or not lots & set(self._quiet_lots(event)):
                continue
            try:
                return self.recipient(event)
            except Unmappable:
                return None
        return None

    def time(self, event: Mapping[str, Any]) -> str:
        when = utc_time(event["eventTime"])
        if when is None:
            # RFC 3339 allows what a date and time cannot hold, such as a leap second.
            raise Unmappable("invalid_entry", f"eventTime {event['eventTime']} is not a time the ledger can record")
        return when

    # --- one event -------------------------------------------------------------------

    def event(self, index: int, event: Mapping[str, Any]) -> list[Outcome]:
        """The event's outcome: one refusal, or one entry (a handoff per part)."""
        kind = describe(event)
        event_id = event.get("eventID") if isinstance(event.get("eventID"), str) else None
        try:
            type_, fields, used = self._fields(index, event)
            parts = self._parts(index, event, fields) if type_ == "handoff" else [fields]
            payloads = []
            for n, part in enumerate(parts, 1):
                payload = {"ledger": self.origin, "type": type_, **part}
                payload["nonce"] = _nonce(payload["author"], event, part=n if len(parts) > 1 else None)
                try:
                    validate_payload(payload)
                except LedgerError as exc:
                    raise Unmappable("invalid_entry", f"the {type_} entry it maps to is refused: {exc.code}: {exc.detail}") from exc
                payloads.append(payload)
        except Unmappable as exc:
            if _moves(event) == "shipping":
                self.shipped.append(_Shipped(index, None, None, None, frozenset(self._quiet_lots(event))))
            return [Refused(index, event_id, kind, exc.code, exc.detail)]
        ignored = tuple(sorted(k for k in event if k not in used and not self.read.is_filiera(k)))
        found: list[Outcome] = []
        for n, payload in enumerate(payloads, 1):
            entry_id = hashlib.sha256(jcs.canonicalize(payload)).hexdigest()
            if type_ == "handoff":
                source = self.read.get(self.entry_ext(event), "id")
                self.shipped.append(_Shipped(index, entry_id, source if isinstance(source, str) else None, payload["to"], frozenset(payload["lots"])))
            found.append(Mapped(index, event_id, kind, payload, entry_id, ignored, part=n, parts=len(payloads)))
        return found

    def _parts(self, index: int, event: Mapping[str, Any], fields: dict[str, Any]) -> list[dict[str, Any]]:
        """A handoff's fields, split by the receiving events later in the document that take
        its lots: one part per receipt, and one for the lots none of them takes. A receipt
        closes a whole handoff (PROTOCOL §4), so goods shipped together and received apart are
        handed over in parts. Each part goes to the destination the event names, else to the
        part's recipient (the rest: to the first recipient, where the shipment went)."""
        stated = self.read.party(event.get("destinationList"), "destination")
        remaining: list[str] = list(fields["lots"])
        groups: list[tuple[list[str], str | None]] = []
        for later in self.events[index + 1 :]:
            if _moves(later) != "receiving":
                continue
            taken = set(self._quiet_lots(later))
            group = [lot for lot in remaining if lot in taken]
            if not group:
                continue
            try:
                who = self.recipient(later)
            except Unmappable:
                who = None
            groups.append((group, who))
            remaining = [lot for lot in remaining if lot not in taken]
        if remaining:
            groups.append((remaining, None))
        if len(groups) < 2:
            return [fields]
        return [{**fields, "lots": lots, "to": stated or who or fields["to"]} for lots, who in groups]

    def _quiet_lots(self, event: Mapping[str, Any]) -> list[str]:
        try:
            return self.read.lots(event, *_goods(event))
        except Unmappable:
            return []

    def _fields(self, index: int, event: Mapping[str, Any]) -> tuple[str, dict[str, Any], set[str]]:
        """(entry type, payload fields with author and time, event keys used). Raises Unmappable."""
        type_ = event.get("type")
        if type_ == "AggregationEvent" and _moves(event) is not None:
            type_ = "ObjectEvent"  # The children are shipped or received; the container is not a lot.
        if type_ not in ("ObjectEvent", "TransformationEvent"):
            raise Unmappable("unsupported_event_type", f"{type_}: " + _OTHER_TYPES.get(str(type_), "extension event types are not mapped"))
        if "errorDeclaration" in event:
            raise Unmappable(
                "error_declaration",
                "the event declares an earlier event erroneous; the ledger is append-only and "
                "cannot retract an entry: record what really happened as new events",
            )
        common = {"type", "eventTime", "eventTimeZoneOffset", "eventID", "recordTime", "bizStep", "disposition", "@context"}
        if type_ == "TransformationEvent":
            fields, used = self._transform(event)
            return "transform", fields, common | used
        action, step = event["action"], cbv_name(event.get("bizStep"), "bizStep")
        common.add("action")
        if action == "ADD" and step in (None, "commissioning") and event.get("type") == "ObjectEvent":
            fields, used = self._origin(event)
            return "origin", fields, common | used
        if action == "OBSERVE" and step == "shipping":
            fields, used = self._handoff(index, event)
            return "handoff", fields, common | used
        if action == "OBSERVE" and step == "receiving":
            fields, used = self._receipt(index, event)
            return "receipt", fields, common | used
        if action == "OBSERVE":
            raise Unmappable(
                "unsupported_biz_step",
                f"OBSERVE with bizStep {step or '(none)'}: only shipping and receiving move lots in "
                "the ledger (inspections, sensor readings and stock counts are not entries)",
            )
        raise Unmappable(
            "unsupported_action",
            f"{action} with bizStep {step or '(none)'}: "
            + ("lots leave the ledger only by being transformed, never deleted" if action == "DELETE"
               else "ADD makes new lots only when commissioning"),
        )

    def _site(self, event: Mapping[str, Any]) -> str:
        site = self.read.place(event, "bizLocation", "readPoint")
        if site is None:
            raise Unmappable("missing_site", "no bizLocation or readPoint says where it happened (the entry's site)")
        return site

    def _origin(self, event: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
        lots = self.read.new_lots(event, "epcList", "quantityList")
        if not lots:
            raise Unmappable("missing_lot", "the event names no lots (epcList or quantityList)")
        site = self._site(event)
        ilmd = event.get("ilmd") or {}
        country = ilmd.get(MDA_COUNTRY_OF_ORIGIN, ilmd.get("urn:epcglobal:cbv:mda:countryOfOrigin"))
        if not isinstance(country, str):
            raise Unmappable("missing_country", f"no {MDA_COUNTRY_OF_ORIGIN} in ilmd: an origin entry needs the country of origin")
        origin: dict[str, Any] = {"country": country}
        for name, key in (("region", "region"), ("place", "place"), ("producedOn", "produced_on")):
            value = self.read.get(ilmd, name)
            if value is not None:
                origin[key] = value
        geo = self.read.get(ilmd, "geo")
        if geo is not None:
            origin["geo"] = _geo(geo)
        fields: dict[str, Any] = {
            "author": self.actor(self.maker(event), "its author in the ledger it came from, or the operator of its bizLocation or readPoint"),
            "time": self.time(event),
            "lots": [lot.to_json() for lot in lots],
            "site": site,
            "origin": origin,
        }
        claims = self.read.get(ilmd, "claims")
        if claims is not None:
            fields["claims"] = claims
        return fields, {"epcList", "quantityList", "readPoint", "bizLocation", "ilmd"}

    def _handoff(self, index: int, event: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
        lots = self.read.lots(event, *_goods(event))
        if not lots:
            raise Unmappable("missing_lot", "the event names no lots (epcList or quantityList)")
        to = self.read.party(event.get("destinationList"), "destination") or self.later_recipient(index, frozenset(lots))
        if to is None:
            raise Unmappable(
                "missing_party",
                "a shipping event must say who receives the lots: a destinationList entry of type "
                "possessing_party or owning_party (or a location the import map knows), or a "
                "receiving event later in the document",
            )
        sender = (
            self.read.party(event.get("sourceList"), "source")
            or self.author(event)
            or self.read.operator(event, "readPoint", "bizLocation")
        )
        fields: dict[str, Any] = {
            "author": self.actor(sender, "the source party, who hands the lots over"),
            "time": self.time(event),
        }
        fields.update({"from": fields["author"], "to": to, "lots": lots, "dispatched_at": fields["time"]})
        used = {*_goods(event), "sourceList", "destinationList"}
        location = self.read.place(event, "readPoint", "bizLocation")
        if location is not None:
            fields["location"] = location
            used |= {"readPoint", "bizLocation"}
        mapped_all = True
        for tx in event.get("bizTransactionList", []):
            kind = cbv_name(tx.get("type"), "bizTransaction")
            if kind == "po" and self.read.source is not None and "contract" not in fields:
                # Only a Filiera export's purchase orders are ledger contracts; another
                # system's order number names nothing the ledger knows.
                fields["contract"] = self.read.reference(Kind.CONTRACT, tx["bizTransaction"])
            elif kind in ("bol", "desadv") and "shipment" not in fields:
                fields["shipment"] = self.read.reference(Kind.SHIPMENT, tx["bizTransaction"])
            else:
                mapped_all = False
        if mapped_all:
            used.add("bizTransactionList")
        return fields, used

    def _receipt(self, index: int, event: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
        lots = frozenset(self.read.lots(event, *_goods(event)))
        if not lots:
            raise Unmappable("missing_lot", "the event names no lots (epcList or quantityList)")
        recipient = self.actor(self.recipient(event), "the destination party, or the operator of the receiving place, who receives the lots")
        handoff = self._handoff_for(event, lots, recipient)
        status = "rejected" if cbv_name(event.get("disposition"), "disposition") == "returned" else "accepted"
        fields: dict[str, Any] = {"author": recipient, "time": self.time(event), "handoff": handoff, "status": status}
        fields["received_at"] = fields["time"]
        used = {*_goods(event), "sourceList", "destinationList"}
        location = self.read.place(event, "readPoint", "bizLocation")
        if location is not None:
            fields["location"] = location
            used |= {"readPoint", "bizLocation"}
        return fields, used

    def _handoff_for(self, event: Mapping[str, Any], lots: frozenset[str], recipient: str) -> str:
        """The entry id of the handoff this receiving event closes. Raises Unmappable."""
        source = self.read.get(self.entry_ext(event), "handoff")
        for s in reversed(self.shipped):
            if source is not None and s.source_entry == source and s.entry_id is not None:
                return s.entry_id
        for s in reversed(self.shipped):
            if s.entry_id is not None and s.lots & lots and s.to == recipient:
                if s.lots != lots:
                    raise Unmappable("partial_receipt", f"receives {len(lots)} lots, {len(s.lots & lots)} of the {len(s.lots)} shipped by eventList[{s.index}]; a receipt accepts or rejects exactly a handoff's lots")
                return s.entry_id
        known = self.finder(sorted(lots)[0], recipient) if self.finder else None
        if known is not None:
            if known.lots != lots:
                raise Unmappable(
                    "partial_receipt",
                    f"receives {len(lots)} lots, {len(known.lots & lots)} of the {len(known.lots)} of handoff {known.id} "
                    "in the ledger; a receipt accepts or rejects exactly a handoff's lots (a shipment "
                    "received in parts maps to a handoff per part only when the shipping event is "
                    "in the same document)",
                )
            return known.id
        refused = next((s for s in reversed(self.shipped) if s.entry_id is None and s.lots & lots), None)
        raise Unmappable(
            "no_handoff",
            f"no shipping event earlier in the document and no handoff in the ledger sends "
            f"these lots to {recipient}; a receipt must name the handoff it closes"
            + (f" (eventList[{refused.index}] shipped them but was refused)" if refused else ""),
        )

    def _transform(self, event: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
        inputs = self.read.lots(event, "inputEPCList", "inputQuantityList")
        outputs = self.read.new_lots(event, "outputEPCList", "outputQuantityList")
        if not inputs or not outputs:
            raise Unmappable(
                "partial_transformation",
                "a transform records its inputs and outputs together; this event has "
                + ("no inputs" if not inputs else "no outputs")
                + " (events joined by a transformationID are not mapped)",
            )
        fields: dict[str, Any] = {
            "author": self.actor(self.maker(event), "its author in the ledger it came from, or the operator of its bizLocation or readPoint"),
            "time": self.time(event),
            "inputs": inputs,
            "outputs": [lot.to_json() for lot in outputs],
            "site": self._site(event),
        }
        process = self.read.get(event, "process")
        if isinstance(process, str):
            fields["process"] = process
        return fields, {"inputEPCList", "inputQuantityList", "outputEPCList", "outputQuantityList", "readPoint", "bizLocation"}


def _moves(event: Mapping[str, Any]) -> str | None:
    """``shipping`` or ``receiving`` for an ObjectEvent or AggregationEvent OBSERVE that moves
    goods (an aggregation's children move with their container), else None."""
    step = cbv_name(event.get("bizStep"), "bizStep")
    if event.get("type") in ("ObjectEvent", "AggregationEvent") and event.get("action") == "OBSERVE" and step in ("shipping", "receiving"):
        return step
    return None


def _goods(event: Mapping[str, Any]) -> tuple[str, str]:
    """The keys of the EPC list and quantity list that name the goods an event moves."""
    if event.get("type") == "AggregationEvent":
        return "childEPCs", "childQuantityList"
    return "epcList", "quantityList"


def _geo(value: Any) -> dict[str, Any]:
    """An RFC 5870 ``geo:lat,lon`` URI as the origin's coordinates."""
    try:
        lat, lon = str(value).removeprefix("geo:").split(";")[0].split(",")[:2]
        return {"lat": float(lat), "lon": float(lon)}
    except ValueError as exc:
        raise Unmappable("invalid_entry", f"{value!r} is not a geo URI such as geo:41.1087,16.6912") from exc


def _nonce(author: Any, event: Mapping[str, Any], *, part: int | None = None) -> str:
    """A nonce the event (and the part of it) determines: the same event by the same author
    is the same entry."""
    which = b"" if part is None else f"part {part}\n".encode()
    digest = hashlib.sha256(_NONCE_CONTEXT + str(author).encode() + b"\n" + which + jcs.canonicalize(dict(event))).digest()
    return "epcis-" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def map_document(
    doc: Any,
    *,
    origin: str,
    signers: Sequence[str],
    find_handoff: HandoffFinder | None = None,
    import_map: ImportMap | None = None,
) -> list[Outcome]:
    """The outcomes of ``doc``'s events, in order: for each event a refusal or a payload for
    ``origin`` (a shipping event received in parts: one payload per part, ``Mapped.part``).

    ``signers`` are the participants whose keys will sign (the first signs events that name no
    party); ``find_handoff`` finds the handoff in the ledger that a receiving event closes when
    its shipping event is not in the document; ``import_map`` says which members and lots the
    document's GS1 identifiers are. Raises InvalidEpcisDocument if GS1's schema refuses ``doc``.
    """
    validate_document(doc)
    events = events_of(doc)
    mapper = _Mapper(doc, events, origin, signers, find_handoff, import_map)
    return [outcome for i, event in enumerate(events) for outcome in mapper.event(i, event)]
