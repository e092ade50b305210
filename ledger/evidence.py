"""One entry's evidence: an envelope and its tlog-proof, checked offline (PROTOCOL §5).

When the ledger seals an entry it answers with a C2SP ``tlog-proof`` (``c2sp.org/tlog-proof@v1``:
the leaf index, the RFC 9162 §2.1.3 inclusion proof and the block's signed checkpoint). The
submitter keeps that proof beside the envelope it signed; this module decides whether such a
pair is evidence, with nothing but the ledger's note verifier key.

What a pair that verifies proves: these envelope bytes (payload *and* signatures, as the leaf
data commits to both) are leaf ``index`` of the log whose checkpoint the ledger key signed at
``tree_size`` with ``root``, for the log named by the key (its origin). What it does not prove:
that the member signatures verify under keys that were active at that position, nor that the
entry obeyed the ledger's rules there. The pair does not carry the members' keys or the log's
history; the ledger checked both when it sealed the entry, and ``filiera verify`` (a database)
or ``filiera audit`` (an export) re-check them entry by entry. An entry that a dishonest
operator sealed with a revoked key therefore has evidence that verifies here and a ledger that
fails the full check at that entry (``key_revoked``).

Checks, in order, so the verdict names the first thing wrong: the envelope's form and ledger;
the proof's form; the checkpoint's signature and origin; the proof's shape for the
checkpoint's tree size; the inclusion itself; then whether the entry is the one asked for.
Each failure is a LedgerError leaf with a stable code (docs/evidence.md lists the verdicts).
Pure: no I/O, clock or database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import jcs
from .entries import Envelope, parse_envelope
from .errors import (
    InvalidNoteSignature,
    InvalidProof,
    MalformedProof,
    NoTrustedSignature,
    OriginMismatch,
    WrongSubject,
    WrongTreeSize,
)
from .merkle import inclusion_plan, verify_inclusion
from .notes import Checkpoint, NoteVerifier, TlogProof, verify_checkpoint
from .payloads import EntryType

__all__ = ["Evidence", "verify_evidence", "lots_named"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """A verified (envelope, tlog-proof) pair: which entry, where, under which checkpoint."""

    entry: str
    type: str
    author: str
    leaf_hash: bytes
    index: int
    checkpoint: Checkpoint
    lots: tuple[str, ...]

    @property
    def origin(self) -> str:
        return self.checkpoint.origin

    @property
    def tree_size(self) -> int:
        return self.checkpoint.tree_size

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "type": self.type,
            "author": self.author,
            "lots": list(self.lots),
            "leaf_hash": self.leaf_hash.hex(),
            "index": self.index,
            "tree_size": self.tree_size,
            "root": self.checkpoint.root.hex(),
            "origin": self.origin,
        }


def lots_named(env: Envelope) -> tuple[str, ...]:
    """The lots an entry is about, in payload order: an origin's lots, a handoff's lots, a
    transformation's inputs then outputs, an attestation's subject when it is a lot.

    A receipt names its handoff (an entry id), not lots; contracts and payments name none.
    """
    p = env.payload
    if env.type is EntryType.ORIGIN:
        return tuple(str(lot["lot"]) for lot in p["lots"])
    if env.type is EntryType.HANDOFF:
        return tuple(str(lot) for lot in p["lots"])
    if env.type is EntryType.TRANSFORM:
        return (*(str(lot) for lot in p["inputs"]), *(str(out["lot"]) for out in p["outputs"]))
    if env.type is EntryType.ATTESTATION:
        subject = str(p["subject"])
        # An attestation's subject is an entry id (64 hex) or a lot id (PROTOCOL §4).
        is_entry = len(subject) == 64 and all(c in "0123456789abcdef" for c in subject)
        return () if is_entry else (subject,)
    return ()


def _envelope(data: str | bytes | Mapping[str, Any], origin: str) -> Envelope:
    """Parse the envelope strictly (I-JSON, any formatting) for the ledger ``origin``.

    Raises MalformedInput leaves (MalformedJson, DuplicateKey, InvalidField, ...), WrongLedger.
    """
    if isinstance(data, Mapping):
        # Round-trip so a caller's dict gets the same strict checks as bytes from a file.
        obj = jcs.loads(jcs.canonicalize(dict(data)))
    else:
        obj = jcs.loads(data.encode("utf-8") if isinstance(data, str) else data)
    return parse_envelope(obj, origin=origin)


def _proof(data: str | bytes) -> TlogProof:
    """Parse the tlog-proof text strictly. Raises MalformedProof."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedProof("the proof is not UTF-8 text", position=exc.start) from exc
    proof = TlogProof.parse(data)
    if proof.extra is not None:
        # tlog-proof allows opaque application data; Filiera never writes any, and refusing it
        # keeps one text per (entry, checkpoint): no byte of a proof can change and still verify.
        raise MalformedProof("a Filiera tlog proof carries no 'extra' line", field="extra")
    return proof


