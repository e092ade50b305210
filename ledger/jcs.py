"""Canonical JSON (RFC 8785, JCS) and strict I-JSON (RFC 7493) parsing.

Entry ids, leaf data and block hashes are hashes of :func:`canonicalize` output, so its bytes
are part of the wire contract (PROTOCOL.md §1). :func:`loads` is the only way request bodies and
stored documents become Python values: it refuses, rather than repairs, anything outside
I-JSON, so that every accepted document has exactly one meaning and one canonical form.

Both build on the stdlib ``json`` C code: the string escaper and the scanner. What they lack
(UTF-16 key order, ECMAScript number text, duplicate keys, number ranges, lone surrogates,
depth) is checked here without per-character Python loops.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Final, NoReturn

from ledger.errors import (
    DuplicateKey,
    InvalidField,
    InvalidNumber,
    InvalidString,
    MalformedJson,
    TooDeep,
)

__all__ = ["MAX_DEPTH", "canonicalize", "loads"]

MAX_DEPTH: Final = 32

# I-JSON (RFC 7493 §2.2): integers beyond this are not exact in every peer's doubles.
_MAX_SAFE_INT: Final = 2**53 - 1
# The longest decimal text of a safe integer, sign included; longer text is refused before
# int() so that a 4,300-digit literal costs nothing and never meets Python's digit limit.
_MAX_INT_TEXT: Final = len(str(-_MAX_SAFE_INT))

# ECMAScript writes numbers of magnitude 1e21 and above in exponent form (ECMA-262 §7.1.12.1).
_EXPONENT_FORM_MIN: Final = 1e21
_UNSAFE_WHOLE_FLOAT_MIN: Final = float(2**53)

_JSON_FIELD: Final = "<json>"


def _c_escaper() -> Callable[[str], str]:
    # With ensure_ascii=False the C escaper writes exactly the JCS escapes (RFC 8785 §3.2.2.2):
    # \" \\ \b \f \n \r \t, \u00xx in lower case for other controls, everything else raw.
    escaper = json.encoder.c_encode_basestring  # type: ignore[attr-defined]
    if escaper is None:
        raise ImportError("ledger.jcs needs the json C accelerator (_json)")
    return escaper  # type: ignore[no-any-return]


_quote: Final = _c_escaper()


# --- canonicalize ------------------------------------------------------------------------


def canonicalize(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``.

    Accepts dict (str keys), list, tuple, str, int, float, bool and None. Raises
    InvalidNumber (NaN, infinities, integers beyond ±(2**53 - 1)), InvalidString (lone
    surrogates), InvalidField (other types or non-str keys) and TooDeep (nesting beyond the
    interpreter's recursion limit, including cycles).
    """
    try:
        text = _encode(value)
    except RecursionError as exc:
        raise TooDeep("value is nested too deeply (or contains itself)") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # UTF-8 cannot carry surrogate code points, so encoding is the surrogate check.
        raise InvalidString(
            "a string or key contains a lone surrogate (not a Unicode scalar value)",
            position=exc.start,
        ) from exc


def _encode(value: object) -> str:
    kind = type(value)
    # Exact type checks keep the common path fast; mypy cannot narrow through `kind`.
    if kind is str:
        return _quote(value)  # type: ignore[arg-type]
    if kind is dict:
        return _encode_object(value)  # type: ignore[arg-type]
    if kind is int:
        return _encode_int(value)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return _encode_array(value)  # type: ignore[arg-type]
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is float:
        return _number_text(value)  # type: ignore[arg-type]
    return _encode_subclass(value)


def _encode_subclass(value: object) -> str:
    # Subclasses such as StrEnum or IntEnum members encode as their base value; their own
    # __str__ or __repr__ must not leak into the canonical form.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int):
        return _encode_int(int(value))
    if isinstance(value, float):
        return _number_text(float(value))
    if isinstance(value, dict):
        return _encode_object(dict(value))
    if isinstance(value, (list, tuple)):
        return _encode_array(value)
    raise InvalidField(
        f"JSON cannot represent a value of type {type(value).__name__}", field=_JSON_FIELD
    )


def _encode_array(items: list[Any] | tuple[Any, ...]) -> str:
    return "[" + ",".join([_encode(item) for item in items]) + "]"


