"""Entry payload shapes (PROTOCOL §3, §4): which fields each entry type has, and their forms.

Shape only: whether a field is present, of the right kind and within its pattern. Whether
the entry is *allowed* (signers, roles, state) is decided by ``ledger.rules`` at sealing.
The tables here are the single source of the field lists: the envelope parser, the API's
OpenAPI description and the docs read them.

Privacy (PROTOCOL §9): every string of a payload is screened for e-mail addresses and phone
numbers, which are refused with ``personal_data`` because the log can never erase them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .encoding import (
    check_key_id,
    check_lot_id,
    check_nonce,
    check_participant_id,
    parse_time,
    unhex32,
)
from .errors import InvalidField, MissingField, PersonalData, UnknownField, UnknownType
from .keys import PublicKey

__all__ = [
    "EntryType",
    "Role",
    "FieldSpec",
    "COMMON_FIELDS",
    "TYPE_FIELDS",
    "MAX_ADMINS",
    "validate_payload",
    "screen_personal_data",
]

MAX_TEXT = 200
MAX_REASON = 500
MAX_ADMINS = 64
MAX_KEYS = 16
MAX_ATTRIBUTES = 32
MAX_LOTS = 1000


class EntryType(StrEnum):
    GENESIS = "ledger.genesis"
    PARTICIPANT_REGISTER = "participant.register"
    PARTICIPANT_UPDATE = "participant.update"
    KEY_ADD = "key.add"
    KEY_REVOKE = "key.revoke"
    ORIGIN = "origin"
    HANDOFF = "handoff"
    RECEIPT = "receipt"
    TRANSFORM = "transform"
    ATTESTATION = "attestation"
    CONTRACT = "contract"
    CONTRACT_CLOSE = "contract.close"
    PAYMENT = "payment"
    PAYMENT_CONFIRM = "payment.confirm"


class Role(StrEnum):
    ADMIN = "admin"
    PRODUCER = "producer"
    PROCESSOR = "processor"
    CARRIER = "carrier"
    WAREHOUSE = "warehouse"
    RETAILER = "retailer"
    BUYER = "buyer"
    CERTIFIER = "certifier"
    AUDITOR = "auditor"


Check = Callable[[Any, str], Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One payload field: how to check it, and whether it must be present."""

    check: Check
    required: bool = True
    doc: str = ""


# --- field checks: each takes (value, dotted field name) and returns the value or raises ---


_CONTROL_CHAR = re.compile(r"[\x00-\x1f]")


