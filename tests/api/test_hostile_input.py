"""Hostile input (TESTPLAN T7, T4): every case gets one exact 4xx problem and writes nothing.

Each row names what it breaks and the (status, code) it must get. For every row the test also
checks that the answer is an RFC 9457 problem document, that it leaks no traceback or file
path, and that the signed checkpoint is byte-identical before and after (nothing written).
Plain Flask answers duplicate keys and NaN with 200 and a deep array with 500: the baseline.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import create_app
from api.cli import init_ledger
from ledger.config import Settings
from ledger.entries import sign_payload
from ledger.keys import SigningKey, key_id, read_key_file

from ..conftest import BACKENDS, VECTORS, LedgerEnv, SigningClient, drop_pg_schema, new_pg_schema
from ..factories import (
    ORIGIN,
    Member,
    checkpoint_bytes,
    envelope,
    key_add,
    key_revoke,
    participant_object,
    payload,
    post_entry,
    register,
    with_key,
)

# Ed25519 group order (RFC 8032 §5.1).
L = 2**252 + 27742317777372353535851937790883648493
MiB = 1024 * 1024


@dataclass
class Ctx:
    """A ledger with an admin, a member whose first key is revoked, and a second member."""

    env: LedgerEnv
    admin: Member
    member: Member  # signs with its active key
    revoked: Member  # the same member, signing with its revoked key
    other: Member


def _setup(client: FlaskClient, ledger_env: LedgerEnv) -> Ctx:
    admin = ledger_env.admin
    revoked = Member("oleificio")
    active = SigningKey.generate()
    other = Member("frantoio")
    for env in (
        register(admin, revoked, ["producer"]),
        register(admin, other, ["processor"]),
        key_add(revoked, active),
        key_revoke(revoked, revoked.key_id, reason="rotated"),
    ):
        assert post_entry(client, env).status_code == 201
    return Ctx(ledger_env, admin, with_key(revoked, active), revoked, other)


# --- request builders -------------------------------------------------------------------

Send = Callable[[FlaskClient, Ctx], TestResponse]


def _valid(ctx: Ctx) -> dict[str, Any]:
    return register(ctx.admin, Member("nuovo"), ["buyer"])


def _valid_text(ctx: Ctx) -> str:
    return json.dumps(_valid(ctx))


def raw(body: bytes | str | Callable[[Ctx], bytes | str], *, content_type: str | None = "application/json", headers: dict[str, str] | None = None, path: str = "/v1/entries") -> Send:
    """POST exactly these bytes."""

    def send(client: FlaskClient, ctx: Ctx) -> TestResponse:
        data = body(ctx) if callable(body) else body
        if isinstance(data, str):
            data = data.encode("utf-8")
        kw: dict[str, Any] = {"data": data, "headers": headers or {}}
        if content_type is not None:
            kw["content_type"] = content_type
        return client.post(path, **kw)

    return send


def entry(build: Callable[[Ctx], Any], path: str = "/v1/entries") -> Send:
    """POST a JSON value built from the context (usually a tampered envelope)."""

    def send(client: FlaskClient, ctx: Ctx) -> TestResponse:
        return client.post(path, json=build(ctx))

    return send


def get(url: str | Callable[[int], str], method: str = "GET") -> Send:
    """Request ``url``, or the URL built from the current tree size."""

    def send(client: FlaskClient, ctx: Ctx) -> TestResponse:
        target = url(client.get("/v1/ledger").json["tree_size"]) if callable(url) else url
        return client.open(target, method=method)

    return send


class _Trickle(io.RawIOBase):
    """A body the client streams without Content-Length (chunked), piece by piece."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._pieces)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def chunked(body: Callable[[Ctx], bytes]) -> Send:
    def send(client: FlaskClient, ctx: Ctx) -> TestResponse:
        data = body(ctx)
        pieces = (data[i : i + 65536] for i in range(0, len(data), 65536))
        resp = client.post(
            "/v1/entries",
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input": _Trickle(pieces), "wsgi.input_terminated": True},
        )
        assert "CONTENT_LENGTH" not in resp.request.environ
        return resp

    return send


# --- tampering helpers ------------------------------------------------------------------


def _with(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**obj, **changes}


