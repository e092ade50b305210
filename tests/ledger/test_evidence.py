"""One entry's evidence checked offline (ledger.evidence; TESTPLAN T13).

The named fixtures of tests/fixtures/evidence/ (made by tests/fixtures/gen_evidence.py, their
verdicts in expected.json) each get their verdict from the library; the one case that needs
the ledger's history (an entry signed after its key's revocation) gets it from the chain
check of the ledger's export. Any single changed byte of a valid proof or envelope is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import errors as e
from ledger.bundle import BundleBlock, BundleEntry, read_records
from ledger.entries import parse_envelope
from ledger.evidence import lots_named, verify_evidence
from ledger.keys import SigningKey
from ledger.notes import Checkpoint, NoteVerifier, TlogProof, verifier_for
from ledger.verify import StoredBlock, StoredLeaf, verify_chain

from ..factories import Member, envelope, payload
from ..supply import attestation, handoff, lot, origin, receipt, transform

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "evidence"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
CASES: dict[str, dict[str, Any]] = {f["name"]: f for f in EXPECTED["fixtures"]}
VERIFIER = NoteVerifier.parse((FIXTURES / "verifier.vkey").read_text(encoding="ascii").strip())

# TESTPLAN T13, case by case: the fixture that plays it.
T13 = {
    "a valid proof for another lot": "another-lot",
    "a proof against an unsigned root": "unsigned-root",
    "a checkpoint by an unknown key": "unknown-key",
    "the right signature on the wrong origin": "wrong-origin",
    "a proof for another tree size": "another-tree-size",
    "a checkpoint root different from the proof root": "checkpoint-root-differs",
    "an entry signed by a key after its revocation": "revoked-key",
    "trailing garbage in a proof": "trailing-garbage",
}


def _files(name: str) -> tuple[bytes, bytes]:
    case = CASES[name]
    return (FIXTURES / case["entry"]).read_bytes(), (FIXTURES / case["proof"]).read_bytes()


def _verdict(entry: bytes | str, proof: bytes | str, **kw: Any) -> str:
    try:
        verify_evidence(entry, proof, verifier=VERIFIER, **kw)
    except e.LedgerError as exc:
        return exc.code
    return "ok"


def test_fixture_table() -> None:
    assert len(CASES) == 13
    assert EXPECTED["verifier_key"] == VERIFIER.vkey and VERIFIER.name == EXPECTED["origin"]
    on_disk = {p.name for p in FIXTURES.iterdir()}
    listed = {f for case in CASES.values() for f in (case["entry"], case["proof"])}
    assert on_disk == listed | {"expected.json", "verifier.vkey", "revoked-key.bundle.ndjson"}
    assert {case["t13"]: name for name, case in CASES.items() if case["t13"]} == T13
    codes = {cls.code for cls in e.all_error_classes()}
    for case in CASES.values():
        assert case["verdict"] == "ok" or case["verdict"] in codes
        assert case["exit"] == (0 if case["verdict"] == "ok" else 1)


def test_every_t13_case_has_its_own_verdict() -> None:
    # Evidence alone cannot see a revocation: that case is named by the ledger's full check.
    verdicts = [
        CASES[name]["verdict"] if CASES[name]["verdict"] != "ok" else CASES[name]["ledger"]["cause"]
        for name in T13.values()
    ]
    assert len(set(verdicts)) == len(T13), verdicts


@pytest.mark.parametrize("name", list(CASES))
def test_fixture_gets_its_verdict(name: str) -> None:
    case = CASES[name]
    entry, proof = _files(name)
    assert _verdict(entry, proof, lot=case["lot"]) == case["verdict"]
    # The same through text and a parsed object: a verdict does not depend on how it is read.
    assert _verdict(entry.decode(), proof.decode(), lot=case["lot"]) == case["verdict"]


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c["verdict"] == "ok"])
def test_valid_evidence_names_the_entry(name: str) -> None:
    case = CASES[name]
    entry, proof = _files(name)
    found = verify_evidence(entry, proof, verifier=VERIFIER, lot=case["lot"], entry_id=case["entry_id"])
    assert (found.entry, found.index, found.tree_size, found.origin) == (
        case["entry_id"], case["index"], case["tree_size"], EXPECTED["origin"],
    )
    assert found.lots == (case["lot"],) and found.type == "origin"
    assert found.leaf_hash == parse_envelope(json.loads(entry), origin=None).leaf_hash
    assert found.to_json()["root"] == found.checkpoint.root.hex()


def test_failures_are_of_their_category() -> None:
    groups = {
        "wrong_subject": e.IntegrityFailure, "invalid_proof": e.InvalidProof,
        "wrong_tree_size": e.InvalidProof, "invalid_note_signature": e.IntegrityFailure,
        "no_trusted_signature": e.IntegrityFailure, "origin_mismatch": e.IntegrityFailure,
        "malformed_proof": e.MalformedInput, "wrong_ledger": e.MalformedInput,
    }
    for name, case in CASES.items():
        if case["verdict"] == "ok":
            continue
        entry, proof = _files(name)
        with pytest.raises(groups[case["verdict"]]) as info:
            verify_evidence(entry, proof, verifier=VERIFIER, lot=case["lot"])
        assert info.value.code == case["verdict"]


def test_formatting_of_the_envelope_does_not_matter() -> None:
    entry, proof = _files("valid")
    obj = json.loads(entry)
    pretty = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    reordered = {"signatures": obj["signatures"], "payload": dict(reversed(list(obj["payload"].items())))}
    for form in (pretty, pretty.encode(), obj, reordered):
        assert verify_evidence(form, proof, verifier=VERIFIER).index == 3


def test_entry_id_asked_for() -> None:
    entry, proof = _files("valid")
    assert _verdict(entry, proof, entry_id=CASES["valid"]["entry_id"]) == "ok"
    other = CASES["revoked-key"]["entry_id"]
    with pytest.raises(e.WrongSubject) as info:
        verify_evidence(entry, proof, verifier=VERIFIER, entry_id=other)
    assert info.value.facts["asked_entry"] == other
    assert info.value.facts["entry"] == CASES["valid"]["entry_id"]


def test_another_key_or_log_name_trusts_nothing() -> None:
    entry, proof = _files("valid")
    impostor = SigningKey(b"\x07" * 32)
    assert _verdict(entry, proof) == "ok"
    with pytest.raises(e.NoTrustedSignature):
        verify_evidence(entry, proof, verifier=verifier_for(EXPECTED["origin"], impostor.public_key.raw))
    # The right key under another log's name: the entry's ledger is checked first.
    with pytest.raises(e.WrongLedger):
        verify_evidence(entry, proof, verifier=verifier_for("other.filiera.example", VERIFIER.public_key))


def test_index_beyond_the_checkpoint_is_another_tree_size() -> None:
    entry, text = _files("valid")
    proof = TlogProof.parse(text.decode())
    for index in (5, 6, 2**62):
        moved = TlogProof(index=index, hashes=proof.hashes, checkpoint=proof.checkpoint).format()
        with pytest.raises(e.WrongTreeSize) as info:
            verify_evidence(entry, moved, verifier=VERIFIER)
        assert (info.value.facts["index"], info.value.facts["tree_size"]) == (index, 5)
    # A neighbouring index with a path of the same length leads elsewhere.
    moved = TlogProof(index=2, hashes=proof.hashes, checkpoint=proof.checkpoint).format()
    assert _verdict(entry, moved) == "invalid_proof"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: t + "\n", id="trailing-newline"),
        pytest.param(lambda t: t + " ", id="trailing-space"),
        pytest.param(lambda t: t + "\x00", id="trailing-nul"),
        pytest.param(lambda t: t + t, id="proof-twice"),
        pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda t: t.replace("index 3\n", "extra AAAA\nindex 3\n"), id="extra-line"),
        pytest.param(lambda t: t.replace("index 3", "index 03"), id="leading-zero"),
        pytest.param(lambda t: " " + t, id="leading-space"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_proof_text_has_one_spelling(change: Any) -> None:
    entry, proof = _files("valid")
    assert _verdict(entry, change(proof.decode())) == "malformed_proof"


def test_proof_that_is_not_utf8() -> None:
    entry, proof = _files("valid")
    assert _verdict(entry, proof + b"\xff") == "malformed_proof"


@pytest.mark.parametrize(
    ("text", "code"),
    [(b"", "malformed_json"), (b"{}", "missing_field"), (b"[1]", "invalid_field"), (b'{"payload": 1, "payload": 2}', "duplicate_key")],
)
def test_envelope_that_is_not_an_entry(text: bytes, code: str) -> None:
    _, proof = _files("valid")
    assert _verdict(text, proof) == code


def test_witness_signatures_are_ignored_but_a_bad_ledger_line_is_not() -> None:
    entry, proof = _files("valid-cosigned")
    text = proof.decode()
    assert "witness.filiera.example" in text and _verdict(entry, text) == "ok"
    # The ledger's own line, changed, refuses the note even beside a good witness line.
    ledger_line = next(ln for ln in text.splitlines() if ln.startswith(f"\u2014 {EXPECTED['origin']} "))
    sig = ledger_line.rsplit(" ", 1)[1]
    bad = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]
    assert _verdict(entry, text.replace(sig, bad)) == "invalid_note_signature"


# --- what each entry type is about ------------------------------------------------------------


def test_lots_named_by_each_entry_type() -> None:
    grove, mill, certifier = Member("grove"), Member("mill"), Member("certifier")
    ho = handoff(grove, mill, ["L1", "L2"])
    cases = {
        "origin": (origin(grove, lot("L1"), lot("L2")), ("L1", "L2")),
        "handoff": (ho, ("L1", "L2")),
        "receipt": (receipt(mill, "a" * 64), ()),
        "transform": (transform(mill, ["L1", "L2"], lot("OIL-1", "oil"), lot("OIL-2", "oil")), ("L1", "L2", "OIL-1", "OIL-2")),
        "attestation of a lot": (attestation(certifier, "L1", ["organic"]), ("L1",)),
        "attestation of an entry": (attestation(certifier, "b" * 64, ["organic"]), ()),
        "participant.update": (envelope(payload("participant.update", "admin", participant="grove", name="Grove"), Member("admin")), ()),
    }
    for what, (env, lots) in cases.items():
        assert lots_named(parse_envelope(env, origin=None)) == lots, what


# --- any single changed byte is refused ---------------------------------------------------------


def _changed(data: bytes, position: int, mask: int) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_changed_byte_of_the_proof_is_refused(data: st.DataObject) -> None:
    entry, proof = _files("valid")
    position = data.draw(st.integers(0, len(proof) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(e.LedgerError):
        verify_evidence(entry, _changed(proof, position, mask), verifier=VERIFIER)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_changed_byte_of_the_envelope_is_refused(data: st.DataObject) -> None:
    # The fixture holds the canonical leaf data: no byte of it is insignificant whitespace.
    entry, proof = _files("valid")
    position = data.draw(st.integers(0, len(entry) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(e.LedgerError):
        verify_evidence(_changed(entry, position, mask), proof, verifier=VERIFIER)


def test_every_byte_of_the_proof_matters_exhaustively_for_one_mask() -> None:
    """Every position, flipping its lowest bit: the full sweep hypothesis samples from."""
    entry, proof = _files("valid")
    for position in range(len(proof)):
        with pytest.raises(e.LedgerError):
            verify_evidence(entry, _changed(proof, position, 1), verifier=VERIFIER)


# --- the revocation is in the ledger's history, not in the evidence -----------------------------


def _bundle_blocks(path: Path) -> list[StoredBlock]:
    blocks: list[StoredBlock] = []
    current: BundleBlock | None = None
    leaves: list[StoredLeaf] = []
    with path.open("rb") as f:
        for record in read_records(f):
            if isinstance(record, BundleEntry):
                leaves.append(StoredLeaf(record.index, record.id, record.leaf_hash, record.leaf_data))
                continue
            if current is not None:
                blocks.append(StoredBlock(dict(current.header), current.hash, current.signature, current.checkpoint, leaves))
                current, leaves = None, []
            if isinstance(record, BundleBlock):
                current = record
    return blocks


def test_revoked_key_entry_fails_the_chain_check_of_the_export() -> None:
    case = CASES["revoked-key"]
    want = case["ledger"]
    blocks = _bundle_blocks(FIXTURES / want["bundle"])
    assert len(blocks) == 7
    with pytest.raises(e.ChainBroken) as info:
        verify_chain(blocks, ledger_key=VERIFIER.public_key)
    got = info.value.facts
    assert (got["reason"], got["cause"], got["height"], got["index"], got["entry"]) == (
        want["reason"], want["cause"], want["height"], want["index"], want["entry"],
    )
    assert want["entry"] == case["entry_id"]
    # Everything before that entry verifies: the export is otherwise a sound ledger.
    report = verify_chain(blocks[:6], ledger_key=VERIFIER.public_key)
    assert (report.tree_size, report.entries) == (9, 9)


def test_the_revoked_key_proof_is_against_the_ledgers_own_checkpoint() -> None:
    """The forged block's checkpoint is the one the export carries: only the rules tell it apart."""
    _, proof = _files("revoked-key")
    checkpoint = TlogProof.parse(proof.decode()).checkpoint
    blocks = _bundle_blocks(FIXTURES / CASES["revoked-key"]["ledger"]["bundle"])
    assert blocks[-1].checkpoint == checkpoint
    assert Checkpoint.parse_body(checkpoint.split("\n\n")[0] + "\n").tree_size == 10


def test_importing_evidence_loads_neither_flask_nor_sqlalchemy() -> None:
    code = (
        "import sys, ledger.evidence; "
        "bad = [m for m in ('flask', 'sqlalchemy', 'werkzeug') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"loaded: {proc.stdout.strip()} {proc.stderr[-500:]}"
