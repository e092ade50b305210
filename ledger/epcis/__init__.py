"""GS1 EPCIS 2.0 (JSON/JSON-LD, with CBV 2.0) in and out of the ledger.

* :func:`lot_document` (``export``): a lot's history, as entries, to an EPCIS 2.0 document;
* :func:`map_document` (``mapping``): an EPCIS 2.0 document to unsigned payloads, one per
  event, or a refusal naming the event and why, reading GS1 identifiers through an
  :class:`ImportMap` (``partners``);
* :func:`validate_document` (``schema``): GS1's EPCIS JSON Schema, which both directions meet.

Pure: no I/O beyond reading the schema file, no clock, no database. ``docs/epcis.md`` has the
mapping table both ways and the refusal codes.
"""

from __future__ import annotations

from .export import EXPORTED_TYPES, HistoryEntry, event_id, lot_document
from .mapping import REFUSAL_CODES, Mapped, Outcome, Refused, map_document
from .partners import GLN_ATTRIBUTE, ImportMap, merge_members, parse_map
from .reading import LedgerHandoff, handoffs_sent
from .schema import events_of, validate_document
from .vocabulary import NS, PREFIX

__all__ = [
    "NS",
    "PREFIX",
    "EXPORTED_TYPES",
    "HistoryEntry",
    "event_id",
    "lot_document",
    "REFUSAL_CODES",
    "Mapped",
    "Refused",
    "Outcome",
    "LedgerHandoff",
    "GLN_ATTRIBUTE",
    "ImportMap",
    "parse_map",
    "merge_members",
    "map_document",
    "handoffs_sent",
    "events_of",
    "validate_document",
]
