"""The tlog-witness protocol without I/O: request format and the witness's decision.

Vectors: tests/vectors/tlog-witness/examples.json (the spec's example request and response).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import (
    ConflictingCheckpoint,
    InconsistentCheckpoint,
    LedgerError,
    MalformedNote,
    MalformedWitnessRequest,
    OldSizeMismatch,
    UnknownLog,
    UntrustedCheckpoint,
)
from ledger.keys import SigningKey
from ledger.notes import Checkpoint, add_signature_lines, split_note
from ledger.witness import (
    AddCheckpoint,
    format_size,
    parse_cosignature_lines,
    parse_size,
    witness_checkpoint,
)

from ..witnesses import TestLog

EXAMPLES = json.loads((Path(__file__).parents[1] / "vectors" / "tlog-witness" / "examples.json").read_text(encoding="utf-8"))
ORIGIN = "example.com/log"


def test_spec_example_request_parses_and_formats_back() -> None:
    body = EXAMPLES["add_checkpoint_request"].encode("utf-8")
    expect = EXAMPLES["expect_request"]
    request = AddCheckpoint.parse(body)
    assert request.old_size == expect["old_size"]
    assert len(request.proof) == expect["proof_lines"]
    checkpoint = request.body
    assert (checkpoint.origin, checkpoint.tree_size) == (expect["origin"], expect["tree_size"])
    assert base64.b64encode(checkpoint.root).decode() == expect["root_base64"]
    assert len(split_note(request.checkpoint)[1]) == expect["signature_lines"]
    assert request.format() == body


def test_spec_example_response_parses() -> None:
    lines = parse_cosignature_lines(EXAMPLES["add_checkpoint_response"].encode("utf-8"))
    assert [line.split(" ")[1] for line in lines] == EXAMPLES["expect_response"]["names"]
    # Placeholder bytes of the right shape, not real cosignatures (a "timestamp" exceeds
    # 2^63 - 1), so only the length is checked.
    assert [len(base64.b64decode(line.split(" ")[2])) for line in lines] == [76, 76, 76]


LOG = TestLog(ORIGIN).grow(20)
GOOD = LOG.request(5, 12).format().decode("utf-8")
_, _, _GOOD_NOTE = GOOD.partition("\n\n")


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("empty", b""),
        ("not-utf8", b"old 0\n\n\xff"),
        ("no-empty-line", b"old 0\n"),
        ("leading-zero", GOOD.replace("old 5", "old 05", 1).encode()),
        ("negative", GOOD.replace("old 5", "old -5", 1).encode()),
        ("twenty-digits", GOOD.replace("old 5", "old 12345678901234567890", 1).encode()),
        ("no-old-line", GOOD.replace("old 5\n", "", 1).encode()),
        ("old-spelled-otherwise", GOOD.replace("old 5", "Old 5", 1).encode()),
        ("two-spaces", GOOD.replace("old 5", "old  5", 1).encode()),
        ("hash-not-base64", GOOD.replace("\n", "\n!!!!\n", 1).encode()),
        ("hash-31-bytes", GOOD.replace("\n", "\n" + base64.b64encode(bytes(31)).decode() + "\n", 1).encode()),
        ("hash-non-canonical", GOOD.replace("\n", "\n" + base64.b64encode(bytes(32)).decode()[:-2] + "B=\n", 1).encode()),
        ("64-proof-lines", ("old 5\n" + (base64.b64encode(bytes(32)).decode() + "\n") * 64 + "\n" + _GOOD_NOTE).encode()),
        ("unsigned-checkpoint", GOOD.split("\u2014")[0].encode()),
        ("checkpoint-without-root", b"old 0\n\nexample.com/log\n5\n\n\xe2\x80\x94 x AAAAAAAA\n"),
        ("trailing-garbage", (GOOD + "junk").encode()),
        ("crlf", GOOD.replace("\n", "\r\n").encode()),
    ],
)
def test_malformed_requests_are_refused(case: str, body: bytes) -> None:
    with pytest.raises(MalformedWitnessRequest) as exc:
        AddCheckpoint.parse(body)
    assert exc.value.code == "malformed_witness_request"


def test_a_good_request_parses() -> None:
    request = AddCheckpoint.parse(GOOD.encode())
    assert (request.old_size, request.body.tree_size) == (5, 12)
    assert request.proof == LOG.proof(5, 12)


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_requests_round_trip(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 20))
    old = data.draw(st.integers(0, size))
    request = LOG.request(old, size)
    assert AddCheckpoint.parse(request.format()) == request


# --- the decision ---------------------------------------------------------------------------


def decide(request: AddCheckpoint, latest: Checkpoint | None, log: TestLog = LOG) -> Checkpoint:
    return witness_checkpoint(request, logs={ORIGIN: [log.verifier]}, latest=latest)


def test_first_checkpoint_is_accepted_from_size_zero() -> None:
    assert decide(LOG.request(0, 7), None) == LOG.body(7)


def test_growth_with_a_valid_proof_is_accepted() -> None:
    assert decide(LOG.request(7, 20), LOG.body(7)) == LOG.body(20)


def test_same_checkpoint_again_is_accepted() -> None:
    assert decide(LOG.request(7, 7), LOG.body(7)) == LOG.body(7)


def test_extra_signatures_by_unknown_keys_are_ignored() -> None:
    request = LOG.request(0, 3)
    stranger = TestLog("someone.else").grow(1)
    note = add_signature_lines(request.checkpoint, [stranger.checkpoint(1).rstrip("\n").split("\n")[-1]])
    assert decide(AddCheckpoint(0, (), note), None) == LOG.body(3)


def _refusal(request: AddCheckpoint, latest: Checkpoint | None, **kw: Any) -> LedgerError:
    with pytest.raises(LedgerError) as exc:
        decide(request, latest, **kw)
    return exc.value


def test_unknown_origin_is_404() -> None:
    other = TestLog("example.com/other").grow(3)
    error = _refusal(other.request(0, 3), None)
    assert isinstance(error, UnknownLog)


def test_checkpoint_signed_by_another_key_is_403() -> None:
    forged = AddCheckpoint(0, (), LOG.checkpoint(3, key=SigningKey.generate()))
    assert isinstance(_refusal(forged, None), UntrustedCheckpoint)


def test_checkpoint_with_a_bad_signature_by_the_log_key_is_403() -> None:
    note = LOG.checkpoint(3)
    text, _ = split_note(note)
    # Same key line, signature of another text: the known key's signature must verify.
    other = LOG.checkpoint(4).rstrip("\n").split("\n")[-1]
    assert isinstance(_refusal(AddCheckpoint(0, (), text + "\n" + other + "\n"), None), UntrustedCheckpoint)


def test_old_size_beyond_the_checkpoint_is_400() -> None:
    request = AddCheckpoint(9, (), LOG.checkpoint(8))
    assert isinstance(_refusal(request, LOG.body(9)), MalformedWitnessRequest)


@pytest.mark.parametrize(("old", "latest"), [(0, 5), (3, 5), (6, 5), (5, None)])
def test_stale_or_wrong_old_size_is_409_with_the_witness_size(old: int, latest: int | None) -> None:
    request = LOG.request(old, 12)
    error = _refusal(request, None if latest is None else LOG.body(latest))
    assert isinstance(error, OldSizeMismatch)
    assert error.facts["size"] == (latest or 0)


def test_same_size_other_root_is_409() -> None:
    fork = LOG.fork(4).grow(4, "fork")
    error = _refusal(fork.request(8, 8), LOG.body(8), log=fork)
    assert isinstance(error, ConflictingCheckpoint)
    assert error.facts["size"] == 8


def test_growth_from_another_history_is_422() -> None:
    fork = LOG.fork(4).grow(10, "fork")
    # A correct proof in the fork's tree, from the size the witness holds in the log's.
    error = _refusal(fork.request(8, 14), LOG.body(8), log=fork)
    assert isinstance(error, InconsistentCheckpoint)


@pytest.mark.parametrize("what", ["flipped-bit", "dropped-hash", "extra-hash", "proof-from-zero", "proof-at-equal-size"])
def test_bad_proofs_are_422(what: str) -> None:
    request = LOG.request(5, 12)
    proof = list(request.proof)
    latest = LOG.body(5)
    if what == "flipped-bit":
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    elif what == "dropped-hash":
        proof.pop()
    elif what == "extra-hash":
        proof.append(bytes(32))
    elif what == "proof-from-zero":
        request, latest = LOG.request(0, 12), None
        proof = [bytes(32)]
    else:
        request, latest = LOG.request(12, 12), LOG.body(12)
        proof = [bytes(32)]
    bad = AddCheckpoint(request.old_size, tuple(proof), request.checkpoint)
    assert isinstance(_refusal(bad, latest), InconsistentCheckpoint)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_witness_follows_one_history_and_refuses_the_other(data: st.DataObject) -> None:
    """Against a random sequence of submissions from a log and a fork of it (same key), the
    witness's size never decreases, and once it holds a size beyond the fork point it never
    accepts the other branch beyond that point."""
    at = data.draw(st.integers(1, 8))
    main = TestLog(ORIGIN).grow(24)
    fork = main.fork(at).grow(24 - at, "fork")
    latest: Checkpoint | None = None
    branch: str | None = None
    for _ in range(data.draw(st.integers(1, 25))):
        name, log = data.draw(st.sampled_from([("main", main), ("fork", fork)]))
        size = data.draw(st.integers(1, 24))
        held = latest.tree_size if latest else 0
        old = held if held <= size else data.draw(st.integers(0, size))
        request = AddCheckpoint(old, log.proof(old, size) if old else (), log.checkpoint(size))
        try:
            accepted = witness_checkpoint(request, logs={ORIGIN: [main.verifier]}, latest=latest)
        except (OldSizeMismatch, InconsistentCheckpoint, ConflictingCheckpoint, MalformedWitnessRequest):
            continue
        assert accepted.tree_size >= held
        if accepted.tree_size > at:
            assert branch in (None, name)
            branch = name
        latest = accepted


# --- answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 20852163, 2**63 - 1])
def test_size_answers_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("body", [b"", b"5", b"05\n", b"-1\n", b"5\n\n", b"five\n", b"\xff\n"])
def test_malformed_size_answers(body: bytes) -> None:
    with pytest.raises(MalformedWitnessRequest):
        parse_size(body)


@pytest.mark.parametrize("body", [b"", b"\n", "\u2014 w AAAAAAAA".encode(), "- w AAAAAAAA\n".encode(), b"\xff\n"])
def test_malformed_cosignature_answers(body: bytes) -> None:
    with pytest.raises(MalformedNote):
        parse_cosignature_lines(body)
