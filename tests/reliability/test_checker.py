"""Negative controls for the T1 checker (TESTPLAN: a checker that never fires proves nothing).

An honest history -- a log of 40 entries, an acknowledgement with a verifying tlog proof for
most of them, checkpoints at several sizes, all signed by the ledger key -- gets every figure
0; then each fault the hammer is meant to catch is put into that history by hand, and the
figure it belongs to (and no other) turns to 1. No server, no database: fast, part of
``make test``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import pytest

from ledger.keys import SigningKey
from ledger.merkle import build_proof, inclusion_plan, leaf_hash
from ledger.notes import Checkpoint, TlogProof, sign_checkpoint, verifier_for

from .checker import Findings, LocalTree, LogRow, Sent, analyse

ORIGIN = "t1.filiera.example"
SIZE = 40
FIGURES = ("lost", "dup", "gaps", "forks", "phantom", "bad_proofs")


@dataclass
class History:
    key: SigningKey
    log: list[LogRow]
    sent: list[Sent]
    checkpoints: list[str]
    final: str

    def analyse(self, **changes: object) -> Findings:
        h = replace(self, **changes)  # type: ignore[arg-type]
        return analyse(
            h.sent, h.log, checkpoints=h.checkpoints, final_checkpoint=h.final,
            verifier=verifier_for(ORIGIN, self.key.public_key.raw), origin=ORIGIN,
        )


def _checkpoint(key: SigningKey, tree: LocalTree, size: int, root: bytes | None = None) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root or tree.roots[size]), signing_key=key)


def _history() -> History:
    key = SigningKey(hashlib.sha256(b"t1 checker ledger key").digest())
    ids = [hashlib.sha256(f"entry {i}".encode()).hexdigest() for i in range(SIZE)]
    leaves = [leaf_hash(f"leaf data {i}".encode()) for i in range(SIZE)]
    tree = LocalTree(leaves)
    log = [LogRow(i, ids[i], leaves[i].hex()) for i in range(SIZE)]
    sent: list[Sent] = []
    for i in range(1, SIZE):
        # Each acknowledgement proves inclusion in the checkpoint of the block that sealed it
        # (here: the tree just after it).
        note = _checkpoint(key, tree, i + 1)
        proof = TlogProof(i, tuple(build_proof(inclusion_plan(index=i, tree_size=i + 1), tree.nodes)), note).format()
        outcome = "queued" if i % 10 == 0 else "sealed"
        if outcome == "sealed":
            sent.append(Sent(ids[i], "sealed", i, leaves[i].hex(), proof))
        else:
            sent.append(Sent(ids[i], "queued"))
    # Unknown outcomes: one that made it into the log, one that did not.
    sent[5] = Sent(ids[6], "unknown")
    sent.append(Sent(hashlib.sha256(b"never sealed").hexdigest(), "unknown"))
    sent.append(Sent(hashlib.sha256(b"refused").hexdigest(), "refused"))
    sent.append(Sent(hashlib.sha256(b"port closed").hexdigest(), "not_sent"))
    checkpoints = [_checkpoint(key, tree, n) for n in (1, 2, 7, 8, 16, 31, SIZE)]
    return History(key, log, sent, checkpoints, _checkpoint(key, tree, SIZE))


def _figures(f: Findings) -> dict[str, int]:
    return {k: getattr(f, k) for k in FIGURES}


def _only(f: Findings, figure: str, count: int = 1) -> None:
    expected = dict.fromkeys(FIGURES, 0)
    expected[figure] = count
    assert _figures(f) == expected, f.examples


def test_an_honest_history_is_green() -> None:
    h = _history()
    f = h.analyse()
    assert _figures(f) == dict.fromkeys(FIGURES, 0), f.examples
    assert f.ok
    # What was checked, so a history that checks nothing cannot pass as green.
    assert f.outcomes == {"sealed": 35, "queued": 3, "unknown": 2, "refused": 1, "not_sent": 1}
    assert (f.log_entries, f.checkpoints_seen, f.unknown_present, f.unknown_absent) == (SIZE, 7, 1, 1)


def test_an_acknowledged_entry_missing_from_the_log_is_lost() -> None:
    h = _history()
    fabricated = Sent(hashlib.sha256(b"fabricated").hexdigest(), "sealed", 12, leaf_hash(b"x").hex(), h.sent[11].tlog_proof)
    f = h.analyse(sent=[*h.sent, fabricated])
    # Its proof is another entry's, so it is also a bad proof: both figures fire.
    assert (f.lost, f.bad_proofs, f.dup, f.gaps, f.forks, f.phantom) == (1, 1, 0, 0, 0, 0)


def test_an_entry_acknowledged_at_another_index_is_lost() -> None:
    h = _history()
    sealed = [s for s in h.sent if s.outcome == "sealed"]
    row = h.log[sealed[3].index]  # type: ignore[index]
    # The log holds entry A where B was acknowledged, and B where A was: both moved.
    a, b = h.log[row.index], h.log[row.index + 1]
    swapped = list(h.log)
    swapped[a.index] = LogRow(a.index, b.id, b.leaf_hash)
    swapped[b.index] = LogRow(b.index, a.id, a.leaf_hash)
    f = h.analyse(log=swapped)
    # The roots change with the order, so every checkpoint past the swap is a fork too.
    assert (f.lost, f.dup, f.gaps, f.phantom) == (2, 0, 0, 0)
    assert f.forks > 0


def test_a_queued_entry_never_sealed_is_lost() -> None:
    h = _history()
    queued = Sent(hashlib.sha256(b"queued, then dropped").hexdigest(), "queued")
    _only(h.analyse(sent=[*h.sent, queued]), "lost")


def test_a_duplicated_row_is_dup() -> None:
    h = _history()
    last = h.log[-1]
    again = LogRow(SIZE, h.log[7].id, h.log[7].leaf_hash)
    f = h.analyse(log=[*h.log, again])
    # The copy sits at the next index, so the indices stay contiguous; the acknowledged
    # entry is now present twice (lost: not exactly once), and the final checkpoint no longer
    # covers the log (a fork).
    assert (f.dup, f.gaps, f.lost, f.forks) == (1, 0, 1, 1), f.examples
    assert last.index == SIZE - 1


def test_an_unknown_outcome_present_twice_is_dup() -> None:
    h = _history()
    unknown = next(s for s in h.sent if s.outcome == "unknown" and s.id in {r.id for r in h.log})
    row = next(r for r in h.log if r.id == unknown.id)
    f = h.analyse(log=[*h.log, LogRow(SIZE, row.id, row.leaf_hash)])
    assert (f.dup, f.gaps, f.lost) == (1, 0, 0)


def test_a_missing_index_is_a_gap() -> None:
    h = _history()
    unacknowledged = 0  # genesis: no client acknowledgement names it
    f = h.analyse(log=[r for r in h.log if r.index != unacknowledged])
    # The stored tree is then another tree: no checkpoint is a prefix of it.
    assert (f.gaps, f.lost, f.dup, f.phantom, f.bad_proofs) == (1, 0, 0, 0, 0)
    assert f.forks == 1 + len(h.checkpoints)


def test_a_repeated_index_is_a_gap() -> None:
    h = _history()
    clash = LogRow(3, hashlib.sha256(b"other").hexdigest(), leaf_hash(b"other").hex())
    f = h.analyse(log=[*h.log, clash])
    # The extra row, read back after index 3, also makes another tree: the final checkpoint
    # (size 40) and the five checkpoints seen past size 4 (7, 8, 16, 31, 40) are not its prefix.
    assert (f.gaps, f.dup, f.lost, f.phantom, f.bad_proofs, f.forks) == (1, 0, 0, 0, 0, 6)


@pytest.mark.parametrize("case", ["other-root", "beyond-final", "foreign-key", "final-not-the-log"])
def test_a_checkpoint_off_the_final_tree_is_a_fork(case: str) -> None:
    h = _history()
    tree = LocalTree([bytes.fromhex(r.leaf_hash) for r in h.log])
    if case == "other-root":
        forked = _checkpoint(h.key, tree, 16, root=hashlib.sha256(b"another history").digest())
        _only(h.analyse(checkpoints=[*h.checkpoints, forked]), "forks")
    elif case == "beyond-final":
        longer = LocalTree([*(bytes.fromhex(r.leaf_hash) for r in h.log), leaf_hash(b"one more")])
        _only(h.analyse(checkpoints=[*h.checkpoints, _checkpoint(h.key, longer, SIZE + 1)]), "forks")
    elif case == "foreign-key":
        other = SigningKey(hashlib.sha256(b"not the ledger").digest())
        _only(h.analyse(checkpoints=[*h.checkpoints, _checkpoint(other, tree, 8)]), "forks")
    else:
        final = _checkpoint(h.key, tree, SIZE, root=hashlib.sha256(b"not this log").digest())
        f = h.analyse(final=final)
        # The final checkpoint is not the stored log's tree hash (the checkpoints seen are
        # checked against the stored tree, and they are prefixes of it).
        _only(f, "forks")


def test_a_refused_entry_in_the_log_is_a_phantom() -> None:
    h = _history()
    refused = [replace(s, outcome="refused") if s.outcome == "queued" and s is h.sent[19] else s for s in h.sent]
    assert refused != h.sent
    _only(h.analyse(sent=refused), "phantom")


def test_an_acknowledgement_whose_proof_fails_is_a_bad_proof() -> None:
    h = _history()
    i = next(n for n, s in enumerate(h.sent) if s.outcome == "sealed" and s.index and s.index > 4)
    s = h.sent[i]
    assert s.tlog_proof is not None
    proof = TlogProof.parse(s.tlog_proof)
    flipped = bytes([proof.hashes[0][0] ^ 1]) + proof.hashes[0][1:]
    bad = replace(proof, hashes=(flipped, *proof.hashes[1:])).format()
    _only(h.analyse(sent=[*h.sent[:i], replace(s, tlog_proof=bad), *h.sent[i + 1 :]]), "bad_proofs")


def test_the_harness_entries_must_be_present() -> None:
    h = _history()
    f = analyse(
        h.sent, h.log, checkpoints=h.checkpoints, final_checkpoint=h.final,
        verifier=verifier_for(ORIGIN, h.key.public_key.raw), origin=ORIGIN,
        ours={h.log[0].id, hashlib.sha256(b"registration never written").hexdigest()},
    )
    _only(f, "lost")
