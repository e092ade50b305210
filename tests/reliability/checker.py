"""The T1 checker (TESTPLAN T1): what the clients were told against what the log holds.

Pure analysis, no server, no database: :func:`analyse` takes every entry the clients sent (with
what each attempt came to), the final log as ``(index, id, leaf hash)`` rows, every signed
checkpoint the clients saw and the final one, and counts what would break a promise:

- ``lost``: an acknowledged entry (``201``/``200`` with its index and leaf hash, or ``202``
  queued) that is not in the log exactly once, or not at its acknowledged index and leaf hash;
- ``dup``: an entry id present more than once (whatever its outcome: an unknown-outcome request
  may be present 0 or 1 times, never 2);
- ``gaps``: indices missing from, or repeated in, ``0..n-1``;
- ``forks``: a checkpoint seen that is not consistent with the final one (its signature does not
  verify, it is larger, or its root is not a prefix of the final tree by an RFC 9162 consistency
  proof built from the final log's leaf hashes and checked with ``ledger.merkle``), or a final
  checkpoint whose root is not the tree hash of the final log;
- ``phantom``: an entry refused (4xx) or never delivered (connection refused) that is present;
- ``bad_proofs``: an acknowledgement whose tlog proof does not verify for its leaf hash.

Negative controls for every figure are in test_checker.py: a checker that never fires proves
nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import LedgerError
from ledger.merkle import Frontier, NodeId, build_proof, consistency_plan, verify_consistency
from ledger.notes import NoteVerifier, TlogProof, verify_checkpoint

__all__ = ["Sent", "LogRow", "Findings", "analyse", "LocalTree"]

# What one entry came to, over all its attempts: acknowledged (sealed: index and leaf hash
# known; or queued: 202, id only), refused with a 4xx, unknown (a timeout, a dropped
# connection or a 5xx, and no acknowledgement on a retry) or never sent (every attempt found
# the port closed).
OUTCOMES = ("sealed", "queued", "refused", "unknown", "not_sent")


@dataclass(frozen=True, slots=True)
class Sent:
    """One entry a client sent, with what it finally came to (``OUTCOMES``)."""

    id: str
    outcome: str
    index: int | None = None
    leaf_hash: str | None = None
    tlog_proof: str | None = None
    client: int = 0

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if (self.outcome == "sealed") != (self.index is not None and self.leaf_hash is not None):
            raise ValueError("a sealed acknowledgement, and only one, carries index and leaf hash")


@dataclass(frozen=True, slots=True)
class LogRow:
    index: int
    id: str
    leaf_hash: str


@dataclass
class Findings:
    entries_sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    log_entries: int = 0
    checkpoints_seen: int = 0
    lost: int = 0
    dup: int = 0
    gaps: int = 0
    forks: int = 0
    phantom: int = 0
    bad_proofs: int = 0
    unknown_present: int = 0
    unknown_absent: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.dup or self.gaps or self.forks or self.phantom or self.bad_proofs)

    def note(self, figure: str, text: str) -> None:
        # A few examples per figure, enough to start looking; the counts are the result.
        got = self.examples.setdefault(figure, [])
        if len(got) < 5:
            got.append(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "entries_sent": self.entries_sent,
            "outcomes": self.outcomes,
            "log_entries": self.log_entries,
            "checkpoints_seen": self.checkpoints_seen,
            "lost": self.lost,
            "dup": self.dup,
            "gaps": self.gaps,
            "forks": self.forks,
            "phantom": self.phantom,
            "bad_proofs": self.bad_proofs,
            "unknown_present": self.unknown_present,
            "unknown_absent": self.unknown_absent,
            "examples": self.examples,
        }


class LocalTree:
    """The RFC 9162 tree of the final log, built here from its leaf hashes: the roots at
    every size and the nodes any consistency proof needs. Independent of the server."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        frontier = Frontier(0, [])
        self.nodes: dict[NodeId, bytes] = {}
        self.roots: list[bytes] = [b""]  # roots[n]: the tree hash of the first n leaves
        for leaf in leaf_hashes:
            self.nodes.update(frontier.append(leaf))
            self.roots.append(frontier.root())

    @property
    def size(self) -> int:
        return len(self.roots) - 1

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return build_proof(consistency_plan(old_size=old_size, new_size=new_size), self.nodes)