def _payload_edit(ctx: Ctx, edit: Callable[[dict[str, Any]], None], *, signer: Member | None = None) -> dict[str, Any]:
    """A register payload changed by ``edit``, then signed properly (only the content is bad)."""
    p = payload("participant.register", "admin", participant=participant_object(Member("nuovo"), ["buyer"]))
    edit(p)
    return envelope(p, signer or ctx.admin)


def _sig_edit(ctx: Ctx, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    env = _valid(ctx)
    edit(env["signatures"][0])
    return env


def _raw_sig(env: dict[str, Any]) -> bytes:
    return base64.b64decode(env["signatures"][0]["sig"])


def _set_sig(sig: bytes) -> Callable[[dict[str, Any]], None]:
    def edit(s: dict[str, Any]) -> None:
        s["sig"] = base64.b64encode(sig).decode()

    return edit


def _malleate(ctx: Ctx, s_of: Callable[[int], int]) -> dict[str, Any]:
    env = _valid(ctx)
    sig = _raw_sig(env)
    s = int.from_bytes(sig[32:], "little")
    env["signatures"][0]["sig"] = base64.b64encode(sig[:32] + s_of(s).to_bytes(32, "little")).decode()
    return env


def _register_key(ctx: Ctx, raw_key: bytes) -> dict[str, Any]:
    def edit(p: dict[str, Any]) -> None:
        p["participant"]["keys"] = [{"public_key": base64.b64encode(raw_key).decode()}]

    return _payload_edit(ctx, edit)


def _cctv_keys(flag: str) -> list[bytes]:
    vectors = json.loads((VECTORS / "ed25519-rfc8032" / "cctv_ed25519vectors.json").read_text())
    return sorted({bytes.fromhex(v["key"]) for v in vectors if flag in v["flags"]})


IDENTITY = bytes([1]) + bytes(31)
# y = p = 2**255 - 19: a non-canonical encoding (of y = 0).
NON_CANONICAL = bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
SMALL_ORDER = [k for k in _cctv_keys("low_order_A") if k != IDENTITY][0]
MIXED_ORDER = [k for k in _cctv_keys("low_order_component_A") if k not in _cctv_keys("low_order_A")][0]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_payload(ctx: Ctx, depth: int) -> bytes:
    text = _valid_text(ctx)
    # Put the nesting inside the envelope, where a field value would be.
    return text[:-1].encode() + b', "x": ' + _nested(depth - 1) + b"}"


def _pad_beyond_limit(ctx: Ctx) -> bytes:
    # A valid envelope, then whitespace past the limit: cutting the body at the limit would
    # leave a valid document, so only a size check can refuse it.
    text = _valid_text(ctx).encode()
    return text + b" " * (MiB + 10 - len(text))


def _replace_once(old: str, new: str) -> Callable[[Ctx], str]:
    def build(ctx: Ctx) -> str:
        text = _valid_text(ctx)
        assert old in text
        return text.replace(old, new, 1)

    return build


def _genesis(ctx: Ctx) -> dict[str, Any]:
    p = payload(
        "ledger.genesis",
        "ledger",
        ledger_key=ctx.env.ledger_key.public_key.b64,
        admins=[participant_object(Member("intruder"), ["admin"])],
        policy={"admin_quorum": 1},
    )
    return sign_payload(p, [("ledger", ctx.env.ledger_key)])


def _future(ctx: Ctx) -> dict[str, Any]:
    def edit(p: dict[str, Any]) -> None:
        p["time"] = "2999-01-01T00:00:00Z"

    return _payload_edit(ctx, edit)


def _identity_zero_sig(ctx: Ctx) -> dict[str, Any]:
    env = _valid(ctx)
    env["signatures"][0].update(key_id=key_id(IDENTITY), sig=base64.b64encode(bytes(64)).decode())
    return env


def _too_many_signatures(ctx: Ctx) -> dict[str, Any]:
    p = payload("participant.register", "admin", participant=participant_object(Member("nuovo"), ["buyer"]))
    return sign_payload(p, [("admin", SigningKey.generate()) for _ in range(17)])


@dataclass(frozen=True)
class Case:
    name: str
    send: Send
    status: int
    code: str


def _del(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        obj = p
        for part in path[:-1]:
            obj = obj[part]
        del obj[path[-1]]

    return edit


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        obj = p
        for part in path[:-1]:
            obj = obj[part]
        obj[path[-1]] = value

    return edit


CASES = [
    # --- not I-JSON ---------------------------------------------------------------------
    Case("duplicate-key-top-level", raw(lambda c: _valid_text(c)[:-1] + ', "signatures": []}'), 400, "duplicate_key"),
    Case("duplicate-key-nested", raw(_replace_once('"payload": {', '"payload": {"nonce": "AAAAAAAAAAAAAAAAAAAA", ')), 400, "duplicate_key"),
    Case("duplicate-key-in-signature", raw(_replace_once('"signer": ', '"sig": "AAAA", "signer": ')), 400, "duplicate_key"),
    Case("duplicate-key-differently-escaped", raw(_replace_once('"payload": {', '"payload": {"t\\u0079pe": "key.add", ')), 400, "duplicate_key"),
    Case("nan", raw('{"payload": NaN, "signatures": []}'), 400, "invalid_number"),
    Case("infinity", raw('{"payload": {"n": Infinity}, "signatures": []}'), 400, "invalid_number"),
    Case("minus-infinity", raw('{"payload": {"n": -Infinity}, "signatures": []}'), 400, "invalid_number"),
    Case("1e400-overflows-double", raw('{"payload": {"n": 1E400}, "signatures": []}'), 400, "invalid_number"),
    Case("integer-2-pow-53", raw('{"payload": {"n": 9007199254740992}, "signatures": []}'), 400, "invalid_number"),
    Case("integer-minus-2-pow-53", raw('{"payload": {"n": -9007199254740992}, "signatures": []}'), 400, "invalid_number"),
    Case("integer-5000-digits", raw('{"payload": {"n": ' + "9" * 5000 + '}, "signatures": []}'), 400, "invalid_number"),
    Case("whole-double-beyond-2-pow-53", raw('{"payload": {"n": 1e20}, "signatures": []}'), 400, "invalid_number"),
    Case("lone-high-surrogate", raw(_replace_once('S.p.A.', 'S.p.A. \\ud800')), 400, "invalid_string"),
    Case("lone-low-surrogate-in-key", raw('{"payload": {"\\udc00": 1}, "signatures": []}'), 400, "invalid_string"),
    Case("surrogate-encoded-in-utf8", raw(b'{"payload": "\xed\xa0\x80", "signatures": []}'), 400, "malformed_json"),
    Case("depth-33-arrays", raw(_nested(33)), 400, "too_deep"),
    Case("depth-33-inside-envelope", raw(lambda c: _deep_payload(c, 33)), 400, "too_deep"),
    Case("depth-100000-arrays", raw(_nested(100_000)), 400, "too_deep"),
    Case("depth-100000-objects", raw(b'{"a":' * 100_000 + b"1" + b"}" * 100_000), 400, "too_deep"),
    Case("truncated-json", raw(lambda c: _valid_text(c)[:-7]), 400, "malformed_json"),
    Case("trailing-garbage", raw(lambda c: _valid_text(c) + "x"), 400, "malformed_json"),
    Case("two-documents", raw(lambda c: _valid_text(c) * 2), 400, "malformed_json"),
    Case("byte-order-mark", raw(lambda c: b"\xef\xbb\xbf" + _valid_text(c).encode()), 400, "malformed_json"),
    Case("invalid-utf8", raw(b'{"payload": "\xff", "signatures": []}'), 400, "malformed_json"),
    Case("single-quotes", raw("{'payload': {}}"), 400, "malformed_json"),
    Case("trailing-comma", raw('{"payload": {}, "signatures": [],}'), 400, "malformed_json"),
    Case("comment", raw('{"payload": {} /* x */, "signatures": []}'), 400, "malformed_json"),
    Case("empty-body", raw(b""), 400, "malformed_json"),
    Case("whitespace-body", raw(b" \n"), 400, "malformed_json"),
    # --- transport ----------------------------------------------------------------------
    Case("text-plain", raw(_valid_text, content_type="text/plain"), 415, "unsupported_media_type"),
    Case("missing-content-type", raw(_valid_text, content_type=None), 415, "unsupported_media_type"),
    Case("form-urlencoded", raw(_valid_text, content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type"),
    Case("latin-1-charset", raw(_valid_text, content_type="application/json; charset=iso-8859-1"), 415, "unsupported_media_type"),
    Case("gzip-encoding", raw(_valid_text, headers={"Content-Encoding": "gzip"}), 415, "unsupported_content_encoding"),
    Case("deflate-encoding", raw(_valid_text, headers={"Content-Encoding": "deflate"}), 415, "unsupported_content_encoding"),
    Case("10-mb-with-content-length", raw(b'{"payload": "' + b"x" * (10 * MiB) + b'"}'), 413, "payload_too_large"),
    Case("10-mb-chunked", chunked(lambda c: b'{"payload": "' + b"x" * (10 * MiB) + b'"}'), 413, "payload_too_large"),
    Case("valid-json-padded-past-limit-chunked", chunked(_pad_beyond_limit), 413, "payload_too_large"),
    Case("valid-json-padded-past-limit", raw(_pad_beyond_limit), 413, "payload_too_large"),
    Case("batch-10-mb", raw(b'{"entries": ["' + b"x" * (10 * MiB) + b'"]}', path="/v1/entries/batch"), 413, "payload_too_large"),
    # --- envelope shape -----------------------------------------------------------------
    Case("top-level-array", entry(lambda c: [_valid(c)]), 400, "invalid_field"),
    Case("top-level-string", entry(lambda c: "entry"), 400, "invalid_field"),
    Case("top-level-null", raw("null"), 400, "invalid_field"),
    Case("unknown-top-level-field", entry(lambda c: _with(_valid(c), comment="hi")), 400, "unknown_field"),
    Case("server-owned-index-in-envelope", entry(lambda c: _with(_valid(c), index=0)), 400, "unknown_field"),
    Case("server-owned-id-in-envelope", entry(lambda c: _with(_valid(c), id="0" * 64)), 400, "unknown_field"),
    Case("server-owned-leaf-hash-in-envelope", entry(lambda c: _with(_valid(c), leaf_hash="0" * 64)), 400, "unknown_field"),
    Case("server-owned-height-in-payload", entry(lambda c: _payload_edit(c, _set(3, "height"))), 400, "unknown_field"),
    Case("unknown-payload-field", entry(lambda c: _payload_edit(c, _set("x", "colour"))), 400, "unknown_field"),
    Case("unknown-participant-field", entry(lambda c: _payload_edit(c, _set("x", "participant", "email"))), 400, "unknown_field"),
    Case("unknown-signature-field", entry(lambda c: _sig_edit(c, _set("x", "alg"))), 400, "unknown_field"),
    Case("missing-payload", entry(lambda c: {"signatures": _valid(c)["signatures"]}), 400, "missing_field"),
    Case("missing-signatures", entry(lambda c: {"payload": _valid(c)["payload"]}), 400, "missing_field"),
    Case("missing-payload-type", entry(lambda c: _payload_edit(c, _del("type"))), 400, "missing_field"),
    Case("missing-payload-nonce", entry(lambda c: _payload_edit(c, _del("nonce"))), 400, "missing_field"),
    Case("missing-participant-keys", entry(lambda c: _payload_edit(c, _del("participant", "keys"))), 400, "missing_field"),
    Case("missing-signature-key-id", entry(lambda c: _sig_edit(c, _del("key_id"))), 400, "missing_field"),
    Case("wrong-ledger", entry(lambda c: _payload_edit(c, _set("other.filiera.example", "ledger"))), 400, "wrong_ledger"),
    Case("unknown-type", entry(lambda c: _payload_edit(c, _set("lot.teleport", "type"))), 400, "unknown_type"),
    Case("type-not-a-string", entry(lambda c: _payload_edit(c, _set(7, "type"))), 400, "unknown_type"),
    Case("nonce-too-short", entry(lambda c: _payload_edit(c, _set("abc", "nonce"))), 400, "invalid_field"),
    Case("time-not-utc", entry(lambda c: _payload_edit(c, _set("2024-01-01T00:00:00+01:00", "time"))), 400, "invalid_field"),
    Case("name-is-a-number", entry(lambda c: _payload_edit(c, _set(5, "participant", "name"))), 400, "invalid_field"),
    Case("name-with-control-character", entry(lambda c: _payload_edit(c, _set("Acme\u0000", "participant", "name"))), 400, "invalid_field"),
    Case("unknown-role", entry(lambda c: _payload_edit(c, _set(["king"], "participant", "roles"))), 400, "invalid_field"),
    Case("role-is-a-list", entry(lambda c: _payload_edit(c, _set(["buyer", []], "participant", "roles"))), 400, "invalid_field"),
    Case("participant-id-uppercase", entry(lambda c: _payload_edit(c, _set("Nuovo", "participant", "id"))), 400, "invalid_field"),
    Case("personal-data-email", entry(lambda c: _payload_edit(c, _set("ana@example.org", "participant", "name"))), 400, "personal_data"),
    Case("personal-data-phone", entry(lambda c: _payload_edit(c, _set({"tel": "+39 347 123 4567"}, "participant", "attributes"))), 400, "personal_data"),
    # --- signatures ---------------------------------------------------------------------
    Case("no-signatures", entry(lambda c: _with(_valid(c), signatures=[])), 400, "invalid_field"),
    Case("17-signatures", entry(_too_many_signatures), 400, "invalid_field"),
    Case("same-signature-twice", entry(lambda c: (e := _valid(c)) | {"signatures": e["signatures"] * 2}), 400, "invalid_field"),
    Case("bad-base64-signature", entry(lambda c: _sig_edit(c, _set("not base64!", "sig"))), 400, "invalid_signature_encoding"),
    Case("unpadded-base64-signature", entry(lambda c: _sig_edit(c, lambda s: s.update(sig=s["sig"].rstrip("=")))), 400, "invalid_signature_encoding"),
    Case("base64url-signature", entry(lambda c: _sig_edit(c, _set(base64.urlsafe_b64encode(b"\xfb" * 64).decode(), "sig"))), 400, "invalid_signature_encoding"),
    Case("63-byte-signature", entry(lambda c: _sig_edit(c, _set(base64.b64encode(bytes(63)).decode(), "sig"))), 400, "invalid_signature_encoding"),
    Case("65-byte-signature", entry(lambda c: _sig_edit(c, lambda s: s.update(sig=base64.b64encode(base64.b64decode(s["sig"]) + b"\x00").decode()))), 400, "invalid_signature_encoding"),
    Case("key-id-15-hex", entry(lambda c: _sig_edit(c, lambda s: s.update(key_id=s["key_id"][:15]))), 400, "invalid_field"),
    Case("key-id-uppercase-hex", entry(lambda c: _sig_edit(c, _set("ABCDEF0123456789", "key_id"))), 400, "invalid_field"),
    Case("signer-uppercase", entry(lambda c: _sig_edit(c, _set("Admin", "signer"))), 400, "invalid_field"),
    Case("s-plus-l-malleated", entry(lambda c: _malleate(c, lambda s: s + L)), 422, "invalid_signature"),
    Case("s-equals-l", entry(lambda c: _malleate(c, lambda s: L)), 422, "invalid_signature"),
    Case("zero-signature", entry(lambda c: _sig_edit(c, _set(base64.b64encode(bytes(64)).decode(), "sig"))), 422, "invalid_signature"),
    Case("identity-key-zero-signature", entry(_identity_zero_sig), 422, "unknown_key"),
    Case("unknown-key-id", entry(lambda c: register(Member("admin"), Member("nuovo"), ["buyer"])), 422, "unknown_key"),
    Case("key-of-another-signer", entry(lambda c: _sig_edit(c, _set("frantoio", "signer"))), 422, "unknown_key"),
    # --- keys ---------------------------------------------------------------------------
    Case("small-order-key", entry(lambda c: _register_key(c, SMALL_ORDER)), 400, "weak_key"),
    Case("identity-point-key", entry(lambda c: _register_key(c, IDENTITY)), 400, "weak_key"),
    Case("non-canonical-key", entry(lambda c: _register_key(c, NON_CANONICAL)), 400, "weak_key"),
    Case("mixed-order-key", entry(lambda c: _register_key(c, MIXED_ORDER)), 400, "weak_key"),
    Case("31-byte-key", entry(lambda c: _register_key(c, bytes(range(1, 32)))), 400, "invalid_key"),
    Case("33-byte-key", entry(lambda c: _register_key(c, SigningKey.generate().public_key.raw + b"\x00")), 400, "invalid_key"),
    Case("key-add-small-order", entry(lambda c: envelope(payload("key.add", c.member.id, participant=c.member.id, public_key=base64.b64encode(SMALL_ORDER).decode()), c.member)), 400, "weak_key"),
    # --- authorisation ------------------------------------------------------------------
    Case("admin-action-with-member-key", entry(lambda c: register(c.member, Member("nuovo"), ["buyer"])), 403, "role_not_allowed"),
    Case("member-promotes-itself", entry(lambda c: envelope(payload("participant.update", c.member.id, participant=c.member.id, roles=["admin"]), c.member)), 403, "role_not_allowed"),
    Case("acting-on-another-members-keys", entry(lambda c: key_revoke(c.member, c.member.key_id, signer=c.other)), 403, "role_not_allowed"),
    Case("revoked-key", entry(lambda c: key_add(c.revoked, SigningKey.generate())), 403, "key_revoked"),
    Case("author-did-not-sign", entry(lambda c: envelope(payload("key.add", c.member.id, participant=c.other.id, public_key=SigningKey.generate().public_key.b64), c.other)), 403, "missing_signature"),
    Case("time-in-future", entry(_future), 422, "time_in_future"),
    Case("second-genesis", entry(_genesis), 422, "genesis_misplaced"),
    Case("batch-with-duplicate-key", raw('{"entries": [], "entries": []}', path="/v1/entries/batch"), 400, "duplicate_key"),
    Case("batch-over-1000", entry(lambda c: {"entries": [{}] * 1001}, path="/v1/entries/batch"), 413, "batch_too_large"),
    # --- reads --------------------------------------------------------------------------
    Case("inclusion-index-past-head", get(lambda n: f"/v1/proofs/inclusion?index={n}"), 400, "invalid_proof_request"),
    Case("inclusion-tree-size-past-head", get(lambda n: f"/v1/proofs/inclusion?index=0&tree_size={n + 1}"), 400, "invalid_proof_request"),
    Case("inclusion-index-not-in-tree-size", get("/v1/proofs/inclusion?index=3&tree_size=2"), 400, "invalid_proof_request"),
    Case("inclusion-negative-index", get("/v1/proofs/inclusion?index=-1"), 400, "invalid_proof_request"),
    Case("inclusion-huge-index", get(f"/v1/proofs/inclusion?index={10**30}"), 400, "invalid_proof_request"),
    Case("inclusion-non-numeric", get("/v1/proofs/inclusion?index=one"), 400, "invalid_proof_request"),
    Case("inclusion-tree-size-zero", get("/v1/proofs/inclusion?index=0&tree_size=0"), 400, "invalid_proof_request"),
    Case("inclusion-id-and-index", get("/v1/proofs/inclusion?index=0&id=" + "0" * 64), 400, "invalid_proof_request"),
    Case("inclusion-id-not-hex", get("/v1/proofs/inclusion?id=xyz"), 400, "invalid_proof_request"),
    Case("inclusion-unknown-parameter", get("/v1/proofs/inclusion?index=0&verbose=1"), 400, "invalid_proof_request"),
    Case("consistency-past-head", get(lambda n: f"/v1/proofs/consistency?from=1&to={n + 1}"), 400, "invalid_proof_request"),
    Case("consistency-from-after-to", get("/v1/proofs/consistency?from=3&to=2"), 400, "invalid_proof_request"),
    Case("consistency-negative", get("/v1/proofs/consistency?from=-1"), 400, "invalid_proof_request"),
    Case("consistency-huge", get(f"/v1/proofs/consistency?from=1&to={10**30}"), 400, "invalid_proof_request"),
    Case("consistency-non-numeric", get("/v1/proofs/consistency?from=1.5"), 400, "invalid_proof_request"),
    Case("blocks-page-over-maximum", get("/v1/blocks?limit=1001"), 400, "invalid_page"),
    Case("blocks-page-huge", get(f"/v1/blocks?limit={10**30}"), 400, "invalid_page"),
    Case("blocks-page-zero", get("/v1/blocks?limit=0"), 400, "invalid_page"),
    Case("blocks-from-negative", get("/v1/blocks?from=-1"), 400, "invalid_page"),
    Case("participants-page-over-maximum", get("/v1/participants?limit=1001"), 400, "invalid_page"),
    Case("participants-cursor-with-nul", get("/v1/participants?after=%00"), 400, "invalid_page"),
    Case("block-height-huge", get(f"/v1/blocks/{10**30}"), 404, "block_not_found"),
    Case("block-height-negative", get("/v1/blocks/-1"), 404, "block_not_found"),
    Case("entry-id-not-hex", get("/v1/entries/not-an-id"), 400, "invalid_field"),
    Case("entry-id-unknown", get("/v1/entries/" + "0" * 64), 404, "entry_not_found"),
    Case("participant-id-uppercase-in-path", get("/v1/participants/ACME"), 400, "invalid_field"),
    Case("participant-unknown", get("/v1/participants/nobody"), 404, "participant_not_found"),
    Case("unknown-route", get("/v1/lots/x/teleport"), 404, "route_not_found"),
    Case("unknown-version", get("/v2/entries"), 404, "route_not_found"),
    Case("put-entries", get("/v1/entries", method="PUT"), 405, "method_not_allowed"),
    Case("delete-block", get("/v1/blocks/0", method="DELETE"), 405, "method_not_allowed"),
    Case("post-checkpoint", get("/v1/checkpoint", method="POST"), 405, "method_not_allowed"),
]


def test_table_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.status for c in CASES} >= {400, 403, 404, 405, 413, 415, 422}


def _assert_problem(resp: TestResponse, case: Case, tmp_path: Path) -> None:
    assert resp.status_code == case.status, resp.data[:300]
    assert resp.mimetype == "application/problem+json"
    body = json.loads(resp.data)
    assert body["code"] == case.code, body
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == case.status
    assert body["type"] == f"urn:filiera:problem:{case.code}"
    assert isinstance(body["detail"], str) and body["detail"]
    text = resp.get_data(as_text=True)
    for leak in ("Traceback", 'File "', "site-packages", ".py", "/work/", str(tmp_path)):
        assert leak not in text, leak
    assert len(resp.data) < 4096, "a problem document never echoes the body"


@dataclass
class Shared:
    client: FlaskClient
    ctx: Ctx
    data_dir: Path


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One ledger per backend for the whole table, as the ``ledger_env`` and ``client``
    fixtures build it. Sharing is sound because every case proves it wrote nothing (its
    checkpoint before and after are byte-identical), so no case can see another's effects;
    it keeps the table's 130-odd cases x 2 backends within seconds."""
    tmp = tmp_path_factory.mktemp("hostile")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'filiera.db'}"
    else:
        schema, url = new_pg_schema("t_")
    settings = Settings.from_env(
        {}, data_dir=tmp / "data", ledger_key_file=tmp / "data" / "ledger.key", database_url=url, seal_interval=0.0
    )
    init_ledger(settings, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    env = LedgerEnv(
        settings=settings,
        admin=Member("admin", read_key_file(settings.data_dir / "admin.key").signing_key),
        ledger_key=read_key_file(settings.ledger_key_file).signing_key,
        backend=request.param,
    )
    app = create_app(settings, background_sealing=False)
    app.test_client_class = SigningClient
    client = app.test_client()
    assert isinstance(client, SigningClient)
    client.signer = env.admin
    try:
        yield Shared(client, _setup(client, env), tmp)
    finally:
        app.extensions["filiera"].store.dispose()
        if schema is not None:
            drop_pg_schema(schema)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_refused_and_writes_nothing(shared: Shared, case: Case) -> None:
    client = shared.client
    before = checkpoint_bytes(client), client.get("/v1/participants").data
    resp = case.send(client, shared.ctx)
    _assert_problem(resp, case, shared.data_dir)
    assert (checkpoint_bytes(client), client.get("/v1/participants").data) == before


def test_every_weak_cctv_key_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    """TESTPLAN T4: no small-order, mixed-order or non-canonical key is ever stored."""
    ctx = Ctx(ledger_env, ledger_env.admin, ledger_env.admin, ledger_env.admin, ledger_env.admin)
    keys = sorted(
        set(_cctv_keys("low_order_A")) | set(_cctv_keys("low_order_component_A")) | set(_cctv_keys("non_canonical_A"))
    )
    assert len(keys) == 21
    before = checkpoint_bytes(client)
    for raw_key in keys:
        resp = post_entry(client, _register_key(ctx, raw_key))
        assert (resp.status_code, resp.json["code"]) == (400, "weak_key"), raw_key.hex()
    assert checkpoint_bytes(client) == before
    assert [p["id"] for p in client.get("/v1/participants").json["participants"]] == ["admin"]