def _encode_object(obj: dict[Any, Any]) -> str:
    try:
        # One C pass: join refuses any non-str key, and the result says whether all are ASCII.
        all_ascii = "".join(obj).isascii()
    except TypeError as exc:
        raise InvalidField("JSON object keys must be strings", field=_JSON_FIELD) from exc
    # RFC 8785 §3.2.3 orders keys by UTF-16 code units. For ASCII keys that is code point
    # order; above U+FFFF it is not (surrogates sort below U+E000-U+FFFF).
    keys = sorted(obj) if all_ascii else sorted(obj, key=_utf16_units)
    return "{" + ",".join([_quote(key) + ":" + _encode(obj[key]) for key in keys]) + "}"


def _utf16_units(key: str) -> bytes:
    # Big-endian bytes compare like the code units; surrogatepass lets a key with a lone
    # surrogate sort so that canonicalize can report it as InvalidString afterwards.
    return key.encode("utf-16-be", "surrogatepass")


def _encode_int(value: int) -> str:
    if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return int.__repr__(value)
    raise InvalidNumber(
        "integers must lie within ±(2**53 - 1) (I-JSON, RFC 7493 §2.2); send larger values "
        "as decimal strings",
        value=str(value) if value.bit_length() < 4000 else "(too long to show)",
    )


def _number_text(value: float) -> str:
    """ECMAScript Number::toString (ECMA-262 §7.1.12.1) as RFC 8785 §3.2.2.3 requires."""
    if not math.isfinite(value):
        raise InvalidNumber(
            "NaN and infinities are not JSON numbers (RFC 8785 §3.2.2.3)", value=repr(value)
        )
    if value == 0:
        # Covers -0.0 too: ECMAScript writes negative zero as "0".
        return "0"
    # repr gives the shortest digits that round-trip, which is the digit string ECMAScript
    # asks for; only the placement of the decimal point and the exponent differ.
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign = "-"
        text = text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # point = n in ECMA-262: the value is 0.d1d2...dk × 10**point.
    point = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    e = point - 1
    head = digits[0] + "." + digits[1:] if k > 1 else digits
    return sign + head + ("e+" if e >= 0 else "e-") + str(abs(e))


# --- loads -------------------------------------------------------------------------------

