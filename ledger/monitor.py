"""Checkpoint monitoring: follow one log's signed checkpoints and catch forks and rollbacks.

A monitor pins the ledger's C2SP note verifier key and the last signed checkpoint it verified
(PROTOCOL §5, ``c2sp.org/tlog-checkpoint``). Every checkpoint it fetches later must be signed by
that key for the same origin and extend the pinned one: equal size and root, or a larger size
with an RFC 9162 §2.1.4.2 consistency proof from the pinned tree to the new one. Anything else
is raised with *evidence*: both signed checkpoints (and the proof that failed), which anyone
holding the verifier key can check offline (:func:`verify_evidence`).

* same size, other root, or a proof that fails: :class:`~ledger.errors.SplitView`;
* a smaller size: :class:`~ledger.errors.Rollback` (a truncated log, a restored backup or a
  stale copy: two signed notes cannot say which, so it is reported, never ignored);
* a note not signed by the pinned key, or for another origin: the errors of
  :func:`ledger.notes.verify_checkpoint`; such a note is no evidence against the ledger.

Signature lines by other keys (witness cosignatures) are ignored, never refused. Everything
here is pure: the caller fetches checkpoints and proofs (``filiera monitor``,
``api/commands/monitor.py``), stores the state and keeps the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from .encoding import unhex32
from .errors import (
    InvalidField,
    InvalidProof,
    LedgerError,
    MalformedProof,
    MissingField,
    Rollback,
    SplitView,
)
from .merkle import verify_consistency
from .notes import Checkpoint, NoteVerifier, verify_checkpoint

__all__ = [
    "STATE_FORMAT",
    "EVIDENCE_FORMAT",
    "Outcome",
    "ConsistencyProof",
    "ProofSource",
    "MonitorState",
    "Step",
    "Evidence",
    "check",
    "verify_evidence",
    "evidence_of",
]

STATE_FORMAT = "filiera-monitor-state/v1"
EVIDENCE_FORMAT = "filiera-monitor-evidence/v1"

# A consistency proof between trees of fewer than 2^63 leaves has at most 2 * 63 hashes.
_MAX_PROOF_HASHES = 126
_MAX_TREE_SIZE = 2**63 - 1


class Outcome(StrEnum):
    """What one verified checkpoint did to the state."""

    ADVANCED = "advanced"  # a larger tree, proven to extend the pinned one
    SAME = "same"  # the same tree (the note may carry other cosignatures)


def _size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TREE_SIZE:
        raise MalformedProof(f"{what} must be a tree size in [0, 2^63 - 1]", field=what)
    return value


def _hash(value: object, what: str) -> bytes:
    try:
        return unhex32(value, field=what)
    except InvalidField as exc:
        raise MalformedProof(f"{what} must be 64 lowercase hex digits", field=what) from exc


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """An RFC 9162 consistency proof as a log served it, not yet verified.

    ``old_root`` and ``new_root`` are the roots the server says the proof joins (the API's
    ``from_root`` and ``to_root``); they are kept as evidence only and never trusted.
    Construction raises MalformedProof unless sizes are in [0, 2^63 - 1], old <= new, and
    every hash is 32 bytes (at most 126 of them).
    """

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]
    old_root: bytes | None = None
    new_root: bytes | None = None

    def __post_init__(self) -> None:
        _size(self.old_size, "from")
        _size(self.new_size, "to")
        if self.old_size > self.new_size:
            raise MalformedProof("a consistency proof goes from a smaller size to a larger one")
        if not isinstance(self.hashes, tuple) or len(self.hashes) > _MAX_PROOF_HASHES:
            raise MalformedProof(
                f"a consistency proof is a tuple of at most {_MAX_PROOF_HASHES} hashes",
                field="hashes",
            )
        served = [root for root in (self.old_root, self.new_root) if root is not None]
        for node in (*self.hashes, *served):
            if not isinstance(node, bytes) or len(node) != 32:
                raise MalformedProof("consistency proof hashes are 32 bytes", field="hashes")

    def to_json(self) -> dict[str, Any]:
        """The API's shape: ``from``, ``to``, hex ``hashes``, and the served roots if any."""
        return {
            "from": self.old_size,
            "to": self.new_size,
            "hashes": [h.hex() for h in self.hashes],
            "from_root": self.old_root.hex() if self.old_root is not None else None,
            "to_root": self.new_root.hex() if self.new_root is not None else None,
        }

    @classmethod
    def from_json(cls, obj: object) -> ConsistencyProof:
        """Parse the body of ``GET /v1/proofs/consistency`` (or of :meth:`to_json`).

        Raises MalformedProof.
        """
        if not isinstance(obj, Mapping):
            raise MalformedProof("a consistency proof is a JSON object")
        for name in ("from", "to", "hashes"):
            if name not in obj:
                raise MalformedProof(f"the consistency proof has no {name!r}", field=name)
        hashes = obj["hashes"]
        if not isinstance(hashes, list) or len(hashes) > _MAX_PROOF_HASHES:
            raise MalformedProof("hashes must be a list of hex hashes", field="hashes")
        roots = {
            name: None if obj.get(name) is None else _hash(obj[name], name)
            for name in ("from_root", "to_root")
        }
        return cls(
            old_size=_size(obj["from"], "from"),
            new_size=_size(obj["to"], "to"),
            hashes=tuple(_hash(h, "hashes") for h in hashes),
            old_root=roots["from_root"],
            new_root=roots["to_root"],
        )


