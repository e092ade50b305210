"""Reading an EPCIS 2.0 document's identifiers, parties, places and master data back into
ledger values: the half of the mapping that does not depend on the event type.

A document exported by a Filiera ledger names its ledger (``filiera:ledger``) and gives each
lot's id, product and unit in its EPCClass master data; URIs under that ledger's origin turn
back into the values they were made from. Any other document is read by GS1's identifiers
alone: an EPC URN or Digital Link *is* the lot or participant id (PROTOCOL §1 patterns fit
them), and a GTIN inside it is the product when master data gives no name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..encoding import PARTICIPANT_ID_RE
from .partners import ImportMap
from .vocabulary import (
    COUNT_UNIT,
    EPC_CLASS_VOCABULARY,
    MDA_DESCRIPTION,
    NS,
    Kind,
    LedgerUris,
    cbv_name,
    fits_lot_id,
    gtin_of_identifier,
    is_pattern,
    quantity_text,
    unit_for,
)

__all__ = ["Unmappable", "Reader", "LotFacts", "LedgerHandoff", "handoffs_sent"]


class Unmappable(Exception):
    """An event cannot become an entry: ``code`` (docs/epcis.md) and a reason for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LedgerHandoff:
    """A handoff in the ledger: its entry id, recipient, lots, and whether it was received."""

    id: str
    to: str | None
    lots: frozenset[str]
    received: bool = False


@dataclass(frozen=True, slots=True)
class LotFacts:
    lot: str
    product: str
    quantity: str
    unit: str

    def to_json(self) -> dict[str, str]:
        return {"lot": self.lot, "product": self.product, "quantity": self.quantity, "unit": self.unit}


def _prefixes(context: Any) -> set[str]:
    """The prefixes the document's @context binds to Filiera's namespace."""
    items = context if isinstance(context, list) else [context]
    return {k for item in items if isinstance(item, dict) for k, v in item.items() if v == NS}


