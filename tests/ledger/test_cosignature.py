"""Cosignatures (c2sp.org/tlog-cosignature v1, type 0x04) and cosigner keys.

Vectors: tests/vectors/signed-note-checkpoint (keys.json: the type 0x04 `remora.n621.de` vkey
and Go-format private keys; spec/tlog-cosignature.md: the example cosigned checkpoint).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.cosignature import Cosigner, CosignerVerifier, cosign, cosigned_message, cosignatures_in, verify_cosignature
from ledger.errors import InvalidKeyFile, InvalidNoteSignature, MalformedNote, NoTrustedSignature
from ledger.keys import SigningKey, unsafe_verify
from ledger.notes import (
    Checkpoint,
    NoteVerifier,
    add_signature_lines,
    open_note,
    parse_cosignature,
    sign_checkpoint,
    split_note,
    verifier_for,
    verify_checkpoint,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "signed-note-checkpoint"
KEYS = json.loads((VECTORS / "keys.json").read_text(encoding="utf-8"))
COSIGNER_VKEYS = [k for k in KEYS["valid_vkeys"] if k["expect"]["signature_type"] == 4]
NOTE_VKEYS = [k for k in KEYS["valid_vkeys"] if k["expect"]["signature_type"] == 1]
SKEYS = [k for k in KEYS["valid_vkeys"] if "skey" in k]

CHECKPOINT = Checkpoint("example.com/log", 20852163, bytes(range(32)))


def test_vector_counts() -> None:
    assert len(COSIGNER_VKEYS) == 1
    assert len(NOTE_VKEYS) == 7
    assert len(SKEYS) == 3


@pytest.mark.parametrize("case", COSIGNER_VKEYS, ids=lambda c: c["expect"]["name"])
def test_cosigner_vkey_vector(case: dict[str, Any]) -> None:
    verifier = CosignerVerifier.parse(case["vkey"])
    assert verifier.name == case["expect"]["name"]
    assert verifier.key_id.hex() == case["expect"]["key_id_hex"]
    assert verifier.public_key.hex() == case["expect"]["public_key_hex"]
    assert verifier.vkey == case["vkey"]
    # The same key under type 0x01 is a different key ID: a note key is not a cosigner key.
    with pytest.raises(MalformedNote):
        NoteVerifier.parse(case["vkey"])


@pytest.mark.parametrize("case", NOTE_VKEYS, ids=lambda c: c["expect"]["name"])
def test_note_vkeys_are_not_cosigner_keys(case: dict[str, Any]) -> None:
    with pytest.raises(MalformedNote):
        CosignerVerifier.parse(case["vkey"])


@pytest.mark.parametrize("case", SKEYS, ids=lambda c: c["expect"]["name"])
def test_go_private_key_vectors(case: dict[str, Any]) -> None:
    """Go's note private keys load as witness keys, and are written back byte for byte."""
    cosigner = Cosigner.parse_skey(case["skey"], source="vector")
    assert cosigner.name == case["expect"]["name"]
    assert cosigner.signing_key.seed.hex() == case["expect"]["private_seed_hex"]
    assert cosigner.signing_key.public_key.raw.hex() == case["expect"]["public_key_hex"]
    assert cosigner.skey() == case["skey"] + "\n"
    assert "PRIVATE" not in repr(cosigner) and case["expect"]["private_seed_hex"] not in repr(cosigner)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("no-prefix", "KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ"),
        ("wrong-key-id", "PRIVATE+KEY+Log+2271c622+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ"),
        ("other-name", "PRIVATE+KEY+Lag+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ"),
        ("short-seed", "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKg=="),
        ("type-0x04", "PRIVATE+KEY+Log+2271c621+BNEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ"),
        ("two-lines", "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ\n\n"),
        ("bad-base64", "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgv!"),
    ],
)
def test_bad_private_keys_are_refused_without_leaking(name: str, text: str) -> None:
    with pytest.raises(InvalidKeyFile) as exc:
        Cosigner.parse_skey(text, source="witness.key")
    assert "AdEIq9FLRQ" not in exc.value.detail


def _spec_example() -> str:
    """The cosigned checkpoint at the top of tlog-cosignature.md."""
    spec = (VECTORS / "spec" / "tlog-cosignature.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```\n(.*?)^```$", spec, re.MULTILINE | re.DOTALL)
    return blocks[0]


def test_spec_example_cosignature_decodes() -> None:
    """The example's witness line is a 76-byte cosignature/v1 whose time is the one the
    spec's signed-message example shows."""
    text, lines = split_note(_spec_example())
    assert Checkpoint.parse_body(text).tree_size == 20852163
    assert [line.name for line in lines] == ["example.com/behind-the-sofa", "witness.example.com/w1"]
    key_id, timestamp, signature = parse_cosignature(lines[1].key_id + lines[1].signature)
    assert timestamp == 1679315147
    assert len(key_id) == 4 and len(signature) == 64
    spec = (VECTORS / "spec" / "tlog-cosignature.md").read_text(encoding="utf-8")
    assert f"time {timestamp}\n" in spec


def test_cosignature_round_trip_and_message() -> None:
    cosigner = Cosigner("witness.example/w1", SigningKey.generate())
    line = cosign(CHECKPOINT, cosigner=cosigner, timestamp=1679315147)
    assert line.startswith("\u2014 witness.example/w1 ")
    raw = base64.b64decode(line.split(" ")[2])
    assert len(raw) == 76 and raw[:4] == cosigner.verifier.key_id
    assert raw[4:12] == (1679315147).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1679315147\nexample.com/log\n20852163\n" + base64.b64encode(bytes(range(32))) + b"\n"
    assert cosigned_message(CHECKPOINT, 1679315147) == message
    # The Ed25519 signature is over exactly that message (checked with the raw verifier).
    unsafe_verify(cosigner.signing_key.public_key.raw, message, raw[12:])
    assert verify_cosignature(CHECKPOINT, line, cosigner.verifier) == 1679315147


