"""GS1 keys on a product label (issue #5): GTIN check digits and GS1 Digital Link paths.

A GTIN (GS1 General Specifications §3.3.2, AI 01) is 8, 12, 13 or 14 digits, the last a
check digit computed with the mod-10 algorithm of §7.9.1; GS1 Digital Link (URI syntax 1.4,
§4) writes it as 14 digits (shorter ones padded with leading zeros) in ``/01/{gtin}``, and a
batch or lot number (AI 10: at most 20 characters of GS1 character set 82) in ``/10/{lot}``.

Filiera's lot payload has one ``product`` field, "product name or GTIN" (PROTOCOL §4): a lot's
product *carries* a GTIN when that field is a GTIN with a valid check digit, or is a name that
ends with ``GTIN`` and one, e.g. ``extra virgin olive oil 750 ml, GTIN 08001234567893``.
Pure: no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = [
    "AI10_MAX",
    "check_digit",
    "is_gtin",
    "normalise_gtin",
    "gtin_of_product",
    "digital_link_path",
]

AI10_MAX = 20
# ASCII digits only: ``\d`` would accept any Unicode digit ("٠٩٥...").
_GTIN = re.compile(r"[0-9]{8}|[0-9]{12,14}")
_NAMED = re.compile(r"(?:^|[\s,;(])GTIN[\s:#-]*([0-9]{8}|[0-9]{12,14})\)?\s*$", re.IGNORECASE)
# GS1 character set 82 (General Specifications Figure 7.11-1), which AI 10 values use.
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}", re.ASCII)


def check_digit(body: str) -> int:
    """The mod-10 check digit of ``body``, the GTIN's digits before its check digit: weights
    3, 1, 3, ... from the right. Requires ``body`` to be ASCII digits."""
    if not body.isascii() or not body.isdigit():
        raise ValueError("a GTIN body is ASCII digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def is_gtin(value: str) -> bool:
    """True if ``value`` is a GTIN-8, -12, -13 or -14 whose check digit is right."""
    if _GTIN.fullmatch(value) is None:
        return False
    return check_digit(value[:-1]) == int(value[-1])


def normalise_gtin(value: str) -> str:
    """The 14-digit form of a GTIN (leading zeros added), as GS1 Digital Link writes it.
    Raises ValueError if ``value`` is not a GTIN with a valid check digit."""
    if not is_gtin(value):
        raise ValueError(f"{value!r} is not a GTIN with a valid check digit")
    return value.rjust(14, "0")


def gtin_of_product(product: str | None) -> str | None:
    """The GTIN (14 digits) a lot's ``product`` carries, or None if it carries none (a name
    alone, or digits whose check digit is wrong)."""
    if product is None:
        return None
    text = product.strip()
    if is_gtin(text):
        return normalise_gtin(text)
    match = _NAMED.search(text)
    if match is not None and is_gtin(match.group(1)):
        return normalise_gtin(match.group(1))
    return None


def digital_link_path(gtin: str, lot: str) -> str | None:
    """``/01/{gtin14}/10/{lot}`` for a GTIN and a lot id, the lot percent-encoded; None if the
    lot cannot be a GS1 batch/lot number (longer than 20 characters, or outside character
    set 82), in which case a label must carry Filiera's own ``/p/{lot}`` URL instead.
    Raises ValueError for a GTIN with a wrong check digit."""
    if _CSET82.fullmatch(lot) is None:
        return None
    return f"/01/{normalise_gtin(gtin)}/10/{quote(lot, safe='')}"
