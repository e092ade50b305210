"""The words both directions of the EPCIS mapping share: GS1 EPCIS 2.0 / CBV 2.0 names,
Filiera's extension namespace, identifiers, units, quantities and times.

Identifiers (EPCIS 2.0 §6.3, CBV 2.0 §8, GS1 Digital Link 1.2):

* a lot whose id is already a URI (an EPC URN such as ``urn:epc:class:lgtin:…`` or a GS1 Digital
  Link) is named by that URI; a lot whose product is a GTIN by the Digital Link
  ``https://id.gs1.org/01/<gtin-14>/10/<lot>``; any other lot, and every participant,
  location, contract and shipment, by a URI under the ledger's origin
  (``https://<origin>/lots/<lot>``), with the value percent-encoded as one path segment.
* the other way, a URI under the exporting ledger's origin (named by the document's
  ``filiera:ledger``) gives back the value; any other URI *is* the id, if it fits the id's
  pattern (PROTOCOL §1: EPC URNs are valid lot and participant ids).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from urllib.parse import quote, unquote

from jsonschema import Draft7Validator

from ..encoding import LOT_ID_RE, format_time

__all__ = [
    "NS",
    "PREFIX",
    "EPCIS_CONTEXT",
    "MDA_DESCRIPTION",
    "MDA_COUNTRY_OF_ORIGIN",
    "EPC_CLASS_VOCABULARY",
    "Kind",
    "LedgerUris",
    "is_uri",
    "lot_uri",
    "gtin14",
    "gtin_of_identifier",
    "is_pattern",
    "fits_lot_id",
    "COUNT_UNIT",
    "uom_for",
    "unit_for",
    "quantity_number",
    "quantity_text",
    "cbv_name",
    "event_time",
    "utc_time",
]

# Filiera's extension terms (EPCIS 2.0 §9.5 user extensions): a namespace IRI, not a web page.
NS = "https://filiera.example/ns/epcis/v1#"
PREFIX = "filiera"
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

# CBV 2.0 §10 master data and ILMD attributes.
MDA_DESCRIPTION = "urn:epcglobal:cbv:mda#descriptionShort"
MDA_COUNTRY_OF_ORIGIN = "cbvmda:countryOfOrigin"
EPC_CLASS_VOCABULARY = "urn:epcglobal:epcis:vtype:EPCClass"


class Kind(StrEnum):
    """What a URI under a ledger's origin names: the first path segment."""

    LOT = "lots"
    PARTICIPANT = "participants"
    LOCATION = "locations"
    CONTRACT = "contracts"
    SHIPMENT = "shipments"


# An origin that is a host name, optionally with a path, reads as a URI authority; any other
# origin (a C2SP key name may be almost anything) is percent-encoded under a fixed base.
_HOST_ORIGIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?:/[A-Za-z0-9._~-]+)*")
_OTHER_ORIGINS = "https://filiera.example/ledgers/"


def is_uri(value: str) -> bool:
    """Whether a ledger value is already a global identifier (an EPC URN, a Digital Link) that
    EPCIS can carry as it is."""
    return value.startswith(("urn:", "http://", "https://")) and Draft7Validator.FORMAT_CHECKER.conforms(value, "uri")


class LedgerUris:
    """URIs under one ledger's origin, and back."""

    __slots__ = ("origin", "base")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        if _HOST_ORIGIN.fullmatch(origin):
            self.base = f"https://{origin}/"
        else:
            self.base = _OTHER_ORIGINS + quote(origin, safe="") + "/"

    def uri(self, kind: Kind, value: str) -> str:
        """The URI naming ``value``: the value itself if it is one, else one under the origin."""
        if is_uri(value):
            return value
        return f"{self.base}{kind.value}/{quote(value, safe='')}"

    def value(self, kind: Kind, uri: str) -> str:
        """What ``uri`` names: the value under this origin it was made from, or the URI itself."""
        prefix = f"{self.base}{kind.value}/"
        segment = uri[len(prefix) :] if uri.startswith(prefix) else ""
        if not segment or "/" in segment:
            return uri
        return unquote(segment)


_GTIN = re.compile(r"[0-9]{8}|[0-9]{12,14}")


def _check_digit(body: str) -> int:
    # GS1 General Specifications §7.9.1: weights 3 and 1 alternate from the rightmost digit.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gtin14(value: str) -> str | None:
    """``value`` as a GTIN-14 if it is a GTIN-8, -12, -13 or -14 with a valid check digit."""
    if _GTIN.fullmatch(value) is None:
        return None
    padded = value.rjust(14, "0")
    return padded if _check_digit(padded[:-1]) == int(padded[-1]) else None