def _checkpoint(proof: TlogProof, verifier: NoteVerifier) -> Checkpoint:
    """The proof's checkpoint, verified for the ledger ``verifier`` names, with details that
    speak of the evidence. Raises NoTrustedSignature, InvalidNoteSignature, OriginMismatch."""
    key = f"{verifier.name}+{verifier.key_id.hex()}"
    try:
        return verify_checkpoint(proof.checkpoint, verifier=verifier, origin=verifier.name)
    except NoTrustedSignature as exc:
        raise NoTrustedSignature(
            f"the proof's checkpoint is not signed by the ledger key {key}: it was signed by "
            "another key, or the verifier key is not this ledger's",
            **exc.facts,
        ) from exc
    except InvalidNoteSignature as exc:
        raise InvalidNoteSignature(
            f"the ledger key {key}'s signature does not cover the proof's checkpoint: its "
            "origin, tree size or root was changed after signing, or the signature line was "
            "copied from another checkpoint",
            **exc.facts,
        ) from exc
    except OriginMismatch as exc:
        raise OriginMismatch(
            f"the proof's checkpoint is signed by the ledger key {key} but names the log "
            f"{exc.facts.get('found')!r}, not {verifier.name!r}",
            **exc.facts,
        ) from exc


def verify_evidence(
    envelope: str | bytes | Mapping[str, Any],
    tlog_proof: str | bytes,
    *,
    verifier: NoteVerifier,
    lot: str | None = None,
    entry_id: str | None = None,
) -> Evidence:
    """Check that ``tlog_proof`` proves ``envelope`` is in the log ``verifier`` signs for.

    ``envelope``: the entry as JSON text, UTF-8 bytes or a parsed object (any formatting; its
    canonical leaf data is what the log holds). ``tlog_proof``: the ``tlog_proof`` text of the
    entry's receipt. ``verifier``: the ledger's note verifier key, whose name is the log's
    origin. ``lot`` / ``entry_id``: what the caller wants evidence about; the entry must name
    that lot / have that id.

    Returns the verified :class:`Evidence`. Raises, at the first failure:
    MalformedInput leaves (the envelope is not a well-formed entry) or WrongLedger (it is for
    another ledger); MalformedProof (the proof is not a tlog-proof: syntax, trailing data, an
    unsigned checkpoint); NoTrustedSignature (the checkpoint is not signed by the ledger key);
    InvalidNoteSignature (the ledger's signature does not cover this checkpoint text);
    OriginMismatch (signed, but for another log); WrongTreeSize (the proof was made for
    another tree size than the checkpoint's, or the index lies beyond it); InvalidProof (the
    proof does not lead from the entry's leaf hash to the checkpoint's root); WrongSubject
    (valid evidence, but not about ``lot`` or ``entry_id``).
    """
    origin = verifier.name
    env = _envelope(envelope, origin)
    proof = _proof(tlog_proof)
    checkpoint = _checkpoint(proof, verifier)
    facts = {"index": proof.index, "tree_size": checkpoint.tree_size, "entry": env.id}
    if proof.index >= checkpoint.tree_size:
        raise WrongTreeSize(
            f"the proof is for leaf {proof.index}, beyond the checkpoint's tree of "
            f"{checkpoint.tree_size} leaves: it needs a checkpoint at least as recent as the entry",
            hashes=len(proof.hashes),
            **facts,
        )
    wanted = len(inclusion_plan(index=proof.index, tree_size=checkpoint.tree_size))
    if len(proof.hashes) != wanted:
        raise WrongTreeSize(
            f"the proof has {len(proof.hashes)} hashes but leaf {proof.index} of a tree of "
            f"{checkpoint.tree_size} leaves needs {wanted}: it was made for another tree size "
            "than its checkpoint's (or hashes were added or removed)",
            hashes=len(proof.hashes),
            needed=wanted,
            **facts,
        )
    try:
        verify_inclusion(
            leaf_hash=env.leaf_hash,
            index=proof.index,
            tree_size=checkpoint.tree_size,
            proof=list(proof.hashes),
            root=checkpoint.root,
        )
    except InvalidProof as exc:
        # With the right number of hashes, a wrong leaf (another entry's proof), a wrong hash
        # or another root at the same size (a fork of the log) all end here.
        raise InvalidProof(
            f"the inclusion proof does not lead from this entry's leaf hash to the checkpoint's "
            "root: the proof is for another entry, was altered, or the checkpoint comes from "
            "another history of the log (a fork)",
            **facts,
        ) from exc
    lots = lots_named(env)
    if entry_id is not None and env.id != entry_id:
        raise WrongSubject(
            f"the evidence is valid but for entry {env.id}, not {entry_id}",
            asked_entry=entry_id,
            **facts,
        )
    if lot is not None and lot not in lots:
        named = ", ".join(lots) if lots else "no lot"
        raise WrongSubject(
            f"the evidence is valid but the {env.type} entry names {named}, not lot {lot}"
            + (
                "; a receipt names its handoff: check the handoff's evidence for the lot"
                if env.type is EntryType.RECEIPT
                else ""
            ),
            lot=lot,
            lots=list(lots),
            **facts,
        )
    return Evidence(
        entry=env.id,
        type=str(env.type),
        author=env.author,
        leaf_hash=env.leaf_hash,
        index=proof.index,
        checkpoint=checkpoint,
        lots=lots,
    )