ProofSource = Callable[[int, int], ConsistencyProof]
"""Fetch the log's consistency proof from ``old_size`` to ``new_size`` (both exact: a server
that has grown meanwhile must still prove to ``new_size``). May raise any LedgerError (e.g.
Unavailable); the state is then unchanged."""


@dataclass(frozen=True, slots=True)
class MonitorState:
    """The pinned verifier key and origin, and the last checkpoint verified under them.

    ``source`` says where the checkpoint came from (a URL), for the evidence. Construction
    verifies ``checkpoint`` with ``verifier_key`` for ``origin`` and raises what
    :func:`ledger.notes.verify_checkpoint` raises, or MalformedNote for a bad verifier key.
    """

    origin: str
    verifier_key: str
    checkpoint: str
    source: str | None = None
    verifier: NoteVerifier = field(init=False, repr=False, compare=False)
    current: Checkpoint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        verifier = NoteVerifier.parse(self.verifier_key)
        object.__setattr__(self, "verifier", verifier)
        current = verify_checkpoint(self.checkpoint, verifier=verifier, origin=self.origin)
        object.__setattr__(self, "current", current)

    @classmethod
    def pin(
        cls, note: str, *, verifier_key: str, origin: str | None = None, source: str | None = None
    ) -> MonitorState:
        """The first state: ``note`` verified with ``verifier_key``, for ``origin`` (default:
        the key's name, which is the origin for Filiera ledgers). Raises as the constructor."""
        name = origin if origin is not None else NoteVerifier.parse(verifier_key).name
        return cls(origin=name, verifier_key=verifier_key, checkpoint=note, source=source)

    def to_json(self) -> dict[str, Any]:
        """The state file's object; ``tree_size`` and ``root`` are for people and re-checked."""
        return {
            "format": STATE_FORMAT,
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "tree_size": self.current.tree_size,
            "root": self.current.root.hex(),
            "checkpoint": self.checkpoint,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: object) -> MonitorState:
        """Read :meth:`to_json`'s object back, verifying the checkpoint again.

        Raises InvalidField or MissingField (wrong format, a summary that disagrees with the
        checkpoint) or what the constructor raises.
        """
        if not isinstance(obj, Mapping):
            raise InvalidField("a monitor state is a JSON object", field="state")
        if obj.get("format") != STATE_FORMAT:
            raise InvalidField(f"a monitor state has format {STATE_FORMAT!r}", field="format")
        for name in ("origin", "verifier_key", "checkpoint"):
            if not isinstance(obj.get(name), str):
                raise MissingField(f"the monitor state has no {name!r} text", field=name)
        source = obj.get("source")
        if source is not None and not isinstance(source, str):
            raise InvalidField("source must be text or null", field="source")
        state = cls(
            origin=obj["origin"],
            verifier_key=obj["verifier_key"],
            checkpoint=obj["checkpoint"],
            source=source,
        )
        summary = (obj.get("tree_size"), obj.get("root"))
        if summary != (state.current.tree_size, state.current.root.hex()):
            raise InvalidField(
                "the state's tree_size and root disagree with its checkpoint: the file was edited",
                field="checkpoint",
            )
        return state

    def with_checkpoint(self, note: str, source: str | None) -> MonitorState:
        """The same pins with a newer verified ``note``. Raises as the constructor."""
        return MonitorState(self.origin, self.verifier_key, note, source)


