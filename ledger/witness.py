"""The witness protocol, c2sp.org/tlog-witness (add-checkpoint), without I/O.

Both sides use this module: the ledger formats requests and reads the answers; ``filiera
witness serve`` parses requests and decides them with :func:`witness_checkpoint`, then stores
the new view and cosigns (``ledger.witness_state``, ``ledger.cosignature``).

The request body is an ``old <size>`` line, at most 63 consistency proof lines (one base64
hash each), an empty line and the signed checkpoint. The checks run in the order the spec
lists them, each with its status:

====================================================  ======  =============================
check                                                 status  error
====================================================  ======  =============================
body syntax (old line, hashes, checkpoint note)       400     MalformedWitnessRequest
origin is a log this witness knows                    404     UnknownLog
a trusted key of that log signed the checkpoint       403     UntrustedCheckpoint
old size <= checkpoint size                           400     MalformedWitnessRequest
old size == size of the latest cosigned checkpoint    409     OldSizeMismatch (+ the size)
consistency proof from old size verifies              422     InconsistentCheckpoint
same size: same root                                  409     ConflictingCheckpoint
====================================================  ======  =============================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger.encoding import b64, unb64
from ledger.errors import (
    ConflictingCheckpoint,
    InconsistentCheckpoint,
    InvalidField,
    InvalidNoteSignature,
    InvalidProof,
    MalformedNote,
    MalformedWitnessRequest,
    NoTrustedSignature,
    OldSizeMismatch,
    UnknownLog,
    UntrustedCheckpoint,
)
from ledger.merkle import verify_consistency
from ledger.notes import Checkpoint, NoteVerifier, open_note, parse_signature_line, split_note

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "SIZE_MEDIA_TYPE",
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "AddCheckpoint",
    "witness_checkpoint",
    "format_size",
    "parse_size",
    "parse_cosignature_lines",
]

ADD_CHECKPOINT_PATH = "/add-checkpoint"
# tlog-witness §add-checkpoint: the 409 answer's media type and body (the size and '\n').
SIZE_MEDIA_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
# 63 proof lines of 45 bytes, a checkpoint and up to 100 signature lines fit in far less.
MAX_REQUEST_BYTES = 64 * 1024

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,18})")
_SIZE_BODY = re.compile(r"(0|[1-9][0-9]{0,18})\n")
_MAX_SIZE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the client believes the witness holds, the
    consistency proof from it, and the signed checkpoint note.

    Construction raises MalformedWitnessRequest unless 0 <= old_size <= 2^63 - 1, the proof
    has at most 63 hashes of 32 bytes, and the checkpoint is a syntactically valid signed
    checkpoint note (signatures are checked by :func:`witness_checkpoint`).
    """

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def __post_init__(self) -> None:
        if isinstance(self.old_size, bool) or not isinstance(self.old_size, int) or not 0 <= self.old_size <= _MAX_SIZE:
            raise MalformedWitnessRequest("old size must be an integer in [0, 2^63 - 1]", field="old")
        if not isinstance(self.proof, tuple) or len(self.proof) > MAX_PROOF_LINES:
            raise MalformedWitnessRequest(
                f"at most {MAX_PROOF_LINES} consistency proof lines", field="proof"
            )
        for position, node in enumerate(self.proof):
            if not isinstance(node, bytes) or len(node) != 32:
                raise MalformedWitnessRequest(
                    f"proof line {position} must be a 32-byte hash", field="proof", position=position
                )
        try:
            text, _ = split_note(self.checkpoint)
            Checkpoint.parse_body(text)
        except MalformedNote as exc:
            raise MalformedWitnessRequest(
                f"the checkpoint is not a signed checkpoint note: {exc.detail}", field="checkpoint"
            ) from exc

    @property
    def body(self) -> Checkpoint:
        """The checkpoint's body (origin, size, root), not yet verified."""
        text, _ = split_note(self.checkpoint)
        return Checkpoint.parse_body(text)

    def format(self) -> bytes:
        """The request body: ``old N``, proof lines, an empty line, the checkpoint."""
        head = [f"old {self.old_size}", *(b64(node) for node in self.proof)]
        return ("".join(f"{line}\n" for line in head) + "\n" + self.checkpoint).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body strictly: every line ends in '\\n', the old size has no
        leading zeros, each proof line is canonical base64 of 32 bytes.
        Raises MalformedWitnessRequest."""
        if not isinstance(body, bytes) or len(body) > MAX_REQUEST_BYTES:
            raise MalformedWitnessRequest(f"a request body is at most {MAX_REQUEST_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedWitnessRequest("the request body is not UTF-8", position=exc.start) from exc
        # Proof lines are never empty, so the first empty line ends them.
        head, separator, checkpoint = text.partition("\n\n")
        if not separator:
            raise MalformedWitnessRequest("the old size and proof lines must end with an empty line")
        lines = head.split("\n")
        match = _OLD_LINE.fullmatch(lines[0])
        if match is None:
            raise MalformedWitnessRequest(
                "the first line is 'old <size>', a decimal without leading zeros", field="old"
            )
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise MalformedWitnessRequest(
                f"at most {MAX_PROOF_LINES} consistency proof lines, got {len(lines) - 1}",
                field="proof",
            )
        proof: list[bytes] = []
        for position, line in enumerate(lines[1:]):
            try:
                proof.append(unb64(line, field="proof", length=32))
            except InvalidField as exc:
                raise MalformedWitnessRequest(
                    f"proof line {position} must be canonical base64 of a 32-byte hash",
                    field="proof",
                    position=position,
                ) from exc
        return cls(old_size=int(match.group(1)), proof=tuple(proof), checkpoint=checkpoint)


def witness_checkpoint(
    request: AddCheckpoint,
    *,
    logs: Mapping[str, Sequence[NoteVerifier]],
    latest: Checkpoint | None,
) -> Checkpoint:
    """Decide an add-checkpoint request (tlog-witness §add-checkpoint) and return the verified
    checkpoint to record and cosign.

    ``logs`` maps each known origin to its trusted note keys; ``latest`` is the witness's
    record for the request's origin (None if it never cosigned one). The caller must hold the
    origin's lock from reading ``latest`` until the returned checkpoint is stored, so that two
    requests never both pass against the same record (the race the spec describes).
    Raises UnknownLog (404), UntrustedCheckpoint (403), MalformedWitnessRequest (400),
    OldSizeMismatch (409, fact ``size``), InconsistentCheckpoint (422) or
    ConflictingCheckpoint (409, fact ``size``).
    """
    unverified = request.body
    keys = logs.get(unverified.origin)
    if not keys:
        raise UnknownLog(f"this witness does not know the log {unverified.origin!r}", origin=unverified.origin)
    try:
        opened = open_note(request.checkpoint, list(keys))
    except (NoTrustedSignature, InvalidNoteSignature) as exc:
        raise UntrustedCheckpoint(
            f"the checkpoint carries no valid signature by a key this witness trusts for "
            f"{unverified.origin!r}",
            origin=unverified.origin,
        ) from exc
    checkpoint = Checkpoint.parse_body(opened.text)
    if request.old_size > checkpoint.tree_size:
        raise MalformedWitnessRequest(
            f"old size {request.old_size} exceeds the checkpoint size {checkpoint.tree_size}",
            field="old",
        )
    if latest is not None and latest.origin != checkpoint.origin:
        raise ValueError("the latest record is for another log")  # a caller's bug
    size = latest.tree_size if latest is not None else 0
    if request.old_size != size:
        raise OldSizeMismatch(
            f"this witness's latest cosigned size for {checkpoint.origin!r} is {size}, "
            f"not {request.old_size}",
            size=size,
        )
    if request.old_size == 0:
        if request.proof:
            raise InconsistentCheckpoint("the consistency proof from size 0 must be empty")
        if latest is not None and latest.root != checkpoint.root:
            # A size-0 record exists: the empty tree has one root.
            raise ConflictingCheckpoint("the root differs from the cosigned one at size 0", size=size)
        return checkpoint
    assert latest is not None  # size > 0 means a record exists
    if checkpoint.tree_size == latest.tree_size:
        if request.proof:
            raise InconsistentCheckpoint("the consistency proof between equal sizes must be empty")
        if checkpoint.root != latest.root:
            raise ConflictingCheckpoint(
                f"a checkpoint of size {size} with another root was cosigned: the log shows "
                "two histories (a split view)",
                size=size,
            )
        return checkpoint
    try:
        verify_consistency(
            old_size=latest.tree_size,
            new_size=checkpoint.tree_size,
            proof=list(request.proof),
            old_root=latest.root,
            new_root=checkpoint.root,
        )
    except InvalidProof as exc:
        raise InconsistentCheckpoint(
            f"the proof does not show that size {checkpoint.tree_size} extends the cosigned "
            f"size {size}: {exc.detail}",
            size=size,
        ) from exc
    return checkpoint


def format_size(size: int) -> bytes:
    """The body of a 409 answer (media type :data:`SIZE_MEDIA_TYPE`)."""
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """The size in a 409 answer's body. Raises MalformedWitnessRequest."""
    try:
        match = _SIZE_BODY.fullmatch(body.decode("ascii"))
    except UnicodeDecodeError:
        match = None
    if match is None:
        raise MalformedWitnessRequest("a 409 answer's body is a decimal size and a newline")
    return int(match.group(1))


def parse_cosignature_lines(body: bytes) -> list[str]:
    """The signature lines of a 200 answer, without newlines (syntax only: verify them with
    :func:`ledger.cosignature.verify_cosignature`). Raises MalformedNote."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNote("the answer is not UTF-8") from exc
    if not text.endswith("\n"):
        raise MalformedNote("the answer must be signature lines, each ending in a newline")
    lines = text[:-1].split("\n")
    for line in lines:
        parse_signature_line(line)
    return lines
