"""Text encodings of the wire contract (PROTOCOL.md §1): hashes, base64, times and ids.

- Hashes are lowercase hex of SHA-256.
- Keys and signatures are standard base64 with padding (RFC 4648 §4), decoded strictly so that
  every byte string has exactly one accepted text form.
- Times are RFC 3339 (§5.6) timestamps in UTC with ``Z`` and at most microsecond precision.
- Ids follow the patterns of PROTOCOL.md §1. The ``*_RE`` patterns keep the protocol's text so
  that schemas can publish them verbatim; match them only with ``fullmatch`` (``$`` alone also
  matches before a trailing newline), or better, call the ``check_*`` functions.

Every refusal is :class:`~ledger.errors.InvalidField` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timezone

from ledger.errors import InvalidField

__all__ = [
    "KEY_ID_RE",
    "LOT_ID_RE",
    "NONCE_RE",
    "PARTICIPANT_ID_RE",
    "b64",
    "check_key_id",
    "check_lot_id",
    "check_nonce",
    "check_participant_id",
    "format_time",
    "hex_of",
    "parse_time",
    "sha256",
    "unb64",
    "unhex32",
]

PARTICIPANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._:-]{1,127}$")
# Lot ids and contract ids share one pattern (PROTOCOL.md §1).
LOT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")

_HEX32_RE = re.compile(r"[0-9a-f]{64}")
# The shape of canonical padded base64; canonical trailing bits are checked after decoding.
_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Character classes are spelled out because \d would also accept non-ASCII digits.
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?Z"
)


def sha256(data: bytes) -> bytes:
    """The raw 32-byte SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def hex_of(data: bytes) -> str:
    """``data`` as lowercase hex."""
    return data.hex()


def unhex32(value: object, *, field: str) -> bytes:
    """Decode 64 lowercase hex digits (a SHA-256 value) to 32 bytes. Raises InvalidField."""
    if not isinstance(value, str) or _HEX32_RE.fullmatch(value) is None:
        raise InvalidField(
            f"{field} must be a string of exactly 64 lowercase hex digits (a SHA-256 value)",
            field=field,
        )
    return bytes.fromhex(value)


def b64(data: bytes) -> str:
    """``data`` as standard base64 with padding (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, *, field: str, length: int | None = None) -> bytes:
    """Decode standard padded base64 (RFC 4648 §4), accepting only the canonical form.

    Refuses the URL-safe alphabet, missing padding, whitespace and non-zero trailing bits, so
    that each byte string has exactly one accepted encoding. When ``length`` is given the
    decoded length must equal it. Raises InvalidField.
    """
    if not isinstance(value, str):
        raise InvalidField(f"{field} must be a base64 string", field=field)
    if _B64_RE.fullmatch(value) is None:
        raise InvalidField(
            f"{field} must be standard base64 with padding (RFC 4648 §4: A-Z a-z 0-9 + /, "
            "'=' padding to a multiple of 4 characters, no whitespace)",
            field=field,
        )
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise InvalidField(f"{field} is not valid base64: {exc}", field=field) from exc
    # RFC 4648 §3.5 lets decoders ignore non-zero pad bits; we refuse them so that no two
    # strings decode to the same key or signature.
    if base64.b64encode(decoded).decode("ascii") != value:
        raise InvalidField(
            f"{field} is not canonical base64: the unused bits before the padding must be zero",
            field=field,
        )
    if length is not None and len(decoded) != length:
        raise InvalidField(
            f"{field} must decode to {length} bytes, not {len(decoded)}",
            field=field,
            expected_length=length,
            length=len(decoded),
        )
    return decoded


def format_time(dt: datetime) -> str:
    """``dt`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fraction digits).

    Requires a timezone-aware ``dt``; a naive one is a programming error and raises ValueError.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("format_time requires a timezone-aware datetime")
    u = dt.astimezone(timezone.utc)
    # Formatted by hand because strftime's %Y does not pad years below 1000 on every platform.
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T"
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"
    )


def parse_time(value: object, *, field: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp: ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z``.

    Only ``Z`` is accepted as the offset (PROTOCOL.md §1), in upper case like ``T``; there are
    no leap seconds and the date must exist. Returns an aware UTC datetime. Raises InvalidField.
    """
    expected = "YYYY-MM-DDTHH:MM:SS[.ffffff]Z in UTC (RFC 3339, at most 6 fraction digits)"
    if not isinstance(value, str):
        raise InvalidField(f"{field} must be a string {expected}", field=field)
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise InvalidField(f"{field} must be {expected}", field=field)
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "").ljust(6, "0")),
            tzinfo=timezone.utc,
        )
    except ValueError as exc:
        raise InvalidField(f"{field} is not a real UTC date and time: {exc}", field=field) from exc


def _check(value: object, pattern: re.Pattern[str], what: str, field: str) -> str:
    if isinstance(value, str) and pattern.fullmatch(value) is not None:
        return value
    raise InvalidField(f"{field} must be {what}", field=field)


def check_participant_id(value: object, *, field: str) -> str:
    """Return ``value`` if it is a participant id (PROTOCOL.md §1). Raises InvalidField."""
    return _check(
        value,
        PARTICIPANT_ID_RE,
        "a participant id: 2-128 characters of a-z 0-9 . _ : - starting with a-z or 0-9 "
        "(lower case only)",
        field,
    )


def check_lot_id(value: object, *, field: str) -> str:
    """Return ``value`` if it is a lot or contract id (PROTOCOL.md §1). Raises InvalidField."""
    return _check(
        value,
        LOT_ID_RE,
        "an id of 1-200 characters of A-Z a-z 0-9 . _ : / - starting with a letter or digit",
        field,
    )


def check_nonce(value: object, *, field: str) -> str:
    """Return ``value`` if it is a nonce (PROTOCOL.md §3). Raises InvalidField."""
    return _check(
        value, NONCE_RE, "a nonce of 16-64 URL-safe characters (A-Z a-z 0-9 _ -)", field
    )


def check_key_id(value: object, *, field: str) -> str:
    """Return ``value`` if it is a key id (PROTOCOL.md §2). Raises InvalidField."""
    return _check(
        value,
        KEY_ID_RE,
        "a key id: 16 lowercase hex digits (the start of the key's SHA-256)",
        field,
    )