_UTF8_BOM: Final = b"\xef\xbb\xbf"
# Only a \u escape in D800-DFFF can put a surrogate into the parsed value: raw UTF-8 cannot
# encode one. A match may still be a valid pair, or an escaped backslash followed by "ud8..",
# so it only triggers the exact check.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# A string token (so brackets inside strings are skipped) or a bracket, which is captured.
# The string token is possessive and its closing quote optional: an unterminated string then
# consumes the rest instead of being retried from every later quote, which would make
# '"\\"\\"\\"...' quadratic.
_DEPTH_TOKEN: Final = re.compile(r'"(?:[^"\\]++|\\.)*+"?|([\[\]{}])', re.DOTALL)
_DEPTH_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1, "": 0}


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one strict I-JSON (RFC 7493) document.

    ``bytes`` must be UTF-8 without a byte order mark. Floats come back as ``float``
    (``1.0`` stays a float) and integers as ``int``. Raises MalformedJson (bad UTF-8, BOM,
    syntax, trailing data, empty), DuplicateKey, InvalidNumber (NaN, infinities, doubles that
    overflow, integers beyond ±(2**53 - 1), and doubles from 2**53 up to 1e21, whose canonical
    form would be such an integer), InvalidString (lone surrogates) and TooDeep (more than
    ``max_depth`` nested containers; a scalar is depth 0, ``[]`` depth 1).
    """
    text = _decode(data)
    _check_depth(text, max_depth)
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError as exc:
        # Only reachable when max_depth exceeds the interpreter's recursion limit.
        raise TooDeep(
            f"JSON is nested deeper than this parser allows (limit {max_depth})",
            max_depth=max_depth,
        ) from exc
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        _refuse_surrogates(value)
    return value


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise MalformedJson("JSON text must not start with a byte order mark (RFC 8259 §8.1)")
        if not data.isascii() and _SURROGATE.search(data) is not None:
            raise InvalidString("JSON text contains a lone surrogate code point")
        return data
    if data.startswith(_UTF8_BOM):
        raise MalformedJson("JSON text must not start with a byte order mark (RFC 8259 §8.1)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(
            f"JSON text is not valid UTF-8 (byte offset {exc.start}: {exc.reason})",
            offset=exc.start,
        ) from None


def _check_depth(text: str, max_depth: int) -> None:
    # Counting brackets is a C-speed upper bound on the depth, so typical small documents
    # skip the exact scan; the scan itself never recurses, so hostile depth cannot crash it.
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = max(
        accumulate(map(_DEPTH_STEP.__getitem__, _DEPTH_TOKEN.findall(text))), default=0
    )
    if depth > max_depth:
        raise TooDeep(
            f"JSON is nested {depth} containers deep; at most {max_depth} are allowed",
            depth=depth,
            max_depth=max_depth,
        )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(
                    f"object key {key!r} appears more than once (RFC 7493 §2.3)", key=key
                )
            seen.add(key)
    return obj


def _integer(text: str) -> int:
    if len(text) <= _MAX_INT_TEXT:
        value = int(text)
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
    raise InvalidNumber(
        "integers must lie within ±(2**53 - 1) (I-JSON, RFC 7493 §2.2); send larger values "
        "as decimal strings",
        value=text if len(text) <= 40 else text[:40] + "...",
    )


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidNumber(
            "number is too large for an IEEE 754 double (I-JSON, RFC 7493 §2.2)",
            value=text if len(text) <= 40 else text[:40] + "...",
        )
    # Doubles from 2**53 up to 1e21 are whole numbers that RFC 8785 writes as plain integer
    # literals ("1e20" -> "100000000000000000000"), which the integer rule above refuses.
    # Refusing them here keeps every accepted document's canonical form parseable again, so
    # stored leaf data always re-parses during verification.
    if _UNSAFE_WHOLE_FLOAT_MIN <= abs(value) < _EXPONENT_FORM_MIN:
        raise InvalidNumber(
            "number is a whole number beyond ±(2**53 - 1), which I-JSON cannot carry exactly "
            "(RFC 7493 §2.2); send it as a decimal string",
            value=text if len(text) <= 40 else text[:40] + "...",
        )
    return value


def _constant(name: str) -> NoReturn:
    raise InvalidNumber(f"{name} is not a JSON number (RFC 8259 §6)", value=name)


def _refuse_surrogates(value: Any) -> None:
    # Depth is already bounded by max_depth, so this recursion is safe.
    if isinstance(value, str):
        if _SURROGATE.search(value) is not None:
            raise InvalidString(
                "a string contains an escaped lone surrogate such as \\ud800 (RFC 7493 §2.1)"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key) is not None:
                raise InvalidString(
                    "an object key contains an escaped lone surrogate such as \\ud800 "
                    "(RFC 7493 §2.1)"
                )
            _refuse_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_surrogates(item)


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_int=_integer,
    parse_float=_float,
    parse_constant=_constant,
    strict=True,
)


# --- fast path for stored canonical documents -------------------------------------------------


class _NotFast(Exception):
    """A stored document the fast path leaves to the strict parser."""


def _fast_reject(_: str) -> Any:
    raise _NotFast


def _fast_int(text: str) -> int:
    value = int(text)
    if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        raise _NotFast
    return value


def _fast_float(text: str) -> float:
    # Python's repr and ECMAScript's Number::toString (RFC 8785 §3.2.2.3) both give the
    # shortest round-tripping digits; they agree in notation for non-integral magnitudes in
    # [1e-4, 1e16), where neither switches to an exponent. Anything else takes the slow path.
    value = float(text)
    if value.is_integer() or not 1e-4 <= abs(value) < 1e16:
        raise _NotFast
    return value


_FAST_DECODER: Final = json.JSONDecoder(
    parse_int=_fast_int, parse_float=_fast_float, parse_constant=_fast_reject, strict=True
)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def dumps_plain(value: Any) -> bytes:
    """RFC 8785 form, at C speed, of a value whose floats are all non-integral with magnitudes
    in [1e-4, 1e16) and whose strings hold no character outside the Basic Multilingual Plane:
    for such values JCS is exactly Python's sorted, compact, non-ASCII-escaping JSON (numbers
    print alike; UTF-16 and code-point key orders agree). Callers must guarantee the
    precondition (:func:`loads_canonical` does)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def loads_canonical(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any | None:
    """Parse ``data`` only if it is already canonical RFC 8785 JSON that :func:`loads` accepts
    and that :func:`dumps_plain` can re-encode (see its precondition);
    None otherwise, for the caller to fall back to :func:`loads` and :func:`canonicalize`.

    The verifier's hot path: stored leaves are canonical, and C-speed parsing plus one
    comparison replaces the pure-Python strict parse and re-encoding. Every document this
    accepts, :func:`loads` accepts with the same value: duplicate keys, NaN, integers out of
    range, lone surrogates, BOMs and excess depth all fall back.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        _check_depth(text, max_depth)
    except TooDeep:
        return None
    if not text.isascii() and _ASTRAL.search(text) is not None:
        return None
    try:
        value = _FAST_DECODER.decode(text)
        again = dumps_plain(value)
    except (_NotFast, ValueError, UnicodeEncodeError, RecursionError):
        return None
    return value if again == data else None
