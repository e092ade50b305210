"""The witness's HTTP interface (c2sp.org/tlog-witness §add-checkpoint), through Flask's test
client: every status the protocol names, the 409 size body, and the record kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.witness_app import create_witness_app
from ledger.cosignature import Cosigner, cosignatures_in
from ledger.keys import SigningKey
from ledger.notes import add_signature_lines
from ledger.witness import SIZE_MEDIA_TYPE, AddCheckpoint
from ledger.witness_state import WitnessState

from ..witnesses import TestLog

ORIGIN = "ledger.example/oil"


@pytest.fixture
def log() -> TestLog:
    return TestLog(ORIGIN).grow(40)


@pytest.fixture
def cosigner() -> Cosigner:
    return Cosigner("witness.example/w1", SigningKey.generate())


def _client(log: TestLog, cosigner: Cosigner, state: Path) -> FlaskClient:
    return create_witness_app(cosigner=cosigner, logs={ORIGIN: [log.verifier]}, state_dir=state).test_client()


@pytest.fixture
def witness(log: TestLog, cosigner: Cosigner, tmp_path: Path) -> FlaskClient:
    return _client(log, cosigner, tmp_path / "state")


def add(client: FlaskClient, body: bytes | AddCheckpoint) -> tuple[int, str, bytes]:
    data = body.format() if isinstance(body, AddCheckpoint) else body
    resp = client.post("/add-checkpoint", data=data)
    return resp.status_code, resp.headers["Content-Type"], resp.data


def test_cosigns_and_remembers(witness: FlaskClient, log: TestLog, cosigner: Cosigner, tmp_path: Path) -> None:
    status, media, body = add(witness, log.request(0, 10))
    assert status == 200 and media.startswith("text/plain")
    note = add_signature_lines(log.checkpoint(10), body.decode().splitlines())
    checkpoint, found = cosignatures_in(note, [cosigner.verifier])
    assert checkpoint == log.body(10) and len(found) == 1
    assert WitnessState(tmp_path / "state").latest(ORIGIN) == log.body(10)
    status, _, _ = add(witness, log.request(10, 25))
    assert status == 200
    assert WitnessState(tmp_path / "state").latest(ORIGIN) == log.body(25)


def test_stale_old_size_gets_409_with_the_size(witness: FlaskClient, log: TestLog) -> None:
    assert add(witness, log.request(0, 10))[0] == 200
    for old in (0, 5, 11):
        status, media, body = add(witness, log.request(old, 20))
        assert (status, media, body) == (409, SIZE_MEDIA_TYPE, b"10\n")


def test_unknown_origin_is_404(witness: FlaskClient, tmp_path: Path) -> None:
    other = TestLog("ledger.example/other").grow(3)
    status, media, body = add(witness, other.request(0, 3))
    assert status == 404 and media == "application/problem+json"
    assert b'"unknown_log"' in body
    assert list((tmp_path / "state").iterdir()) == []


def test_bad_signature_is_403(witness: FlaskClient, log: TestLog) -> None:
    forged = AddCheckpoint(0, (), log.checkpoint(3, key=SigningKey.generate()))
    status, _, body = add(witness, forged)
    assert status == 403 and b'"untrusted_checkpoint"' in body


@pytest.mark.parametrize("body", [b"", b"old 1\n", b"old 01\n\nx\n", "old 0\n\n\u2014\n".encode(), b"\xff\xfe"])
def test_malformed_body_is_400(witness: FlaskClient, body: bytes) -> None:
    status, _, answer = add(witness, body)
    assert status == 400 and b'"malformed_witness_request"' in answer


def test_old_size_beyond_checkpoint_is_400(witness: FlaskClient, log: TestLog) -> None:
    status, _, answer = add(witness, AddCheckpoint(12, (), log.checkpoint(10)))
    assert status == 400 and b'"malformed_witness_request"' in answer


def test_bad_proof_is_422_and_changes_nothing(witness: FlaskClient, log: TestLog, tmp_path: Path) -> None:
    assert add(witness, log.request(0, 10))[0] == 200
    good = log.request(10, 20)
    bad = AddCheckpoint(10, (bytes(32), *good.proof[1:]), good.checkpoint)
    status, _, body = add(witness, bad)
    assert status == 422 and b'"inconsistent_checkpoint"' in body
    assert WitnessState(tmp_path / "state").latest(ORIGIN) == log.body(10)


def test_second_history_is_refused(witness: FlaskClient, log: TestLog, tmp_path: Path) -> None:
    """A fork with the same key and origin: 409 at the same size, 422 beyond it."""
    fork = log.fork(6).grow(20, "fork")
    assert add(witness, log.request(0, 10))[0] == 200
    assert add(witness, fork.request(10, 10))[:3] == (409, SIZE_MEDIA_TYPE, b"10\n")
    assert add(witness, fork.request(10, 18))[0] == 422
    assert add(witness, fork.request(0, 18))[:3] == (409, SIZE_MEDIA_TYPE, b"10\n")
    assert WitnessState(tmp_path / "state").latest(ORIGIN) == log.body(10)


def test_the_record_survives_a_restart(log: TestLog, cosigner: Cosigner, tmp_path: Path) -> None:
    first = _client(log, cosigner, tmp_path / "state")
    assert add(first, log.request(0, 30))[0] == 200
    second = _client(log, cosigner, tmp_path / "state")
    assert add(second, log.request(0, 35))[:3] == (409, SIZE_MEDIA_TYPE, b"30\n")


def test_a_damaged_record_stops_the_witness_for_that_log(witness: FlaskClient, log: TestLog, tmp_path: Path) -> None:
    """Never read as "no record": that would let the log start a new history."""
    assert add(witness, log.request(0, 10))[0] == 200
    (record,) = (tmp_path / "state").glob("*.checkpoint")
    record.write_text("garbage\n")
    status, _, body = add(witness, log.request(0, 10))
    assert status == 503 and b'"unavailable"' in body and str(tmp_path).encode() not in body


def test_about_names_the_witness_and_its_logs(witness: FlaskClient, log: TestLog, cosigner: Cosigner) -> None:
    text = witness.get("/").data.decode()
    assert text.splitlines() == [f"filiera witness {cosigner.verifier.vkey}", f"log {log.verifier.vkey}"]