def analyse(
    sent: Iterable[Sent],
    log: Sequence[LogRow],
    *,
    checkpoints: Iterable[str],
    final_checkpoint: str,
    verifier: NoteVerifier,
    origin: str,
    ours: set[str] | None = None,
) -> Findings:
    """Count lost, dup, gaps, forks, phantom and bad proofs (module docstring).

    ``ours``: ids the harness itself wrote (genesis, registrations): expected once, never
    counted as sent by a client."""
    f = Findings()
    sent = list(sent)
    f.entries_sent = len(sent)
    f.outcomes = dict(Counter(s.outcome for s in sent))
    f.log_entries = len(log)

    # Indices: exactly 0..n-1, each once. A gap is an index below the highest that is missing,
    # or one more copy of an index.
    counts = Counter(r.index for r in log)
    top = max(counts, default=-1) + 1
    missing = set(range(top)) - set(counts)
    repeated = sorted(i for i, c in counts.items() if c > 1)
    f.gaps = len(missing) + sum(counts[i] - 1 for i in repeated)
    for i in sorted(missing)[:5]:
        f.note("gaps", f"index {i} missing")
    for i in repeated[:5]:
        f.note("gaps", f"index {i} present {counts[i]} times")

    by_id: dict[str, list[LogRow]] = {}
    for r in log:
        by_id.setdefault(r.id, []).append(r)
    for entry_id, rows in by_id.items():
        if len(rows) > 1:
            f.dup += len(rows) - 1
            f.note("dup", f"{entry_id} at {[r.index for r in rows]}")

    for s in sent:
        rows = by_id.get(s.id, [])
        if s.outcome == "sealed":
            if len(rows) != 1 or rows[0].index != s.index or rows[0].leaf_hash != s.leaf_hash:
                f.lost += 1
                f.note("lost", f"{s.id} acknowledged at {s.index}, found at {[r.index for r in rows]}")
        elif s.outcome == "queued":
            if len(rows) != 1:
                f.lost += 1
                f.note("lost", f"{s.id} queued (202), found {len(rows)} times")
        elif s.outcome in ("refused", "not_sent"):
            if rows:
                f.phantom += 1
                f.note("phantom", f"{s.id} {s.outcome}, found at {[r.index for r in rows]}")
        elif rows:
            f.unknown_present += 1
        else:
            f.unknown_absent += 1

    # Proofs of acknowledgement: each verifies for its leaf hash (merge delay 0).
    for s in sent:
        if s.outcome != "sealed":
            continue
        assert s.leaf_hash is not None
        try:
            if s.tlog_proof is None:
                raise ValueError("no tlog proof")
            proof = TlogProof.parse(s.tlog_proof)
            if proof.index != s.index:
                raise ValueError(f"proof index {proof.index}")
            proof.verify(leaf_hash=bytes.fromhex(s.leaf_hash), verifier=verifier, origin=origin)
        except (LedgerError, ValueError) as exc:
            f.bad_proofs += 1
            f.note("bad_proofs", f"{s.id}: {exc}")

    # Forks: the final checkpoint is the tree hash of the log as stored, and every checkpoint
    # seen is a prefix of that tree (so of the final checkpoint, when it is).
    tree = LocalTree([bytes.fromhex(r.leaf_hash) for r in sorted(log, key=lambda r: r.index)])
    stored_root = tree.roots[tree.size] if tree.size else b""
    try:
        final = verify_checkpoint(final_checkpoint, verifier=verifier, origin=origin)
        if final.tree_size != tree.size or final.root != stored_root:
            raise ValueError(f"size {final.tree_size} is not the tree hash of the {tree.size} stored entries")
    except (LedgerError, ValueError) as exc:
        f.forks += 1
        f.note("forks", f"final checkpoint: {exc}")
    seen = set(checkpoints)
    f.checkpoints_seen = len(seen)
    for note in sorted(seen):
        try:
            cp = verify_checkpoint(note, verifier=verifier, origin=origin)
            if cp.tree_size > tree.size:
                raise ValueError(f"size {cp.tree_size} beyond the {tree.size} stored entries")
            if cp.tree_size == 0:
                continue
            verify_consistency(
                old_size=cp.tree_size,
                new_size=tree.size,
                proof=tree.consistency(cp.tree_size, tree.size) if cp.tree_size < tree.size else [],
                old_root=cp.root,
                new_root=stored_root,
            )
        except (LedgerError, ValueError) as exc:
            f.forks += 1
            f.note("forks", f"{hashlib.sha256(note.encode()).hexdigest()[:12]}: {exc}")
    if ours is not None:
        absent = ours - set(by_id)
        f.lost += len(absent)
        for entry_id in sorted(absent)[:5]:
            f.note("lost", f"{entry_id} (written by the harness) is missing")
    return f
