"""The verifier's fast path (jcs.loads_canonical, envelope_from_leaf) against the strict one.

The fast path must never accept what the strict parser refuses, never return a different value,
and produce the same entry id, leaf and leaf hash; when it declines, the strict path decides.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger import jcs
from ledger.entries import envelope_from_leaf, parse_envelope, sign_payload
from ledger.errors import LedgerError
from ledger.keys import SigningKey
from tests.factories import ORIGIN

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)


def _strict(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", jcs.loads(data)
    except LedgerError as exc:
        return exc.code, None


@settings(max_examples=600, deadline=None)
@given(_JSON)
def test_canonical_documents_agree_with_strict_parse(value: Any) -> None:
    try:
        data = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, OverflowError):
        assume(False)
        return
    fast = jcs.loads_canonical(data)
    verdict, strict = _strict(data)
    if fast is not None:
        assert verdict == "ok"
        assert json.dumps(fast, sort_keys=True) == json.dumps(strict, sort_keys=True)
        assert jcs.canonicalize(fast) == data


@settings(max_examples=600, deadline=None)
@given(_JSON, st.sampled_from(["spaces", "unsorted", "duplicate", "escape", "float", "bigint", "deep"]))
def test_non_canonical_documents_are_left_to_the_strict_parser(value: Any, how: str) -> None:
    doc = {"a": value, "b": 1}
    if how == "spaces":
        data = json.dumps(doc).encode()
    elif how == "unsorted":
        data = json.dumps({"b": 1, "a": value}, separators=(",", ":")).encode()
    elif how == "duplicate":
        data = b'{"a":1,"a":2}'
    elif how == "escape":
        data = b'{"a":"\\u0041"}'
    elif how == "float":
        data = b'{"a":1.0}'
    elif how == "bigint":
        data = b'{"a":9007199254740993}'
    else:
        data = b"[" * 33 + b"]" * 33
    assert jcs.loads_canonical(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":"\\ud800"}', b'\xef\xbb\xbf{"a":1}', b'{"a":NaN}', b'{"a":1e400}', b'{"a":1E2}',
        b'{"a":-0}', b'{"a":0.00001}', b'{"a":1e16}', b'{"a":"\xed\xa0\x80"}', b'{"\xf0\x9f\x98\x80":1,"\xee\x80\x80":2}',
    ],
    ids=["lone-surrogate", "bom", "nan", "overflow", "exponent", "minus-zero", "tiny-float", "huge-float", "utf8-surrogate", "astral-key-order"],
)
def test_edge_cases_are_never_accepted_by_the_fast_path_alone(data: bytes) -> None:
    fast = jcs.loads_canonical(data)
    verdict, strict = _strict(data)
    if fast is not None:
        assert verdict == "ok" and jcs.canonicalize(strict) == data


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(str.strip)


@settings(max_examples=300, deadline=None)
@given(
    product=_TEXT,
    place=_TEXT,
    lat=st.floats(min_value=-90, max_value=90, allow_nan=False),
    quantity=st.integers(min_value=1, max_value=10**6),
)
def test_envelopes_parse_alike_on_both_paths(product: str, place: str, lat: float, quantity: int) -> None:
    key = SigningKey.generate()
    payload = {
        "type": "origin", "ledger": ORIGIN, "author": "farm-1", "nonce": "n" * 16,
        "time": "2026-01-01T00:00:00Z", "site": place,
        "origin": {"country": "IT", "place": place, "geo": {"lat": lat, "lon": 16.5}},
        "lots": [{"lot": "LOT-1", "product": product, "quantity": str(quantity), "unit": "kg"}],
    }
    env = sign_payload(payload, [("farm-1", key)])
    leaf = jcs.canonicalize(env)
    fast_result: Any
    try:
        fast_result = envelope_from_leaf(leaf, origin=ORIGIN)
    except LedgerError as exc:
        fast_result = exc.code
    try:
        strict_result: Any = parse_envelope(jcs.loads(leaf), origin=ORIGIN)
    except LedgerError as exc:
        strict_result = exc.code
    if isinstance(strict_result, str) or isinstance(fast_result, str):
        assert fast_result == strict_result
    else:
        assert (fast_result.id, fast_result.leaf_data, fast_result.leaf_hash, fast_result.signatures) == (
            strict_result.id, strict_result.leaf_data, strict_result.leaf_hash, strict_result.signatures
        )
