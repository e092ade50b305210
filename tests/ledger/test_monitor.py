"""The checkpoint monitor's decision (ledger.monitor; TESTPLAN T10, library level).

Trees are built in memory with ledger.merkle and their checkpoints signed with ledger.notes,
as a ledger (or a forger holding its key) would. A fork is two histories that share a prefix
and then differ, both signed with the same key; the monitor follows one and is then served
the other. Every fork must be caught with both signed checkpoints as evidence, and honest
growth must never raise.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Sequence

import pytest

from ledger.encoding import b64
from ledger.errors import (
    InvalidField,
    InvalidNoteSignature,
    LedgerError,
    MalformedProof,
    NoTrustedSignature,
    OriginMismatch,
    Rollback,
    SplitView,
    Unavailable,
)
from ledger.keys import SigningKey
from ledger.merkle import EMPTY_ROOT, Frontier, NodeId, build_proof, consistency_plan, leaf_hash
from ledger.monitor import (
    EVIDENCE_FORMAT,
    ConsistencyProof,
    MonitorState,
    Outcome,
    check,
    evidence_of,
    verify_evidence,
)
from ledger.notes import (
    COSIGNATURE_V1_TYPE,
    Checkpoint,
    add_signature_lines,
    note_key_id,
    sign_checkpoint,
    sign_note,
    verifier_for,
    verify_checkpoint,
)

ORIGIN = "monitor.filiera.example"
RUNS = 100


class Log:
    """One history: its leaves, every stored node, the root at every size, signed on demand."""

    def __init__(self, key: SigningKey, leaves: Sequence[bytes] = ()) -> None:
        self.key = key
        self.nodes: dict[NodeId, bytes] = {}
        self.roots = [EMPTY_ROOT]
        self.frontier = Frontier(0, [])
        self.leaves: list[bytes] = []
        self.extend(leaves)

    def extend(self, leaves: Sequence[bytes]) -> None:
        for data in leaves:
            self.leaves.append(data)
            for node, value in self.frontier.append(leaf_hash(data)):
                self.nodes[node] = value
            self.roots.append(self.frontier.root())

    def fork(self, size: int) -> Log:
        """A copy of the first ``size`` leaves (the database copied at that size)."""
        return Log(self.key, self.leaves[:size])

    @property
    def size(self) -> int:
        return len(self.leaves)

    def note(self, size: int | None = None) -> str:
        n = self.size if size is None else size
        return sign_checkpoint(Checkpoint(ORIGIN, n, self.roots[n]), signing_key=self.key)

    def prove(self, old: int, new: int) -> ConsistencyProof:
        """What an honest server holding this history answers."""
        hashes = build_proof(consistency_plan(old_size=old, new_size=new), self.nodes)
        return ConsistencyProof(old, new, tuple(hashes), self.roots[old], self.roots[new])


def vkey(key: SigningKey) -> str:
    return verifier_for(ORIGIN, key.public_key.raw).vkey


def leaves(rng: random.Random, count: int, tag: str) -> list[bytes]:
    return [f"{tag} {rng.getrandbits(64):016x}".encode() for _ in range(count)]


def never(old: int, new: int) -> ConsistencyProof:
    raise AssertionError(f"no proof should be needed ({old} -> {new})")


def witness_lines(body: str) -> list[str]:
    """Two signature lines by keys the monitor does not know: an Ed25519 note signature and a
    tlog-cosignature/v1-shaped one, as a witness appends them."""
    witness = SigningKey.generate()
    ed25519 = sign_note(body, name="witness.example/w1", signing_key=witness).splitlines()[-1]
    key_id = note_key_id("witness.example/w2", witness.public_key.raw, key_type=COSIGNATURE_V1_TYPE)
    cosignature = b64(key_id + (1_700_000_000).to_bytes(8, "big") + bytes(64))
    return [ed25519, f"\u2014 witness.example/w2 {cosignature}"]


# --- T10: forks caught, honest growth passes ------------------------------------------------


def test_every_forged_fork_is_detected() -> None:
    detected = {"same_size": 0, "not_consistent": 0, "smaller_size": 0}
    for seed in range(RUNS):
        rng = random.Random(seed)
        key = SigningKey.generate()
        split_at = rng.randint(1, 120)
        honest = Log(key, leaves(rng, split_at, "common"))
        forged = honest.fork(split_at)
        honest.extend(leaves(rng, rng.randint(2, 60), "honest"))
        forged.extend(leaves(rng, honest.size - split_at + rng.randint(1, 60), "forged"))
        # The monitor pins some checkpoint of the honest history and follows it past the fork
        # point to its end; it is then served a checkpoint of the forged history (and that
        # server's proofs) past the fork point: smaller, of the same size, or larger.
        state = MonitorState.pin(honest.note(rng.randint(1, split_at)), verifier_key=vkey(key), source="honest")
        for size in sorted(rng.sample(range(split_at + 1, honest.size), k=min(3, honest.size - split_at - 1))):
            state = check(state, honest.note(size), honest.prove, source="honest").state
        state = check(state, honest.note(), honest.prove, source="honest").state
        seen = state.current.tree_size
        shown = [rng.randint(split_at + 1, seen - 1), seen, rng.randint(seen + 1, forged.size)][seed % 3]
        forged_note = forged.note(shown)
        with pytest.raises((SplitView, Rollback)) as caught:
            check(state, forged_note, forged.prove, source="forger")
        error = caught.value
        reason = "smaller_size" if shown < seen else "same_size" if shown == seen else "not_consistent"
        assert (error.code, error.facts["reason"]) == (
            "rollback" if reason == "smaller_size" else "split_view",
            reason,
        ), f"seed {seed}"
        evidence = evidence_of(error)
        assert evidence is not None
        assert evidence["previous"]["note"] == state.checkpoint
        assert evidence["current"]["note"] == forged_note
        assert (evidence["previous"]["source"], evidence["current"]["source"]) == ("honest", "forger")
        checked = verify_evidence(json.loads(json.dumps(evidence)), verifier_key=vkey(key))
        assert checked.reason == reason
        detected[reason] += 1
    assert sum(detected.values()) == RUNS
    # The sizes drawn reach all three cases, so each path is exercised many times.
    assert min(detected.values()) >= 10, detected


def test_honest_growth_never_raises() -> None:
    steps = {Outcome.ADVANCED: 0, Outcome.SAME: 0}
    for seed in range(RUNS):
        rng = random.Random(1000 + seed)
        log = Log(SigningKey.generate(), leaves(rng, rng.randint(1, 20), "start"))
        state = MonitorState.pin(log.note(), verifier_key=vkey(log.key))
        asked: list[tuple[int, int]] = []

        def prove(old: int, new: int) -> ConsistencyProof:
            asked.append((old, new))
            return log.prove(old, new)

        for _ in range(rng.randint(1, 12)):
            growth = rng.choice([0, 0, 1, 2, rng.randint(3, 200)])
            log.extend(leaves(rng, growth, "more"))
            note = log.note()
            if rng.random() < 0.3:
                note = add_signature_lines(note, witness_lines(Checkpoint(ORIGIN, log.size, log.roots[-1]).body()))
            step = check(state, note, prove)
            assert step.outcome == (Outcome.ADVANCED if growth else Outcome.SAME), f"seed {1000 + seed}"
            assert (step.previous.tree_size, step.current.tree_size) == (state.current.tree_size, log.size)
            steps[step.outcome] += 1
            state = step.state
            assert state.checkpoint == note
        assert state.current.tree_size == log.size
        assert all(old < new for old, new in asked)
    assert steps[Outcome.ADVANCED] > 100 and steps[Outcome.SAME] > 50


# --- the state -------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    log = Log(SigningKey.generate(), [b"a", b"b", b"c"])
    state = MonitorState.pin(log.note(), verifier_key=vkey(log.key), source="https://ledger.example")
    doc = json.loads(json.dumps(state.to_json()))
    assert doc["tree_size"] == 3 and doc["root"] == log.roots[3].hex() and doc["origin"] == ORIGIN
    assert MonitorState.from_json(doc) == state


@pytest.mark.parametrize(
    "edit, error",
    [
        (lambda d: d.update(tree_size=4), InvalidField),
        (lambda d: d.update(format="filiera-monitor-state/v0"), InvalidField),
        (lambda d: d.pop("checkpoint"), LedgerError),
        (lambda d: d.update(verifier_key=vkey(SigningKey.generate())), NoTrustedSignature),
        (lambda d: d.update(origin="other.example"), OriginMismatch),
    ],
    ids=["summary-edited", "wrong-format", "no-checkpoint", "other-key", "other-origin"],
)
def test_a_damaged_state_is_refused(edit: Callable[[dict[str, object]], object], error: type[LedgerError]) -> None:
    log = Log(SigningKey.generate(), [b"a", b"b"])
    doc = MonitorState.pin(log.note(), verifier_key=vkey(log.key)).to_json()
    edit(doc)
    with pytest.raises(error):
        MonitorState.from_json(doc)


# --- checkpoints that are not the pinned ledger's --------------------------------------------


def _pinned() -> tuple[Log, MonitorState]:
    log = Log(SigningKey.generate(), [b"a", b"b", b"c"])
    return log, MonitorState.pin(log.note(), verifier_key=vkey(log.key))


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    log, state = _pinned()
    stranger = Log(SigningKey.generate(), log.leaves + [b"d"])
    with pytest.raises(NoTrustedSignature):
        check(state, stranger.note(), stranger.prove)


def test_a_forged_signature_under_the_pinned_key_id_is_refused() -> None:
    log, state = _pinned()
    log.extend([b"d"])
    note = log.note()
    text, _, line = note[:-1].rpartition("\n")
    name, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded, validate=True))
    raw[-1] ^= 1
    with pytest.raises(InvalidNoteSignature):
        check(state, f"{text}\n{name} {b64(bytes(raw))}\n", log.prove)


def test_a_checkpoint_for_another_origin_is_refused() -> None:
    log, state = _pinned()
    body = Checkpoint("other.filiera.example", 3, log.roots[3]).body()
    with pytest.raises(OriginMismatch):
        check(state, sign_note(body, name=ORIGIN, signing_key=log.key), never)


def test_witness_cosignatures_are_ignored() -> None:
    log, state = _pinned()
    note = add_signature_lines(log.note(), witness_lines(Checkpoint(ORIGIN, 3, log.roots[3]).body()))
    step = check(state, note, never)
    assert step.outcome == Outcome.SAME and step.state.checkpoint == note


# --- proofs ----------------------------------------------------------------------------------


def test_a_failing_proof_is_a_split_view_with_the_proof_as_evidence() -> None:
    log, state = _pinned()
    log.extend([b"d", b"e"])

    def flipped(old: int, new: int) -> ConsistencyProof:
        proof = log.prove(old, new)
        first = bytes([proof.hashes[0][0] ^ 1]) + proof.hashes[0][1:]
        return ConsistencyProof(old, new, (first, *proof.hashes[1:]))

    with pytest.raises(SplitView) as caught:
        check(state, log.note(), flipped)
    evidence = evidence_of(caught.value)
    assert evidence is not None and evidence["reason"] == "not_consistent"
    assert evidence["consistency_proof"]["from"] == 3 and evidence["consistency_proof"]["to"] == 5
    assert evidence["proof_failure"]
    assert verify_evidence(evidence).proof == flipped(3, 5)
    # The honest proof of the same checkpoints verifies, so this evidence alone is weaker
    # than two notes of one size: verify_evidence says so when handed the honest proof.
    honest = dict(evidence, consistency_proof=log.prove(3, 5).to_json())
    with pytest.raises(InvalidField):
        verify_evidence(honest)


def test_an_unreachable_prover_leaves_the_state_as_it_was() -> None:
    log, state = _pinned()
    log.extend([b"d"])

    def down(old: int, new: int) -> ConsistencyProof:
        raise Unavailable("connection refused")

    with pytest.raises(Unavailable):
        check(state, log.note(), down)
    assert state.current.tree_size == 3


def test_a_proof_for_other_sizes_is_malformed_not_a_fork() -> None:
    log, state = _pinned()
    log.extend([b"d", b"e"])
    with pytest.raises(MalformedProof):
        check(state, log.note(), lambda old, new: log.prove(old, new - 1))


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"from": 1, "to": 2},
        {"from": 2, "to": 1, "hashes": []},
        {"from": -1, "to": 2, "hashes": []},
        {"from": True, "to": 2, "hashes": []},
        {"from": 1, "to": 2, "hashes": ["AB" * 32]},
        {"from": 1, "to": 2, "hashes": ["ab" * 31]},
        {"from": 1, "to": 2, "hashes": "ab"},
        {"from": 1, "to": 2, "hashes": [], "from_root": "zz"},
        {"from": 1, "to": 2, "hashes": ["ab" * 32] * 127},
    ],
    ids=["not-object", "no-hashes", "backwards", "negative", "bool-size", "upper-hex", "short-hash", "hashes-text", "bad-root", "too-many"],
)
def test_malformed_proof_bodies_are_refused(body: object) -> None:
    with pytest.raises(MalformedProof):
        ConsistencyProof.from_json(body)


def test_proof_body_round_trips() -> None:
    log = Log(SigningKey.generate(), [bytes([i]) for i in range(11)])
    proof = log.prove(4, 11)
    assert ConsistencyProof.from_json(json.loads(json.dumps(proof.to_json()))) == proof


# --- evidence checked offline ----------------------------------------------------------------


def _same_size_evidence() -> tuple[SigningKey, dict[str, object]]:
    key = SigningKey.generate()
    honest, forged = Log(key, [b"a", b"b"]), Log(key, [b"a", b"x"])
    state = MonitorState.pin(honest.note(), verifier_key=vkey(key))
    with pytest.raises(SplitView) as caught:
        check(state, forged.note(), never)
    evidence = evidence_of(caught.value)
    assert evidence is not None and evidence["format"] == EVIDENCE_FORMAT
    return key, evidence


def test_evidence_notes_verify_with_the_ledger_key_alone() -> None:
    key, evidence = _same_size_evidence()
    verifier = verifier_for(ORIGIN, key.public_key.raw)
    previous = verify_checkpoint(evidence["previous"]["note"], verifier=verifier, origin=ORIGIN)  # type: ignore[index]
    current = verify_checkpoint(evidence["current"]["note"], verifier=verifier, origin=ORIGIN)  # type: ignore[index]
    assert previous.tree_size == current.tree_size == 2 and previous.root != current.root


@pytest.mark.parametrize(
    "doctor",
    [
        lambda e, k: e.update(current=e["previous"]),
        lambda e, k: e.update(reason="smaller_size"),
        lambda e, k: e.update(reason="not_consistent"),
        lambda e, k: e.update(reason="no_reason"),
        lambda e, k: e.update(format="something/v1"),
        lambda e, k: e.pop("previous"),
    ],
    ids=["same-note-twice", "wrong-reason-rollback", "wrong-reason-proof", "unknown-reason", "wrong-format", "missing-note"],
)
def test_doctored_evidence_does_not_hold(doctor: Callable[[dict[str, object], SigningKey], object]) -> None:
    key, evidence = _same_size_evidence()
    doctor(evidence, key)
    with pytest.raises(LedgerError):
        verify_evidence(evidence)


def test_evidence_under_another_key_than_the_trusted_one_is_refused() -> None:
    _, evidence = _same_size_evidence()
    with pytest.raises(InvalidField):
        verify_evidence(evidence, verifier_key=vkey(SigningKey.generate()))
