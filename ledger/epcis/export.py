"""A lot's history as an EPCIS 2.0 document (GS1 EPCIS 2.0 §7, CBV 2.0), built from entries.

Pure: the caller reads the entries (``ledger.storage.history``) and filters them by what the
reader may see; this module only translates. Each entry becomes one event, except a co-signed
handoff, which was shipped and received at once and becomes a shipping and a receiving event:

=============  ==============================================================================
``origin``     ObjectEvent ADD, bizStep ``commissioning``, disposition ``active``; the lots in
               ``quantityList``, the site as readPoint and bizLocation, the origin in ``ilmd``
``handoff``    ObjectEvent OBSERVE, ``shipping``, ``in_transit``; ``from`` and ``to`` as the
               possessing party in ``sourceList`` and ``destinationList``; contract and
               shipment in ``bizTransactionList`` (``po``, ``bol``)
``receipt``    ObjectEvent OBSERVE, ``receiving``; ``in_progress`` if accepted, ``returned`` if
               rejected; the handoff's lots and parties
``transform``  TransformationEvent, ``commissioning``, ``active``; inputs and outputs in the
               input and output quantity lists, the site as readPoint and bizLocation
=============  ==============================================================================

Every event carries ``filiera:entry`` (the entry's id, leaf hash, log index, type and author),
so that a reader can fetch the entry's proof and check it against a checkpoint; the document
carries ``filiera:ledger`` (the origin) and, in its master data, every lot's id, product and
unit. ``docs/epcis.md`` has the whole table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..encoding import format_time
from ..entries import Envelope
from ..payloads import EntryType
from .vocabulary import (
    EPC_CLASS_VOCABULARY,
    EPCIS_CONTEXT,
    MDA_COUNTRY_OF_ORIGIN,
    MDA_DESCRIPTION,
    NS,
    PREFIX,
    Kind,
    LedgerUris,
    lot_uri,
    quantity_number,
    uom_for,
)

__all__ = ["HistoryEntry", "EXPORTED_TYPES", "event_id", "lot_document"]

# The entry types that are events in a lot's history; the others (attestations, contracts,
# payments) are about the lot, not done to it, and stay in the ledger.
EXPORTED_TYPES = frozenset({EntryType.ORIGIN, EntryType.HANDOFF, EntryType.RECEIPT, EntryType.TRANSFORM})

# The ``ver`` says how the hash was made: the SHA-256 of the entry's JCS payload (the entry
# id), not GS1's CBV 2.0 event hash, which hashes the EPCIS event itself.
_EVENT_ID = "ni:///sha-256;{}?ver=filiera-entry-v1"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One sealed entry of a lot's history: the envelope, its log index and when the ledger
    recorded it (its block's time)."""

    envelope: Envelope
    index: int
    recorded: str


@dataclass(frozen=True, slots=True)
class _Lot:
    product: str
    quantity: str
    unit: str


def event_id(entry_id: str, part: str | None = None) -> str:
    """The eventID of an entry's event (``part`` tells apart the two events of one entry)."""
    base = _EVENT_ID.format(entry_id)
    return f"{base}&event={part}" if part else base


def _t(name: str) -> str:
    return f"{PREFIX}:{name}"