def lot_uri(uris: LedgerUris, lot: str, product: str | None) -> str:
    """The EPC class URI that names ``lot`` (see the module docstring)."""
    if is_uri(lot):
        return lot
    gtin = gtin14(product) if product else None
    if gtin is not None:
        return f"https://id.gs1.org/01/{gtin}/10/{quote(lot, safe='')}"
    return uris.uri(Kind.LOT, lot)


_EPC_GTIN = re.compile(r"urn:epc:(?:class:lgtin|id:sgtin|idpat:sgtin):([0-9]+)\.([0-9]+)\.[^.]+")
_DL_GTIN = re.compile(r"https?://[^/]+(?:/[^/]+)*?/01/([0-9]{14})(?:/.*)?")


def gtin_of_identifier(uri: str) -> str | None:
    """The GTIN-14 inside an LGTIN, SGTIN or SGTIN pattern URN (TDS 2.1 §6.3.1, §8) or a
    Digital Link, if any."""
    m = _EPC_GTIN.fullmatch(uri)
    if m is not None:
        company, item = m.groups()
        if len(company) + len(item) != 13 or not item:
            return None
        # The item reference's first digit is the GTIN's indicator digit.
        body = item[0] + company + item[1:]
        return body + str(_check_digit(body))
    d = _DL_GTIN.fullmatch(uri)
    if d is not None:
        return gtin14(d.group(1))
    return None


def is_pattern(uri: str) -> bool:
    """An EPC pattern (``urn:epc:idpat:…``) names a class of objects, never one lot."""
    return uri.startswith("urn:epc:idpat:") or "*" in uri


# Filiera units with a UN/CEFACT Recommendation 20 code (the EPCIS ``uom``). A unit without one
# is a count (bottles, crates): EPCIS then has no uom, and the unit travels in master data.
_UOM = {"kg": "KGM", "g": "GRM", "t": "TNE", "l": "LTR", "ml": "MLT", "m3": "MTQ", "hl": "HLT"}
_UNIT = {code: unit for unit, code in _UOM.items()}
COUNT_UNIT = "each"


def uom_for(unit: str) -> str | None:
    return _UOM.get(unit)


def unit_for(uom: str | None) -> str:
    """The Filiera unit of an EPCIS uom; no uom is a count of instances."""
    if uom is None:
        return COUNT_UNIT
    return _UNIT.get(uom, uom)


def quantity_number(text: str) -> int | float:
    """A decimal string as the JSON number EPCIS wants (EPCIS 2.0 quantities are numbers)."""
    d = Decimal(text)
    return int(d) if d == d.to_integral_value() else float(d)


def quantity_text(number: object) -> str | None:
    """A JSON number as a positive decimal string, or None if it is not one."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    try:
        # repr gives the shortest text that reads back as the same double.
        d = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    except InvalidOperation:
        return None
    if not d.is_finite() or d <= 0:
        return None
    text = format(d.normalize(), "f")
    return text


# CBV 2.0 §7: a bare name such as ``shipping`` may also be written as its URN (CBV 1.x) or its
# web URI (``https://ref.gs1.org/cbv/BizStep-shipping``); both mean the bare name.
_CBV_FORMS = {
    "bizStep": ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-", "https://gs1.org/voc/BizStep-"),
    "disposition": ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-", "https://gs1.org/voc/Disp-"),
    "bizTransaction": ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-", "https://gs1.org/voc/BTT-"),
    "sourceDest": ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-", "https://gs1.org/voc/SDT-"),
}


def cbv_name(value: object, vocabulary: str) -> str | None:
    """The bare CBV name of ``value`` in ``vocabulary``, or the value itself if it is another
    URI (a private vocabulary), or None if it is not a string."""
    if not isinstance(value, str):
        return None
    for prefix in _CBV_FORMS[vocabulary]:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


_EPCIS_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def event_time(value: str) -> datetime | None:
    """An EPCIS ``eventTime`` (RFC 3339 with any offset) as an aware datetime, or None.

    Fractions beyond microseconds are cut: the ledger keeps times to the microsecond.
    """
    m = _EPCIS_TIME.fullmatch(value)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    try:
        offset = timezone.utc
        if not z:
            delta = int(oh) * 60 + int(om)
            offset = timezone(timedelta(minutes=delta if sign == "+" else -delta))
        return datetime(
            int(y), int(mo), int(d), int(h), int(mi), int(s),
            int((frac or "")[:6].ljust(6, "0")), tzinfo=offset,
        )
    except ValueError:
        return None


def utc_time(value: str) -> str | None:
    """An EPCIS time as the ledger's UTC form (PROTOCOL §1), or None if it is not a time."""
    dt = event_time(value)
    return format_time(dt) if dt is not None else None


def fits_lot_id(value: str) -> bool:
    return LOT_ID_RE.fullmatch(value) is not None
