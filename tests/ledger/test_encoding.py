"""Hex, base64, RFC 3339 times and id patterns (ledger.encoding, PROTOCOL.md §1)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidField
from ledger.encoding import (
    KEY_ID_RE,
    LOT_ID_RE,
    NONCE_RE,
    PARTICIPANT_ID_RE,
    b64,
    check_key_id,
    check_lot_id,
    check_nonce,
    check_participant_id,
    format_time,
    hex_of,
    parse_time,
    sha256,
    unb64,
    unhex32,
)

UTC = timezone.utc


def _refused(call: Callable[[], object], field: str) -> InvalidField:
    with pytest.raises(InvalidField) as info:
        call()
    assert info.value.code == "invalid_field"
    assert info.value.facts["field"] == field
    return info.value


# --- hashes and hex ----------------------------------------------------------------------


def test_sha256_and_hex() -> None:
    digest = sha256(b"abc")
    assert digest == hashlib.sha256(b"abc").digest()
    assert hex_of(digest) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert unhex32(hex_of(digest), field="id") == digest


HEX_REFUSED = [
    ("uppercase", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"),
    ("63-digits", "a" * 63),
    ("65-digits", "a" * 65),
    ("non-hex", "g" * 64),
    ("trailing-newline", "a" * 64 + "\n"),
    ("spaces", " " + "a" * 63),
    ("bytes", b"a" * 64),
    ("none", None),
    ("empty", ""),
]


@pytest.mark.parametrize(("name", "value"), HEX_REFUSED, ids=[h[0] for h in HEX_REFUSED])
def test_unhex32_refuses(name: str, value: object) -> None:
    _refused(lambda: unhex32(value, field="entry"), "entry")


# --- base64 ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"f", b"fo", b"foo", b"foob", bytes(range(256))])
def test_b64_is_standard_padded(data: bytes) -> None:
    assert b64(data) == base64.b64encode(data).decode("ascii")
    assert unb64(b64(data), field="key") == data


B64_REFUSED = [
    ("missing-padding", "Zm8"),
    ("missing-double-padding", "Zg"),
    ("extra-padding", "Zm8=="),
    ("padding-only", "===="),
    ("urlsafe-minus", "-_8="),
    ("urlsafe-underscore", "ab_c"),
    ("inner-space", "Zm9v YmFy"),
    ("trailing-newline", "Zm9v\n"),
    ("leading-space", " Zm9v"),
    ("non-canonical-one-byte", "Zh=="),  # 'h' leaves non-zero bits after the byte
    ("non-canonical-two-bytes", "Zm9="),  # "Zm8=" is the canonical form
    ("non-ascii", "Zm9é"),
    ("bytes", b"Zm9v"),
    ("none", None),
]


@pytest.mark.parametrize(("name", "value"), B64_REFUSED, ids=[b[0] for b in B64_REFUSED])
def test_unb64_refuses(name: str, value: object) -> None:
    _refused(lambda: unb64(value, field="sig"), "sig")


def test_unb64_wrong_length() -> None:
    key = b64(bytes(31))
    error = _refused(lambda: unb64(key, field="public_key", length=32), "public_key")
    assert error.facts == {"field": "public_key", "expected_length": 32, "length": 31}
    assert unb64(b64(bytes(32)), field="public_key", length=32) == bytes(32)


@given(st.binary(max_size=100))
def test_b64_round_trip(data: bytes) -> None:
    text = b64(data)
    assert unb64(text, field="x", length=len(data)) == data


# --- times -------------------------------------------------------------------------------

TIMES_ACCEPTED = [
    ("whole-seconds", "2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("one-digit", "2024-05-01T10:00:00.5Z", datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ("six-digits", "2024-05-01T10:00:00.000001Z", datetime(2024, 5, 1, 10, 0, 0, 1, tzinfo=UTC)),
    ("leap-day", "2024-02-29T23:59:59Z", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
    ("year-1", "0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("year-9999", "9999-12-31T23:59:59.999999Z", datetime.max.replace(tzinfo=UTC)),
]


@pytest.mark.parametrize(
    ("name", "text", "expected"), TIMES_ACCEPTED, ids=[t[0] for t in TIMES_ACCEPTED]
)
def test_parse_time_accepts(name: str, text: str, expected: datetime) -> None:
    parsed = parse_time(text, field="time")
    assert parsed == expected
    assert parsed.tzinfo is UTC


TIMES_REFUSED = [
    ("offset-zero", "2024-05-01T10:00:00+00:00"),
    ("offset-plus-two", "2024-05-01T12:00:00+02:00"),
    ("offset-minus-zero", "2024-05-01T10:00:00-00:00"),
    ("lowercase-z", "2024-05-01T10:00:00z"),
    ("lowercase-t", "2024-05-01t10:00:00Z"),
    ("space-separator", "2024-05-01 10:00:00Z"),
    ("no-zone", "2024-05-01T10:00:00"),
    ("seven-fraction-digits", "2024-05-01T10:00:00.0000001Z"),
    ("empty-fraction", "2024-05-01T10:00:00.Z"),
    ("comma-fraction", "2024-05-01T10:00:00,5Z"),
    ("feb-30", "2024-02-30T10:00:00Z"),
    ("feb-29-non-leap", "2023-02-29T10:00:00Z"),
    ("month-13", "2024-13-01T10:00:00Z"),
    ("day-0", "2024-05-00T10:00:00Z"),
    ("hour-24", "2024-05-01T24:00:00Z"),
    ("minute-60", "2024-05-01T10:60:00Z"),
    ("leap-second", "2016-12-31T23:59:60Z"),
    ("year-0", "0000-01-01T00:00:00Z"),
    ("no-seconds", "2024-05-01T10:00Z"),
    ("date-only", "2024-05-01"),
    ("short-year", "24-05-01T10:00:00Z"),
    ("arabic-indic-digits", "٢٠٢٤-05-01T10:00:00Z"),
    ("trailing-newline", "2024-05-01T10:00:00Z\n"),
    ("leading-space", " 2024-05-01T10:00:00Z"),
    ("not-a-string", 1714557600),
    ("datetime-object", datetime(2024, 5, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("name", "value"), TIMES_REFUSED, ids=[t[0] for t in TIMES_REFUSED])
def test_parse_time_refuses(name: str, value: object) -> None:
    _refused(lambda: parse_time(value, field="dispatched_at"), "dispatched_at")


def test_format_time() -> None:
    assert format_time(datetime(2024, 5, 1, 10, tzinfo=UTC)) == "2024-05-01T10:00:00.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert (
        format_time(datetime(2024, 5, 1, 0, 30, 0, 42, tzinfo=plus_two))
        == "2024-04-30T22:30:00.000042Z"
    )
    assert format_time(datetime(5, 1, 2, tzinfo=UTC)) == "0005-01-02T00:00:00.000000Z"
    with pytest.raises(ValueError):
        format_time(datetime(2024, 5, 1))


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_time_round_trip(moment: datetime) -> None:
    text = format_time(moment)
    parsed = parse_time(text, field="time")
    assert parsed == moment
    assert format_time(parsed) == text
    assert len(text) == 27


# --- ids ---------------------------------------------------------------------------------

Check = Callable[..., str]

IDS_ACCEPTED: list[tuple[str, Check, str]] = [
    ("participant-short", check_participant_id, "ab"),
    ("participant-punctuation", check_participant_id, "acme.coop_1:eu-west"),
    ("participant-128", check_participant_id, "a" * 128),
    ("lot-one-char", check_lot_id, "L"),
    ("lot-epc-urn", check_lot_id, "urn:epc:id:sgtin:0614141.107346.2017"),
    ("lot-slash", check_lot_id, "LOT/2024/0001"),
    ("lot-200", check_lot_id, "A" * 200),
    ("nonce-16", check_nonce, "abcdefghijklmn-_"),
    ("nonce-64", check_nonce, "A" * 64),
    ("key-id", check_key_id, "0123456789abcdef"),
]


@pytest.mark.parametrize(
    ("name", "check", "value"), IDS_ACCEPTED, ids=[i[0] for i in IDS_ACCEPTED]
)
def test_ids_accepted(name: str, check: Check, value: str) -> None:
    assert check(value, field="id") == value


IDS_REFUSED: list[tuple[str, Check, object]] = [
    ("participant-trailing-newline", check_participant_id, "acme\n"),
    ("participant-uppercase", check_participant_id, "Acme"),
    ("participant-one-char", check_participant_id, "a"),
    ("participant-129", check_participant_id, "a" * 129),
    ("participant-leading-dot", check_participant_id, ".acme"),
    ("participant-slash", check_participant_id, "acme/x"),
    ("participant-non-ascii", check_participant_id, "acmé"),
    ("participant-not-str", check_participant_id, 42),
    ("lot-empty", check_lot_id, ""),
    ("lot-trailing-newline", check_lot_id, "LOT-1\n"),
    ("lot-201", check_lot_id, "A" * 201),
    ("lot-leading-dash", check_lot_id, "-LOT"),
    ("lot-space", check_lot_id, "LOT 1"),
    ("nonce-15", check_nonce, "A" * 15),
    ("nonce-65", check_nonce, "A" * 65),
    ("nonce-plus", check_nonce, "abcdefghijklmno+"),
    ("nonce-trailing-newline", check_nonce, "A" * 16 + "\n"),
    ("key-id-uppercase", check_key_id, "0123456789ABCDEF"),
    ("key-id-15", check_key_id, "0123456789abcde"),
    ("key-id-17", check_key_id, "0123456789abcdef0"),
    ("key-id-trailing-newline", check_key_id, "0123456789abcdef\n"),
    ("key-id-none", check_key_id, None),
]


@pytest.mark.parametrize(("name", "check", "value"), IDS_REFUSED, ids=[i[0] for i in IDS_REFUSED])
def test_ids_refused(name: str, check: Check, value: object) -> None:
    error = _refused(lambda: check(value, field="to"), "to")
    # The detail names the field and spells out what is expected.
    assert error.detail.startswith("to must be ")


def test_patterns_keep_protocol_text() -> None:
    assert PARTICIPANT_ID_RE.pattern == r"^[a-z0-9][a-z0-9._:-]{1,127}$"
    assert LOT_ID_RE.pattern == r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"
    assert NONCE_RE.pattern == r"^[A-Za-z0-9_-]{16,64}$"
    assert KEY_ID_RE.pattern == r"^[0-9a-f]{16}$"


def test_table_sizes() -> None:
    assert (len(HEX_REFUSED), len(B64_REFUSED)) == (9, 14)
    assert (len(TIMES_ACCEPTED), len(TIMES_REFUSED)) == (6, 26)
    assert (len(IDS_ACCEPTED), len(IDS_REFUSED)) == (10, 22)