class _Builder:
    def __init__(self, origin: str, history: Sequence[HistoryEntry]) -> None:
        self.uris = LedgerUris(origin)
        self.lots: dict[str, _Lot] = {}
        self.handoffs: dict[str, Mapping[str, Any]] = {}
        for h in history:
            p = h.envelope.payload
            if h.envelope.type is EntryType.ORIGIN:
                made = p["lots"]
            elif h.envelope.type is EntryType.TRANSFORM:
                made = p["outputs"]
            else:
                made = []
                if h.envelope.type is EntryType.HANDOFF:
                    self.handoffs[h.envelope.id] = p
            for lot in made:
                self.lots[lot["lot"]] = _Lot(lot["product"], lot["quantity"], lot["unit"])
        self.used: dict[str, str] = {}  # lot id -> its URI, in order of first use

    # --- identifiers -----------------------------------------------------------------

    def lot(self, lot: str) -> str:
        known = self.lots.get(lot)
        uri = lot_uri(self.uris, lot, known.product if known else None)
        self.used.setdefault(lot, uri)
        return uri

    def quantity(self, lot: str, *, whole: bool) -> dict[str, Any]:
        """A quantity element; with ``whole`` the lot's quantity when the history made it."""
        element: dict[str, Any] = {"epcClass": self.lot(lot)}
        known = self.lots.get(lot)
        if whole and known is not None:
            element["quantity"] = quantity_number(known.quantity)
            uom = uom_for(known.unit)
            if uom is not None:
                element["uom"] = uom
        return element

    def party(self, participant: str, *, source: bool) -> dict[str, str]:
        key = "source" if source else "destination"
        return {"type": "possessing_party", key: self.uris.uri(Kind.PARTICIPANT, participant)}

    def place(self, text: str) -> dict[str, str]:
        return {"id": self.uris.uri(Kind.LOCATION, text)}

    # --- events ----------------------------------------------------------------------

    def common(self, h: HistoryEntry, kind: str, when: str, part: str | None = None) -> dict[str, Any]:
        env = h.envelope
        return {
            "type": kind,
            "eventTime": when,
            "eventTimeZoneOffset": "+00:00",
            "recordTime": h.recorded,
            "eventID": event_id(env.id, part),
        }

    def entry(self, h: HistoryEntry, **more: str) -> dict[str, Any]:
        env = h.envelope
        ext: dict[str, Any] = {
            _t("id"): env.id,
            _t("leafHash"): env.leaf_hash.hex(),
            _t("index"): h.index,
            _t("type"): env.type.value,
            _t("author"): env.author,
        }
        ext.update({_t(k): v for k, v in more.items()})
        return {_t("entry"): ext}

    def origin(self, h: HistoryEntry) -> dict[str, Any]:
        p = h.envelope.payload
        o = p["origin"]
        ilmd: dict[str, Any] = {MDA_COUNTRY_OF_ORIGIN: o["country"]}
        for name, key in (("region", "region"), ("place", "place"), ("produced_on", "producedOn")):
            if name in o:
                ilmd[_t(key)] = o[name]
        if "geo" in o:
            # RFC 5870 geo URI: latitude, then longitude, in WGS-84.
            ilmd[_t("geo")] = f"geo:{o['geo']['lat']!r},{o['geo']['lon']!r}"
        if "claims" in p:
            ilmd[_t("claims")] = list(p["claims"])
        return {
            **self.common(h, "ObjectEvent", p["time"]),
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "quantityList": [self.quantity(lot["lot"], whole=True) for lot in p["lots"]],
            "readPoint": self.place(p["site"]),
            "bizLocation": self.place(p["site"]),
            "ilmd": ilmd,
            **self.entry(h),
        }

    def _movement(self, h: HistoryEntry, handoff: Mapping[str, Any], *, step: str, disposition: str, when: str, location: str | None, part: str | None = None) -> dict[str, Any]:
        ev: dict[str, Any] = {
            **self.common(h, "ObjectEvent", when, part),
            "action": "OBSERVE",
            "bizStep": step,
            "disposition": disposition,
            "quantityList": [self.quantity(lot, whole=True) for lot in handoff["lots"]],
            "sourceList": [self.party(handoff["from"], source=True)],
            "destinationList": [self.party(handoff["to"], source=False)],
        }
        if location is not None:
            ev["readPoint"] = self.place(location)
        return ev

    def handoff(self, h: HistoryEntry) -> list[dict[str, Any]]:
        p = h.envelope.payload
        shipping = self._movement(h, p, step="shipping", disposition="in_transit", when=p["dispatched_at"], location=p.get("location"))
        transactions = []
        if "contract" in p:
            transactions.append({"type": "po", "bizTransaction": self.uris.uri(Kind.CONTRACT, p["contract"])})
        if "shipment" in p:
            transactions.append({"type": "bol", "bizTransaction": self.uris.uri(Kind.SHIPMENT, p["shipment"])})
        if transactions:
            shipping["bizTransactionList"] = transactions
        shipping.update(self.entry(h))
        events = [shipping]
        if p["to"] in h.envelope.signers():
            # Co-signed by the recipient: received the moment it was handed over (PROTOCOL §4).
            receiving = self._movement(h, p, step="receiving", disposition="in_progress", when=p["dispatched_at"], location=p.get("location"), part="receiving")
            receiving.update(self.entry(h, handoff=h.envelope.id))
            events.append(receiving)
        return events

    def receipt(self, h: HistoryEntry) -> list[dict[str, Any]]:
        p = h.envelope.payload
        handoff = self.handoffs.get(p["handoff"])
        if handoff is None:
            # The handoff is not in what the reader may see: without it the event could not
            # name its lots, which EPCIS requires.
            return []
        disposition = "in_progress" if p["status"] == "accepted" else "returned"
        ev = self._movement(h, handoff, step="receiving", disposition=disposition, when=p["received_at"], location=p.get("location"))
        ev.update(self.entry(h, handoff=p["handoff"]))
        return [ev]

    def transform(self, h: HistoryEntry) -> dict[str, Any]:
        p = h.envelope.payload
        ev: dict[str, Any] = {
            **self.common(h, "TransformationEvent", p["time"]),
            "inputQuantityList": [self.quantity(lot, whole=True) for lot in p["inputs"]],
            "outputQuantityList": [self.quantity(lot["lot"], whole=True) for lot in p["outputs"]],
            "bizStep": "commissioning",
            "disposition": "active",
            "readPoint": self.place(p["site"]),
            "bizLocation": self.place(p["site"]),
        }
        if "process" in p:
            ev[_t("process")] = p["process"]
        ev.update(self.entry(h))
        return ev

    def master_data(self) -> dict[str, Any]:
        elements = []
        for lot, uri in self.used.items():
            attributes: list[dict[str, Any]] = [{"id": _t("lot"), "attribute": lot}]
            known = self.lots.get(lot)
            if known is not None:
                attributes.append({"id": MDA_DESCRIPTION, "attribute": known.product})
                attributes.append({"id": _t("unit"), "attribute": known.unit})
            elements.append({"id": uri, "attributes": attributes})
        return {"vocabularyList": [{"type": EPC_CLASS_VOCABULARY, "vocabularyElementList": elements}]}


def lot_document(origin: str, lot: str, history: Sequence[HistoryEntry], *, created: datetime) -> dict[str, Any]:
    """The EPCIS 2.0 document of ``lot``'s ``history`` (entries in log order) in the ledger
    ``origin``. Entries of other types than :data:`EXPORTED_TYPES` are left out.

    The result validates against GS1's EPCIS JSON Schema (``ledger.epcis.schema``).
    """
    b = _Builder(origin, history)
    events: list[dict[str, Any]] = []
    for h in history:
        t = h.envelope.type
        if t is EntryType.ORIGIN:
            events.append(b.origin(h))
        elif t is EntryType.HANDOFF:
            events.extend(b.handoff(h))
        elif t is EntryType.RECEIPT:
            events.extend(b.receipt(h))
        elif t is EntryType.TRANSFORM:
            events.append(b.transform(h))
    b.lot(lot)  # the lot itself has a master data element even if no visible event names it
    doc: dict[str, Any] = {
        "@context": [EPCIS_CONTEXT, {PREFIX: NS}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": format_time(created),
        _t("ledger"): origin,
        _t("lot"): b.used[lot],
        "epcisHeader": {"epcisMasterData": b.master_data()},
        "epcisBody": {"eventList": events},
    }
    return doc
