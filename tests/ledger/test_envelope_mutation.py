"""Envelope parsing under mutation (PROTOCOL §3; TESTPLAN T4, T7 as properties).

Take a valid signed envelope, mutate it (a flipped bit, a deleted, inserted or repeated span of
bytes, a truncation, or a structural edit: any value replaced, a member deleted or added, the
signatures reordered or repeated) and parse it as the server does (strict ``jcs.loads``, then
``parse_envelope``) and as the verifier re-reads a stored leaf (``envelope_from_leaf``). Every
outcome must be one of:

- refused with a request-error LedgerError (``MalformedInput`` or ``TooLarge``: a 4xx problem),
  never another exception;
- the same entry: the same leaf bytes, hence the same leaf hash (the mutation only changed
  spelling: whitespace, member order, escapes, signature order);
- another entry, with another leaf hash, none of whose signatures verifies unless it is one of
  the original signatures over the unchanged payload (its ``signer`` may have been renamed:
  that claim is the rules' to check): no mutation forges a signed entry.

Both parsing paths must agree on every outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import jcs
from ledger.entries import Envelope, envelope_from_leaf, parse_envelope, sign_payload, verify_entry_signature
from ledger.errors import LedgerError, MalformedInput, SignatureRejected, TooLarge
from ledger.keys import SigningKey
from tests.factories import ORIGIN, Member, key_add, payload, register

ADMIN = Member("admin")
FARM = Member("farm-1")
NEW_KEY = SigningKey.generate()
KEYS = {m.key_id: m.key.public_key.raw for m in (ADMIN, FARM)} | {NEW_KEY.public_key.key_id: NEW_KEY.public_key.raw}


def _origin() -> dict[str, Any]:
    # Built whole: the factories' ``origin=`` names the ledger, not an origin entry's place.
    p = payload("origin", FARM.id, site="Masseria Ulivo") | {
        "origin": {"country": "IT", "place": "Andria", "geo": {"lat": 41.2, "lon": 16.3}},
        "lots": [{"lot": "LOT-2026-001", "product": "olive, Coratina", "quantity": "1250.5", "unit": "kg"}],
    }
    return sign_payload(p, [(FARM.id, FARM.key)])


ORIGINALS = {
    "participant.register": register(ADMIN, FARM, ["producer"], name="Azienda Agricola Città"),
    "key.add (two signatures)": key_add(FARM, NEW_KEY),
    "origin": _origin(),
}


@dataclass(frozen=True)
class Outcome:
    code: str | None  # the refusal's code, or None if it parsed
    leaf: bytes | None


def _server_parse(data: bytes) -> Envelope:
    return parse_envelope(jcs.loads(data), origin=ORIGIN)


def _outcome(parse: Any, data: bytes) -> tuple[Outcome, Envelope | None]:
    try:
        env = parse(data)
    except LedgerError as exc:
        # Request errors only: anything else would be a 5xx, or a verifier crash.
        assert isinstance(exc, (MalformedInput, TooLarge)), (type(exc), exc.code)
        return Outcome(exc.code, None), None
    return Outcome(None, env.leaf_data), env


def _check(name: str, data: bytes) -> None:
    original = _server_parse(jcs.canonicalize(ORIGINALS[name]))
    server, env = _outcome(_server_parse, data)
    stored, _ = _outcome(lambda d: envelope_from_leaf(d, origin=ORIGIN), data)
    assert stored == server, (server, stored)
    if env is None or env.leaf_data == original.leaf_data:
        return
    assert env.leaf_hash != original.leaf_hash
    originals = {(s.key_id, s.sig) for s in original.signatures}
    for sig in env.signatures:
        if sig.key_id not in KEYS:
            continue  # the rules refuse an unknown key (unknown_key) before any verification
        try:
            verify_entry_signature(env, sig, KEYS[sig.key_id])
        except SignatureRejected:
            continue
        # Only an original signature over the unchanged payload verifies. Its ``signer`` is not
        # signed: if the mutation renamed it, the rules refuse the key as another participant's
        # (unknown_key; tests/api/test_hostile_input.py, key-of-another-signer).
        assert env.id == original.id and (sig.key_id, sig.sig) in originals, "a mutation verifies"


# --- byte mutations ----------------------------------------------------------------------------


@st.composite
def _byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    i = draw(st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(["flip", "delete", "insert", "repeat", "truncate", "replace"]))
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
    if kind == "delete":
        return data[:i] + data[i + draw(st.integers(1, 16)) :]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b" ", b"\\", b'"', b",", b"0", b"\\u0000"])) + data[i:]
    if kind == "repeat":
        j = draw(st.integers(i, min(len(data), i + 40)))
        return data[:j] + data[i:j] + data[j:]
    if kind == "truncate":
        return data[:i]
    return data[:i] + draw(st.sampled_from([b"1", b"a", b"A", b"=", b"/", b"+", b"}", b"]", b"\xff", b"\xc3"])) + data[i + 1 :]


@pytest.mark.parametrize("name", sorted(ORIGINALS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_byte_mutations_are_refused_or_another_unsigned_entry(name: str, data: st.DataObject) -> None:
    leaf = jcs.canonicalize(ORIGINALS[name])
    _check(name, data.draw(_byte_mutation(leaf)))


# --- structural mutations ----------------------------------------------------------------------

_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["", "admin", ORIGIN, "AAAA", "=" * 4, "0" * 16, "é\u0000"])
)
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*here, i))
    return found


def _edit(doc: Any, path: tuple[Any, ...], how: str, new: Any, key: str) -> Any:
    if not path:
        return new if how == "replace" else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = new
    elif how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last][key] = new
    elif how == "add" and isinstance(parent[last], list):
        parent[last].append(new)
    elif how == "repeat" and isinstance(parent, list):
        parent.append(parent[last])
    elif how == "reverse" and isinstance(parent[last], list):
        parent[last].reverse()
    return doc


@pytest.mark.parametrize("name", sorted(ORIGINALS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_structural_mutations_are_refused_or_another_unsigned_entry(name: str, data: st.DataObject) -> None:
    doc = json.loads(json.dumps(ORIGINALS[name]))
    path = data.draw(st.sampled_from(_paths(doc)))
    how = data.draw(st.sampled_from(["replace", "delete", "add", "repeat", "reverse"]))
    doc = _edit(doc, path, how, data.draw(_JSON), data.draw(st.text(max_size=10)))
    # json.dumps writes NaN and Infinity, and non-ASCII as \u escapes: the strict parser sees both.
    _check(name, json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass"))


# --- the checker itself ------------------------------------------------------------------------


def test_originals_parse_and_verify() -> None:
    for name, envelope in ORIGINALS.items():
        env = _server_parse(jcs.canonicalize(envelope))
        assert env.id == _server_parse(json.dumps(envelope, indent=2).encode()).id, name
        for sig in env.signatures:
            verify_entry_signature(env, sig, KEYS[sig.key_id])
    assert len(ORIGINALS["key.add (two signatures)"]["signatures"]) == 2


def test_a_resigned_mutation_would_be_noticed() -> None:
    """Negative control: a mutation that kept a valid signature (here, because the payload was
    re-signed) is exactly what the property refuses."""
    forged = json.loads(json.dumps(ORIGINALS["origin"]))
    forged["payload"]["site"] = "Somewhere else"
    forged = sign_payload(forged["payload"], [(FARM.id, FARM.key)])
    with pytest.raises(AssertionError, match="a mutation verifies"):
        _check("origin", jcs.canonicalize(forged))
