"""Who and what a trading partner's EPCIS document names, in ledger terms: the import map of
``filiera epcis import --map`` (docs/epcis.md, "Importing a partner's document").

GS1 documents name parties and places by GLN (``urn:epc:id:sgln:…``, ``urn:epc:id:pgln:…``,
Digital Links such as ``https://id.gs1.org/414/…``) and goods by EPC (SGTIN, LGTIN, EPC
patterns, Digital Links). A ledger names members by participant id and goods by lot id. The
map says which is which::

    {"parties": {"urn:epc:id:sgln:0614141.07346.1234": "acme", ...},
     "lots": {"urn:epc:idpat:sgtin:4012345.066666.*": "SUGAR-2014-07", ...}}

A party identifier may be a party (``possessing_party``, ``owning_party``) or a place
(``readPoint``, ``bizLocation``, a ``location`` source or destination): a place maps to the
member that operates it, which is how an event that names no party finds its author. Members
may also list their identifiers in the ledger, as the participant attribute ``gln`` (one or
more identifiers separated by spaces); :func:`merge_members` adds those, and the map wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..encoding import PARTICIPANT_ID_RE
from ..errors import InvalidEpcisMap
from .vocabulary import fits_lot_id, is_uri

__all__ = ["GLN_ATTRIBUTE", "ImportMap", "parse_map", "merge_members"]

# The participant attribute (PROTOCOL §4 ``attributes``) a member lists its GS1 identifiers in.
GLN_ATTRIBUTE = "gln"


@dataclass(frozen=True, slots=True)
class ImportMap:
    """EPCIS identifiers to participant ids (``parties``) and to lot ids (``lots``)."""

    parties: Mapping[str, str] = field(default_factory=dict)
    lots: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for uri, pid in self.parties.items():
            if not is_uri(uri) or PARTICIPANT_ID_RE.fullmatch(pid) is None:
                raise InvalidEpcisMap(
                    f"parties: {uri!r} -> {pid!r}: map a GS1 identifier (a URI such as "
                    "urn:epc:id:sgln:...) to a participant id",
                    field="parties",
                )
        for uri, lot in self.lots.items():
            if not is_uri(uri) or not fits_lot_id(lot):
                raise InvalidEpcisMap(
                    f"lots: {uri!r} -> {lot!r}: map an EPC, EPC class or pattern (a URI) to a lot id",
                    field="lots",
                )

    def party(self, uri: str) -> str | None:
        return self.parties.get(uri)

    def lot(self, uri: str) -> str | None:
        return self.lots.get(uri)


def parse_map(doc: Any) -> ImportMap:
    """The import map a JSON document holds. Raises InvalidEpcisMap."""
    if not isinstance(doc, dict) or not set(doc) <= {"parties", "lots"}:
        raise InvalidEpcisMap("the map is a JSON object with at most the members parties and lots", field="map")
    tables: dict[str, dict[str, str]] = {}
    for name in ("parties", "lots"):
        table = doc.get(name, {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise InvalidEpcisMap(f"{name} must be an object of identifier: id strings", field=name)
        tables[name] = dict(table)
    return ImportMap(parties=tables["parties"], lots=tables["lots"])


def merge_members(base: ImportMap, members: Iterable[tuple[str, Mapping[str, str]]]) -> ImportMap:
    """``base`` plus the identifiers members list in their ``gln`` attribute; ``base`` wins.

    Raises InvalidEpcisMap if two members claim the same identifier (unless ``base`` settles it).
    """
    claimed: dict[str, str] = {}
    for pid, attributes in members:
        for uri in attributes.get(GLN_ATTRIBUTE, "").split():
            if uri in base.parties or not is_uri(uri):
                continue
            if claimed.setdefault(uri, pid) != pid:
                raise InvalidEpcisMap(
                    f"{uri} is claimed by both {claimed[uri]} and {pid} (attribute {GLN_ATTRIBUTE}); "
                    "say which in the map's parties",
                    field="parties",
                )
    return ImportMap(parties={**claimed, **base.parties}, lots=dict(base.lots))