class Reader:
    """One validated document: its Filiera terms, its source ledger and its master data."""

    def __init__(self, doc: Mapping[str, Any], import_map: ImportMap | None = None) -> None:
        self.map = import_map or ImportMap()
        self.prefixes = _prefixes(doc.get("@context"))
        source = self.get(doc, "ledger")
        self.source = LedgerUris(source) if isinstance(source, str) else None
        self.master: dict[str, dict[str, Any]] = {}
        header = doc.get("epcisHeader", {}).get("epcisMasterData", {})
        results = doc.get("epcisBody", {}).get("queryResults", {}).get("resultsBody", {})
        for vocabulary in [*header.get("vocabularyList", []), *results.get("vocabularyList", [])]:
            if vocabulary.get("type") != EPC_CLASS_VOCABULARY:
                continue
            for element in vocabulary.get("vocabularyElementList", []):
                attrs = {a["id"]: a.get("attribute") for a in element.get("attributes", [])}
                self.master.setdefault(element["id"], {}).update(attrs)

    # --- Filiera's extension terms -------------------------------------------------------

    def is_term(self, key: str, name: str) -> bool:
        return key == NS + name or any(key == f"{p}:{name}" for p in self.prefixes)

    def get(self, obj: Mapping[str, Any], name: str) -> Any:
        for key, value in obj.items():
            if self.is_term(key, name):
                return value
        return None

    def is_filiera(self, key: str) -> bool:
        return key.startswith(NS) or any(key.startswith(f"{p}:") for p in self.prefixes)

    def _attribute(self, uri: str, name: str) -> Any:
        attrs = self.master.get(uri, {})
        for key, value in attrs.items():
            if key == name or self.is_term(key, name):
                return value
        return None

    # --- lots --------------------------------------------------------------------------

    def lot_id(self, uri: str) -> str:
        """The ledger lot an identifier names: the import map's, else the identifier's own.
        Raises Unmappable."""
        mapped = self.map.lot(uri)
        if mapped is not None:
            return mapped
        if is_pattern(uri):
            raise Unmappable(
                "invalid_identifier",
                f"{uri} is an EPC pattern, a class of objects rather than one lot; name the lot "
                "(an LGTIN, SGTIN or other EPC) instead, or say which lot it is in the import "
                "map's lots (--map)",
            )
        named = self._attribute(uri, "lot")
        if isinstance(named, str):
            lot = named
        elif self.source is not None:
            lot = self.source.value(Kind.LOT, uri)
        else:
            lot = uri
        if not fits_lot_id(lot):
            raise Unmappable(
                "invalid_identifier",
                f"{uri} cannot be a lot id: a lot id is 1-200 characters of A-Z a-z 0-9 . _ : / - "
                "(EPC URNs and most Digital Links fit; percent-escapes do not)",
            )
        return lot

    def product(self, uri: str) -> str:
        name = self._attribute(uri, MDA_DESCRIPTION)
        if isinstance(name, str):
            return name
        gtin = gtin_of_identifier(uri)
        if gtin is not None:
            return gtin
        raise Unmappable(
            "missing_product",
            f"nothing names the product of {uri}: give it EPCClass master data with "
            f"{MDA_DESCRIPTION}, or identify it by a GTIN (LGTIN, SGTIN, Digital Link)",
        )

    def instance(self, uri: str) -> LotFacts:
        """An instance EPC (epcList) as a lot of one item."""
        return LotFacts(self.lot_id(uri), self.product(uri), "1", COUNT_UNIT)

    def quantity(self, element: Mapping[str, Any]) -> LotFacts:
        """A quantityList element as a whole lot. Raises Unmappable."""
        uri = element["epcClass"]
        lot = self.lot_id(uri)
        quantity = quantity_text(element.get("quantity"))
        if quantity is None:
            raise Unmappable(
                "missing_quantity",
                f"the quantity of {uri} is missing or not positive; a new lot needs its quantity",
            )
        unit = self._attribute(uri, "unit")
        if not isinstance(unit, str):
            unit = unit_for(element.get("uom"))
        return LotFacts(lot, self.product(uri), quantity, unit)

    def lots(self, event: Mapping[str, Any], epcs: str, quantities: str) -> list[str]:
        """The lot ids an event's EPC and quantity lists name. Raises Unmappable."""
        found = [self.lot_id(u) for u in event.get(epcs, [])]
        found += [self.lot_id(q["epcClass"]) for q in event.get(quantities, [])]
        return list(dict.fromkeys(found))

    def new_lots(self, event: Mapping[str, Any], epcs: str, quantities: str) -> list[LotFacts]:
        """The lots an event makes, with product, quantity and unit. Raises Unmappable."""
        found = [self.instance(u) for u in event.get(epcs, [])]
        found += [self.quantity(q) for q in event.get(quantities, [])]
        return found

    # --- parties, places and references ------------------------------------------------

    def party(self, entries: Any, key: str) -> str | None:
        """The participant a sourceList or destinationList names: the possessing party, else
        the owning party, else the member the import map says operates its ``location``.
        Raises Unmappable if it names a party that cannot be a participant id."""
        by_type: dict[str, str] = {}
        for item in entries or []:
            kind = cbv_name(item.get("type"), "sourceDest")
            if kind in ("possessing_party", "owning_party", "location"):
                by_type.setdefault(kind, item[key])
        uri = by_type.get("possessing_party") or by_type.get("owning_party")
        if uri is None:
            where = by_type.get("location")
            return self.map.party(where) if where is not None else None
        return self.participant(uri)

    def participant(self, uri: str) -> str:
        """The member a party identifier names: the import map's, else a Filiera export's,
        else the identifier itself. Raises Unmappable if that cannot be a participant id."""
        mapped = self.map.party(uri)
        if mapped is not None:
            return mapped
        participant = self.source.value(Kind.PARTICIPANT, uri) if self.source else uri
        if PARTICIPANT_ID_RE.fullmatch(participant) is None:
            raise Unmappable(
                "invalid_party",
                f"party {uri} cannot be a participant id (2-128 characters of a-z 0-9 . _ : -, "
                "lower case; PGLN and SGLN URNs fit); say which member it is in the import "
                "map's parties (--map)",
            )
        return participant

    def operator(self, event: Mapping[str, Any], *order: str) -> str | None:
        """The member the import map says operates the first of ``order`` (readPoint,
        bizLocation) the event names, if any."""
        for key in order:
            where = event.get(key)
            if isinstance(where, dict) and isinstance(where.get("id"), str):
                found = self.map.party(where["id"])
                if found is not None:
                    return found
        return None

    def place(self, event: Mapping[str, Any], *order: str) -> str | None:
        """The text of the first of ``order`` (readPoint, bizLocation) the event has."""
        for key in order:
            where = event.get(key)
            if isinstance(where, dict) and isinstance(where.get("id"), str):
                uri: str = where["id"]
                return self.source.value(Kind.LOCATION, uri) if self.source else uri
        return None

    def reference(self, kind: Kind, uri: str) -> str:
        return self.source.value(kind, uri) if self.source else uri


def handoffs_sent(doc: Mapping[str, Any], events: list[Any]) -> list[LedgerHandoff]:
    """The handoffs a Filiera export (``GET /v1/lots/{lot}/epcis``) shows, in log order, each
    marked received or not: how ``filiera epcis import`` finds the handoff a receiving event
    closes when the document does not ship the lots itself."""
    read = Reader(doc)
    sent: dict[str, LedgerHandoff] = {}
    for event in events:
        ext = read.get(event, "entry")
        if not isinstance(ext, dict):
            continue
        step = cbv_name(event.get("bizStep"), "bizStep")
        try:
            if step == "shipping" and read.get(ext, "type") == "handoff":
                entry = str(read.get(ext, "id"))
                to = read.party(event.get("destinationList"), "destination")
                sent[entry] = LedgerHandoff(entry, to, frozenset(read.lots(event, "epcList", "quantityList")))
            elif step == "receiving":
                closed = sent.get(str(read.get(ext, "handoff")))
                if closed is not None:
                    sent[closed.id] = LedgerHandoff(closed.id, closed.to, closed.lots, received=True)
        except Unmappable:
            continue
    return list(sent.values())