def test_key_id_is_type_0x04() -> None:
    cosigner = Cosigner("w", SigningKey.generate())
    expected = hashlib.sha256(b"w\n\x04" + cosigner.signing_key.public_key.raw).digest()[:4]
    assert cosigner.verifier.key_id == expected
    assert cosigner.verifier.vkey.split("+", 2)[2] == base64.b64encode(b"\x04" + cosigner.signing_key.public_key.raw).decode()


@pytest.mark.parametrize(
    "change",
    ["flipped-signature-bit", "changed-timestamp", "other-size", "other-root", "extension-line", "other-origin"],
)
def test_altered_cosignature_or_checkpoint_fails(change: str) -> None:
    cosigner = Cosigner("witness.example/w1", SigningKey.generate())
    line = cosign(CHECKPOINT, cosigner=cosigner, timestamp=1700000000)
    checkpoint = CHECKPOINT
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    if change == "flipped-signature-bit":
        raw[40] ^= 1
    elif change == "changed-timestamp":
        raw[11] ^= 1
    elif change == "other-size":
        checkpoint = Checkpoint(CHECKPOINT.origin, CHECKPOINT.tree_size + 1, CHECKPOINT.root)
    elif change == "other-root":
        checkpoint = Checkpoint(CHECKPOINT.origin, CHECKPOINT.tree_size, bytes(32))
    elif change == "extension-line":
        checkpoint = Checkpoint(CHECKPOINT.origin, CHECKPOINT.tree_size, CHECKPOINT.root, ("ext",))
    else:
        checkpoint = Checkpoint("example.com/other", CHECKPOINT.tree_size, CHECKPOINT.root)
    altered = f"\u2014 witness.example/w1 {base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(InvalidNoteSignature):
        verify_cosignature(checkpoint, altered, cosigner.verifier)


def test_another_witness_line_is_not_this_witness() -> None:
    one, two = (Cosigner("witness.example/w1", SigningKey.generate()) for _ in range(2))
    line = cosign(CHECKPOINT, cosigner=one, timestamp=1)
    with pytest.raises(NoTrustedSignature):
        verify_cosignature(CHECKPOINT, line, two.verifier)


@pytest.mark.parametrize("timestamp", [-1, 2**63, True])
def test_timestamp_bounds(timestamp: int) -> None:
    with pytest.raises(MalformedNote):
        cosign(CHECKPOINT, cosigner=Cosigner("w", SigningKey.generate()), timestamp=timestamp)


def test_cosigned_note_still_verifies_as_the_logs_and_lists_each_witness() -> None:
    """A log's checkpoint with two cosignatures and a stranger's: the log signature verifies
    with the log key alone (witness lines are ignored), each witness's line verifies, the
    stranger's is ignored, and a bad line by a known witness rejects the note."""
    log_key = SigningKey.generate()
    note = sign_checkpoint(CHECKPOINT, signing_key=log_key)
    witnesses = [Cosigner(f"w{i}.example", SigningKey.generate()) for i in range(3)]
    lines = [w.cosign(CHECKPOINT, timestamp=1000 + i) for i, w in enumerate(witnesses)]
    cosigned = add_signature_lines(note, lines)
    log = verifier_for(CHECKPOINT.origin, log_key.public_key.raw)
    assert verify_checkpoint(cosigned, verifier=log, origin=CHECKPOINT.origin) == CHECKPOINT
    assert len(open_note(cosigned, [log]).unverified) == 3
    checkpoint, found = cosignatures_in(cosigned, [w.verifier for w in witnesses[:2]])
    assert checkpoint == CHECKPOINT
    assert [(f.verifier.name, f.timestamp) for f in found] == [("w0.example", 1000), ("w1.example", 1001)]
    assert [f.line for f in found] == lines[:2]
    bad = lines[1][:-6] + ("AAAA==" if not lines[1].endswith("AAAA==") else "BBBB==")
    with pytest.raises((InvalidNoteSignature, MalformedNote)):
        cosignatures_in(add_signature_lines(note, [lines[0], bad]), [w.verifier for w in witnesses])


@settings(max_examples=60, deadline=None)
@given(
    origin=st.from_regex(r"[a-z][a-z0-9./-]{0,40}", fullmatch=True),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    timestamp=st.integers(0, 2**63 - 1),
    name=st.from_regex(r"[a-z][a-z0-9./-]{0,30}", fullmatch=True),
)
def test_every_cosignature_verifies_and_its_line_round_trips(origin: str, size: int, root: bytes, timestamp: int, name: str) -> None:
    checkpoint = Checkpoint(origin, size, root)
    cosigner = Cosigner(name, SigningKey(bytes(32)))
    line = cosigner.cosign(checkpoint, timestamp=timestamp)
    assert verify_cosignature(checkpoint, line, CosignerVerifier.parse(cosigner.verifier.vkey)) == timestamp
    note = add_signature_lines(sign_checkpoint(checkpoint, signing_key=SigningKey(bytes([1]) * 32)), [line])
    _, found = cosignatures_in(note, [cosigner.verifier])
    assert [f.line for f in found] == [line]