@dataclass(frozen=True, slots=True)
class Step:
    """One verified checkpoint: the outcome, the next state and both checkpoints' bodies."""

    outcome: Outcome
    state: MonitorState
    previous: Checkpoint
    current: Checkpoint


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two checkpoints signed by one key that cannot both be honest, and why.

    ``reason`` is ``same_size`` (same size, different roots), ``not_consistent`` (the larger
    tree's proof from the smaller fails; ``proof`` and ``proof_failure`` say how) or
    ``smaller_size`` (a rollback). ``previous`` was verified first; ``current`` came later.
    """

    code: str
    reason: str
    detail: str
    origin: str
    verifier_key: str
    previous: str
    current: str
    previous_source: str | None = None
    current_source: str | None = None
    proof: ConsistencyProof | None = None
    proof_failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable object: the evidence file's core (callers may add members)."""
        verifier = NoteVerifier.parse(self.verifier_key)

        def described(note: str, source: str | None) -> dict[str, Any]:
            body = verify_checkpoint(note, verifier=verifier, origin=self.origin)
            root = body.root.hex()
            return {"tree_size": body.tree_size, "root": root, "source": source, "note": note}

        return {
            "format": EVIDENCE_FORMAT,
            "code": self.code,
            "reason": self.reason,
            "detail": self.detail,
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "previous": described(self.previous, self.previous_source),
            "current": described(self.current, self.current_source),
            "consistency_proof": self.proof.to_json() if self.proof is not None else None,
            "proof_failure": self.proof_failure,
        }


def _alarm(
    state: MonitorState,
    note: str,
    current: Checkpoint,
    source: str | None,
    *,
    reason: str,
    detail: str,
    proof: ConsistencyProof | None = None,
    proof_failure: str | None = None,
) -> NoReturn:
    error = Rollback if reason == "smaller_size" else SplitView
    evidence = Evidence(
        code=error.code,
        reason=reason,
        detail=detail,
        origin=state.origin,
        verifier_key=state.verifier_key,
        previous=state.checkpoint,
        current=note,
        previous_source=state.source,
        current_source=source,
        proof=proof,
        proof_failure=proof_failure,
    )
    raise error(
        detail,
        reason=reason,
        previous_size=state.current.tree_size,
        current_size=current.tree_size,
        evidence=evidence.to_json(),
    )


def check(state: MonitorState, note: str, prove: ProofSource, *, source: str | None = None) -> Step:
    """Verify a newly fetched signed checkpoint ``note`` against ``state``.

    Returns a Step (ADVANCED or SAME) whose state holds ``note``. ``prove`` is called only when
    the new tree is larger. Raises MalformedNote, InvalidNoteSignature, NoTrustedSignature or
    OriginMismatch (``note`` is not the pinned ledger's); Rollback (smaller size); SplitView
    (same size with another root, or a proof that fails), each with ``facts["evidence"]``;
    MalformedProof (``prove`` answered other sizes than asked); whatever ``prove`` raises.
    """
    current = verify_checkpoint(note, verifier=state.verifier, origin=state.origin)
    previous = state.current
    old, new = previous.tree_size, current.tree_size
    if new < old:
        _alarm(
            state, note, current, source,
            reason="smaller_size",
            detail=f"the ledger signed a checkpoint of size {new} after one of size {old}: "
            "entries it had published are gone from this copy",
        )
    if new == old:
        if current.root != previous.root:
            _alarm(
                state, note, current, source,
                reason="same_size",
                detail=f"two checkpoints of size {new} signed by the ledger key have different "
                f"roots ({previous.root.hex()[:16]}..., {current.root.hex()[:16]}...): "
                "the ledger shows different histories",
            )
        return Step(Outcome.SAME, state.with_checkpoint(note, source), previous, current)
    if old > 0:
        # RFC 9162 §2.1.4.2: the proof must lead from the pinned root to the new one. A tree of
        # size 0 is a prefix of every tree, and no proof exists from it.
        proof = prove(old, new)
        if (proof.old_size, proof.new_size) != (old, new):
            raise MalformedProof(
                f"asked for a consistency proof from {old} to {new}, got one from "
                f"{proof.old_size} to {proof.new_size}"
            )
        try:
            verify_consistency(
                old_size=old,
                new_size=new,
                proof=proof.hashes,
                old_root=previous.root,
                new_root=current.root,
            )
        except InvalidProof as exc:
            _alarm(
                state, note, current, source,
                reason="not_consistent",
                detail=f"the checkpoint of size {new} does not extend the one of size {old} "
                f"verified earlier ({exc.detail}): the ledger shows different histories",
                proof=proof,
                proof_failure=exc.detail,
            )
    return Step(Outcome.ADVANCED, state.with_checkpoint(note, source), previous, current)


def _refuse(detail: str) -> NoReturn:
    raise InvalidField(f"the evidence does not hold: {detail}", field="evidence")


def verify_evidence(obj: object, *, verifier_key: str | None = None) -> Evidence:
    """Check an evidence object (:meth:`Evidence.to_json`, maybe with more members) offline.

    Both notes must verify under ``verifier_key`` (default: the one the evidence names; pass
    the key you trust, or the check proves nothing) for the same origin, and show what
    ``reason`` claims. Returns the Evidence. Raises InvalidField or MissingField (the evidence
    does not hold or is malformed), or the errors of ``verify_checkpoint``.

    Both signatures make ``same_size`` and ``smaller_size`` self-contained proof. For
    ``not_consistent`` the failing proof is what a server served, which it did not sign: the
    strong check is to ask the ledger (or any copy) for a consistency proof between the two
    sizes; an honest log always has one, a forked one never.
    """
    if not isinstance(obj, Mapping) or obj.get("format") != EVIDENCE_FORMAT:
        raise InvalidField(
            f"evidence is a JSON object of format {EVIDENCE_FORMAT!r}", field="format"
        )
    try:
        origin, key, reason = obj["origin"], obj["verifier_key"], obj["reason"]
        previous, current = obj["previous"]["note"], obj["current"]["note"]
    except (KeyError, TypeError) as exc:
        raise MissingField(f"the evidence lacks {exc}", field="evidence") from exc
    for value in (origin, key, reason, previous, current):
        if not isinstance(value, str):
            raise InvalidField("origin, verifier_key, reason and notes are text", field="evidence")
    if verifier_key is not None and NoteVerifier.parse(verifier_key) != NoteVerifier.parse(key):
        _refuse("it names another verifier key than the one given")
    verifier = NoteVerifier.parse(key)
    old = verify_checkpoint(previous, verifier=verifier, origin=origin)
    new = verify_checkpoint(current, verifier=verifier, origin=origin)
    proof: ConsistencyProof | None = None
    failure: str | None = None
    if reason == "same_size":
        if old.tree_size != new.tree_size or old.root == new.root:
            _refuse("the checkpoints do not have the same size and different roots")
    elif reason == "smaller_size":
        if new.tree_size >= old.tree_size:
            _refuse("the later checkpoint is not smaller than the earlier one")
    elif reason == "not_consistent":
        proof = ConsistencyProof.from_json(obj.get("consistency_proof"))
        sizes = (old.tree_size, new.tree_size)
        if not 0 < sizes[0] < sizes[1] or (proof.old_size, proof.new_size) != sizes:
            _refuse("the proof's sizes are not the checkpoints' sizes, smaller first")
        try:
            verify_consistency(
                old_size=sizes[0],
                new_size=sizes[1],
                proof=proof.hashes,
                old_root=old.root,
                new_root=new.root,
            )
        except InvalidProof as exc:
            failure = exc.detail
        else:
            _refuse("the consistency proof verifies")
    else:
        _refuse(f"unknown reason {reason!r}")
    code = Rollback.code if reason == "smaller_size" else SplitView.code
    return Evidence(
        code=code,
        reason=reason,
        detail=str(obj.get("detail", "")),
        origin=origin,
        verifier_key=key,
        previous=previous,
        current=current,
        previous_source=_text_or_none(obj["previous"].get("source")),
        current_source=_text_or_none(obj["current"].get("source")),
        proof=proof,
        proof_failure=failure,
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def evidence_of(error: LedgerError) -> dict[str, Any] | None:
    """The evidence object a SplitView or Rollback from :func:`check` carries, else None."""
    evidence = error.facts.get("evidence")
    return evidence if isinstance(evidence, dict) else None
