"""EPCIS 2.0 documents checked against GS1's JSON Schema (EPCIS 2.0 §12.1, draft-07).

``EPCIS-JSON-Schema.json`` beside this module is GS1's single-file schema (gs1/EPCIS, commit
2b888bef; the same file as ``tests/vectors/epcis-2.0/schema``). Its ``uri`` and ``date-time``
formats carry much of its meaning (every identifier is a URI, every time RFC 3339), so the
checker refuses to run without the libraries that check them rather than pass everything.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from ..errors import ConfigurationError, InvalidEpcisDocument

__all__ = ["SCHEMA_FILE", "validate_document", "events_of"]

SCHEMA_FILE = Path(__file__).with_name("EPCIS-JSON-Schema.json")

# Formats the schema relies on; jsonschema skips a format silently when its checker is missing.
_REQUIRED_FORMATS = frozenset({"uri", "date-time"})


@functools.cache
def _validator() -> Draft7Validator:
    checker = Draft7Validator.FORMAT_CHECKER
    missing = _REQUIRED_FORMATS - set(checker.checkers)
    if missing:
        raise ConfigurationError(
            f"cannot check EPCIS documents: no checker for the {', '.join(sorted(missing))} "
            "format; install rfc3986-validator and rfc3339-validator (Filiera's dependencies)"
        )
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return Draft7Validator(schema, format_checker=checker)


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def validate_document(doc: Any) -> None:
    """Check ``doc`` (parsed JSON) against GS1's schema, as an EPCISDocument or an
    EPCISQueryDocument. Raises InvalidEpcisDocument naming the first problem's JSON pointer."""
    if not isinstance(doc, dict) or doc.get("type") not in ("EPCISDocument", "EPCISQueryDocument"):
        raise InvalidEpcisDocument(
            'an EPCIS 2.0 document is a JSON object with "type": "EPCISDocument" '
            '(or "EPCISQueryDocument")',
            path="/",
        )
    error = best_match(_validator().iter_errors(doc))
    if error is not None:
        where = _pointer(error.absolute_path)
        raise InvalidEpcisDocument(
            f"not valid against GS1's EPCIS 2.0 JSON Schema at {where}: {error.message[:300]}",
            path=where,
        )


def events_of(doc: dict[str, Any]) -> list[Any]:
    """The event list of a validated document (a query document keeps it in its results)."""
    body = doc["epcisBody"]
    if doc["type"] == "EPCISQueryDocument":
        events: list[Any] = body["queryResults"]["resultsBody"]["eventList"]
    else:
        events = body["eventList"]
    return events