def _text(limit: int) -> Check:
    def check(value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidField(
                f"{field} must be a non-blank string of at most {limit} characters", field=field
            )
        if _CONTROL_CHAR.search(value) is not None:
            raise InvalidField(f"{field} must not contain control characters", field=field)
        return value

    return check


def _participant_id(value: Any, field: str) -> str:
    return check_participant_id(value, field=field)


def _key_id(value: Any, field: str) -> str:
    return check_key_id(value, field=field)


def _public_key(value: Any, field: str) -> str:
    PublicKey.from_b64(value, field=field)
    return str(value)


def _time(value: Any, field: str) -> str:
    parse_time(value, field=field)
    return str(value)


def _roles(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidField(f"{field} must be a non-empty list of roles", field=field)
    allowed = {r.value for r in Role}
    for i, role in enumerate(value):
        # A list or object is unhashable: test the type before the set.
        if not isinstance(role, str) or role not in allowed:
            raise InvalidField(
                f"{field}[{i}] must be one of {', '.join(sorted(allowed))}", field=f"{field}[{i}]"
            )
    if len(set(value)) != len(value):
        raise InvalidField(f"{field} lists a role twice", field=field)
    return value


def _object(fields: Mapping[str, FieldSpec]) -> Check:
    def check(value: Any, field: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise InvalidField(f"{field} must be an object", field=field)
        _check_fields(value, fields, prefix=f"{field}.")
        return value

    return check


def _list_of(item: Check, *, min_items: int, max_items: int) -> Check:
    def check(value: Any, field: str) -> list[Any]:
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            raise InvalidField(
                f"{field} must be a list of {min_items} to {max_items} items", field=field
            )
        for i, v in enumerate(value):
            item(v, f"{field}[{i}]")
        return value

    return check


def _attributes(value: Any, field: str) -> Mapping[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES:
        raise InvalidField(
            f"{field} must be an object of at most {MAX_ATTRIBUTES} string values", field=field
        )
    for k, v in value.items():
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", k):
            raise InvalidField(f"{field} key {k!r} must be a short lowercase name", field=field)
        _text(MAX_TEXT)(v, f"{field}.{k}")
    return value


def _positive_int(limit: int) -> Check:
    def check(value: Any, field: str) -> int:
        # bool is an int in Python; JSON true is not a number.
        if type(value) is not int or not 1 <= value <= limit:
            raise InvalidField(f"{field} must be an integer from 1 to {limit}", field=field)
        return value

    return check


def _const(expected: str) -> Check:
    def check(value: Any, field: str) -> str:
        if value != expected:
            raise InvalidField(f"{field} must be {expected!r}", field=field)
        return expected

    return check


def _lot_id(value: Any, field: str) -> str:
    return check_lot_id(value, field=field)


def _entry_id(value: Any, field: str) -> str:
    unhex32(value, field=field)
    return str(value)


_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,12})?")


def _decimal(value: Any, field: str) -> str:
    """A positive decimal string such as "12.50": money and quantities are never floats."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise InvalidField(
            f"{field} must be a decimal string such as \"12.50\", not a JSON number", field=field
        )
    if not isinstance(value, str) or _DECIMAL.fullmatch(value) is None or not any(
        c in "123456789" for c in value
    ):
        raise InvalidField(
            f"{field} must be a positive decimal string such as \"12.50\"", field=field
        )
    return value


def _date(value: Any, field: str) -> str:
    """A calendar date, YYYY-MM-DD (RFC 3339 full-date)."""
    import datetime as _dt

    if not isinstance(value, str) or re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value) is None:
        raise InvalidField(f"{field} must be a date YYYY-MM-DD", field=field)
    try:
        _dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidField(f"{field} is not a real calendar date", field=field) from exc
    return value


def _code(pattern: str, what: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: Any, field: str) -> str:
        if not isinstance(value, str) or compiled.fullmatch(value) is None:
            raise InvalidField(f"{field} must be {what}", field=field)
        return value

    return check


_COUNTRY = _code(r"[A-Z]{2}", "an ISO 3166-1 alpha-2 country code such as IT")
_CURRENCY = _code(r"[A-Z]{3}", "an ISO 4217 currency code such as EUR")
_CLAIM = _code(r"[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,63}", "a claim name such as organic or PDO")
_UNIT = _code(r"[A-Za-z][A-Za-z0-9_.%/-]{0,15}", "a unit such as kg, l or bottle-750ml")


def _coordinate(limit: float) -> Check:
    def check(value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -limit <= value <= limit:
            raise InvalidField(f"{field} must be a number from -{limit:g} to {limit:g}", field=field)
        return float(value)

    return check


def _one_of(*allowed: str) -> Check:
    def check(value: Any, field: str) -> str:
        if value not in allowed:
            raise InvalidField(f"{field} must be one of {', '.join(allowed)}", field=field)
        return str(value)

    return check


def _unique(check: Check) -> Check:
    def unique(value: Any, field: str) -> Any:
        check(value, field)
        keys = [v["lot"] if isinstance(v, dict) else v for v in value]
        if len(set(keys)) != len(keys):
            raise InvalidField(f"{field} lists a lot twice", field=field)
        return value

    return unique


_KEY_OBJECT = _object({"public_key": FieldSpec(_public_key, doc="base64 Ed25519 public key")})

_PARTICIPANT = {
    "id": FieldSpec(_participant_id, doc="participant id"),
    "name": FieldSpec(_text(MAX_TEXT), doc="public trading name of the organisation"),
    "roles": FieldSpec(_roles, doc="roles, from the list of PROTOCOL §4"),
    "keys": FieldSpec(
        _list_of(_KEY_OBJECT, min_items=1, max_items=MAX_KEYS), doc="initial public keys"
    ),
    "attributes": FieldSpec(_attributes, required=False, doc="public business attributes"),
}

_LOT = _object(
    {
        "lot": FieldSpec(_lot_id, doc="lot id (EPC URNs fit)"),
        "product": FieldSpec(_text(MAX_TEXT), doc="product name or GTIN"),
        "quantity": FieldSpec(_decimal, doc="decimal string"),
        "unit": FieldSpec(_UNIT, doc="unit of the quantity"),
    }
)
_LOTS = _unique(_list_of(_LOT, min_items=1, max_items=MAX_LOTS))
_LOT_IDS = _unique(_list_of(_lot_id, min_items=1, max_items=MAX_LOTS))
_CLAIMS = _list_of(_CLAIM, min_items=1, max_items=32)

COMMON_FIELDS: Mapping[str, FieldSpec] = {
    "ledger": FieldSpec(_text(MAX_TEXT), doc="the ledger's origin"),
    "type": FieldSpec(_text(64), doc="entry type"),
    "author": FieldSpec(_participant_id, doc="participant id of the author"),
    "time": FieldSpec(_time, doc="RFC 3339 UTC time the author made the entry"),
    "nonce": FieldSpec(lambda v, f: check_nonce(v, field=f), doc="16-64 url-safe characters"),
}

TYPE_FIELDS: Mapping[EntryType, Mapping[str, FieldSpec]] = {
    EntryType.GENESIS: {
        "ledger_key": FieldSpec(_public_key, doc="the ledger's own public key (extension)"),
        "admins": FieldSpec(
            _list_of(_object(_PARTICIPANT), min_items=1, max_items=MAX_ADMINS),
            doc="the first admins",
        ),
        "policy": FieldSpec(
            _object({"admin_quorum": FieldSpec(_positive_int(MAX_ADMINS))}),
            doc="governance policy",
        ),
    },
    EntryType.PARTICIPANT_REGISTER: {
        "participant": FieldSpec(_object(_PARTICIPANT), doc="the new participant"),
    },
    EntryType.PARTICIPANT_UPDATE: {
        "participant": FieldSpec(_participant_id, doc="participant id"),
        "name": FieldSpec(_text(MAX_TEXT), required=False),
        "roles": FieldSpec(_roles, required=False),
    },
    EntryType.KEY_ADD: {
        "participant": FieldSpec(_participant_id),
        "public_key": FieldSpec(_public_key),
    },
    EntryType.KEY_REVOKE: {
        "participant": FieldSpec(_participant_id),
        "key_id": FieldSpec(_key_id),
        "reason": FieldSpec(_text(MAX_REASON)),
    },
    EntryType.ORIGIN: {
        "lots": FieldSpec(_LOTS, doc="new lots, held by the author"),
        "site": FieldSpec(_text(MAX_TEXT), doc="where they were produced"),
        "origin": FieldSpec(
            _object(
                {
                    "country": FieldSpec(_COUNTRY),
                    "region": FieldSpec(_text(MAX_TEXT), required=False),
                    "place": FieldSpec(_text(MAX_TEXT), required=False),
                    "geo": FieldSpec(
                        _object({"lat": FieldSpec(_coordinate(90)), "lon": FieldSpec(_coordinate(180))}),
                        required=False,
                    ),
                    "produced_on": FieldSpec(_date, required=False),
                }
            ),
            doc="country, region, place, coordinates, production date",
        ),
        "claims": FieldSpec(_CLAIMS, required=False, doc="the producer's own claims"),
    },
    EntryType.HANDOFF: {
        "from": FieldSpec(_participant_id, doc="sender, the current custodian"),
        "to": FieldSpec(_participant_id, doc="recipient"),
        "lots": FieldSpec(_LOT_IDS),
        "dispatched_at": FieldSpec(_time),
        "location": FieldSpec(_text(MAX_TEXT), required=False),
        "contract": FieldSpec(_lot_id, required=False, doc="contract id"),
        "shipment": FieldSpec(_text(MAX_TEXT), required=False, doc="shipment reference"),
    },
    EntryType.RECEIPT: {
        "handoff": FieldSpec(_entry_id, doc="entry id of the handoff"),
        "status": FieldSpec(_one_of("accepted", "rejected")),
        "received_at": FieldSpec(_time),
        "location": FieldSpec(_text(MAX_TEXT), required=False),
    },
    EntryType.TRANSFORM: {
        "inputs": FieldSpec(_LOT_IDS, doc="lots consumed"),
        "outputs": FieldSpec(_LOTS, doc="lots made"),
        "site": FieldSpec(_text(MAX_TEXT)),
        "process": FieldSpec(_text(MAX_TEXT), required=False),
    },
    EntryType.ATTESTATION: {
        "subject": FieldSpec(_text(MAX_TEXT), doc="an entry id or a lot id"),
        "claims": FieldSpec(_CLAIMS),
        "certificate": FieldSpec(
            _object(
                {
                    "scheme": FieldSpec(_text(MAX_TEXT)),
                    "number": FieldSpec(_text(MAX_TEXT)),
                    "valid_until": FieldSpec(_date),
                }
            ),
            required=False,
        ),
    },
    EntryType.CONTRACT: {
        "contract": FieldSpec(_lot_id, doc="contract id"),
        "buyer": FieldSpec(_participant_id),
        "seller": FieldSpec(_participant_id),
        "terms": FieldSpec(
            _object(
                {
                    "product": FieldSpec(_text(MAX_TEXT)),
                    "quantity": FieldSpec(_decimal),
                    "unit": FieldSpec(_UNIT),
                    "price": FieldSpec(_decimal),
                    "currency": FieldSpec(_CURRENCY),
                    "deliver_by": FieldSpec(_date),
                    "requirements": FieldSpec(
                        _object(
                            {
                                "countries": FieldSpec(_list_of(_COUNTRY, min_items=1, max_items=64), required=False),
                                "claims": FieldSpec(_CLAIMS, required=False),
                            }
                        ),
                        required=False,
                    ),
                }
            )
        ),
    },
    EntryType.CONTRACT_CLOSE: {
        "contract": FieldSpec(_lot_id),
        "status": FieldSpec(_one_of("fulfilled", "terminated")),
        "reason": FieldSpec(_text(MAX_REASON), required=False),
    },
    EntryType.PAYMENT: {
        "payer": FieldSpec(_participant_id),
        "payee": FieldSpec(_participant_id),
        "amount": FieldSpec(_decimal),
        "currency": FieldSpec(_CURRENCY),
        "contract": FieldSpec(_lot_id, required=False),
        "invoice": FieldSpec(_text(MAX_TEXT), required=False),
        "paid_at": FieldSpec(_time),
    },
    EntryType.PAYMENT_CONFIRM: {
        "payment": FieldSpec(_entry_id, doc="entry id of the payment"),
    },
}


def _check_fields(obj: Mapping[str, Any], fields: Mapping[str, FieldSpec], *, prefix: str) -> None:
    for name in obj:
        if name not in fields:
            raise UnknownField(
                f"unknown field {prefix}{name}; allowed: {', '.join(sorted(fields))}",
                field=f"{prefix}{name}",
            )
    for name, spec in fields.items():
        if name in obj:
            spec.check(obj[name], f"{prefix}{name}")
        elif spec.required:
            raise MissingField(f"missing field {prefix}{name}", field=f"{prefix}{name}")


def validate_payload(payload: Any, *, text: bytes | None = None) -> EntryType:
    """Check a payload's shape for its type. Returns the type.

    Raises MalformedInput leaves: InvalidField, MissingField, UnknownField, UnknownType,
    PersonalData. Does not check ``ledger`` against the origin (the envelope parser does).
    ``text``: the payload's canonical JSON, if the caller has it; it lets the personal-data
    screen run once over the whole text instead of value by value.
    """
    if not isinstance(payload, dict):
        raise InvalidField("payload must be an object", field="payload")
    if "type" not in payload:
        raise MissingField("missing field payload.type", field="payload.type")
    kind = payload.get("type")
    try:
        entry_type = EntryType(kind if isinstance(kind, str) else "")
    except ValueError:
        raise UnknownType(
            f"unknown entry type {kind!r}; known: {', '.join(t.value for t in EntryType)}",
            type=str(kind),
        ) from None
    fields = {**COMMON_FIELDS, **TYPE_FIELDS[entry_type]}
    _check_fields(payload, fields, prefix="payload.")
    if text is None or _may_hold_personal_data(text):
        screen_personal_data(payload)
    return entry_type


def _may_hold_personal_data(text: bytes) -> bool:
    """False only if no string of the payload can match: with no escape sequence in the
    canonical text every key and value appears in it verbatim, between quotes that the
    patterns' look-arounds treat as a string's ends, so a match in any string is a match here."""
    decoded = text.decode("utf-8")
    if "\\" in decoded:
        return True
    # Every e-mail match holds an "@" and every phone match a "+": C-speed tests first.
    return ("@" in decoded and _EMAIL.search(decoded) is not None) or (
        "+" in decoded and _PHONE.search(decoded) is not None
    )


# An address or a phone number in an entry could never be erased (PROTOCOL §9). The patterns
# are deliberately narrow so that lot ids, EPC URNs and GS1 keys never match: e-mail needs
# `local@domain.tld`, a phone number needs a leading `+` and 8-15 digits (E.164).
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])\+\d(?:[ .()-]?\d){7,14}(?!\w)")


def screen_personal_data(value: Any, path: str = "payload") -> None:
    """Refuse e-mail addresses and phone numbers anywhere in ``value``. Raises PersonalData."""
    if isinstance(value, str):
        kind = "an e-mail address" if _EMAIL.search(value) else (
            "a phone number" if _PHONE.search(value) else None
        )
        if kind:
            raise PersonalData(
                f"{path} looks like it contains {kind}; the ledger is permanent, so personal "
                "data must stay off it (keep contacts in your own systems)",
                field=path,
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            screen_personal_data(k, f"{path} key")
            screen_personal_data(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            screen_personal_data(v, f"{path}[{i}]")
