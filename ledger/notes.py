"""C2SP signed notes, checkpoints and tlog proofs: the ledger's offline-verifiable evidence.

Implements PROTOCOL.md §5 on top of three C2SP specifications (texts in
tests/vectors/signed-note-checkpoint/spec/):

* ``c2sp.org/signed-note@v1.0.0``: notes, Ed25519 signature lines, verifier keys (vkeys);
* ``c2sp.org/tlog-checkpoint@v1.0.0``: the checkpoint body (origin, size, root, extensions);
* ``c2sp.org/tlog-proof@v1``: index + RFC 9162 inclusion proof + the checkpoint, in one text;
* ``c2sp.org/tlog-cosignature@v1``: decoding of timestamped witness cosignatures (type 0x04).

Parsing is strict: every value has exactly one accepted spelling (canonical base64, no leading
zeros, 32-byte roots), so a note or proof that verifies cannot be re-encoded into a different
text that also verifies. Where the specs are lenient we say so beside the check.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.encoding import b64, sha256, unb64
from ledger.errors import (
    ConfigurationError,
    InvalidField,
    InvalidNoteSignature,
    InvalidSignature,
    InvalidSignatureEncoding,
    MalformedNote,
    MalformedProof,
    NoTrustedSignature,
    OriginMismatch,
)
from ledger.keys import SigningKey, unsafe_verify

__all__ = [
    "ED25519_TYPE",
    "COSIGNATURE_V1_TYPE",
    "MAX_SIGNATURES",
    "TLOG_PROOF_HEADER",
    "note_key_id",
    "NoteVerifier",
    "verifier_for",
    "sign_note",
    "add_signature_lines",
    "OpenedNote",
    "open_note",
    "Checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
    "TlogProof",
    "parse_cosignature",
    "SignatureLine",
    "split_note",
    "parse_signature_line",
    "check_key_name",
]

# signed-note §Signature types.
ED25519_TYPE = 0x01
COSIGNATURE_V1_TYPE = 0x04
# signed-note §Format: verifiers SHOULD cap the number of signatures and MUST accept 16; Go's
# golang.org/x/mod/sumdb/note caps at 100, and so do we, so both accept the same notes.
MAX_SIGNATURES = 100
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"

_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE (signed-note §Format).
_KEY_ID_SIZE = 4
_ED25519_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_HASH_SIZE = 32
# A tree has at most 2^63 - 1 leaves: Go's tlog and every SQL BIGINT index agree on that bound.
_MAX_TREE_SIZE = 2**63 - 1
# An inclusion proof in a tree of fewer than 2^63 leaves has at most 63 hashes.
_MAX_PROOF_HASHES = 63
# At most 19 digits: enough for 2^63 - 1, and int() never sees a hostile 10,000-digit string.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_PROOF_INDEX = re.compile(r"index (0|[1-9][0-9]{0,18})")
_PROOF_EXTRA = re.compile(r"extra ([A-Za-z0-9+/=]*)")


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _first_control(text: str) -> int | None:
    """Index of the first character below U+0020 other than newline, if any."""
    # A regular expression: a Python loop over every character cost more than the rest of
    # building a receipt.
    found = _CONTROL.search(text)
    return found.start() if found else None


def _check_utf8(text: str, *, what: str) -> None:
    """signed-note §Format: the note MUST be valid UTF-8 with no control characters but ``\\n``.

    A Python ``str`` can still hold lone surrogates, which have no UTF-8 encoding.
    Raises MalformedNote.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNote(f"{what} is not valid UTF-8", position=exc.start) from exc
    position = _first_control(text)
    if position is not None:
        raise MalformedNote(
            f"{what} contains a control character (U+{ord(text[position]):04X}); "
            "only newline is allowed",
            position=position,
        )


def _check_key_name(name: str) -> None:
    """signed-note §Format: key names are non-empty, without Unicode spaces or '+'.

    Control characters are refused too: a name must fit on a signature line.
    Raises MalformedNote.
    """
    if not name:
        raise MalformedNote("key name is empty", field="name")
    if "+" in name:
        raise MalformedNote(f"key name {name!r} contains '+'", field="name")
    if any(char.isspace() or char < " " for char in name):
        raise MalformedNote(
            f"key name {name!r} contains a space or control character", field="name"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNote("key name is not valid UTF-8", field="name") from exc


def note_key_id(name: str, public_key: bytes, *, key_type: int = ED25519_TYPE) -> bytes:
    """The 4-byte note key ID: SHA-256(name || 0x0A || type || public key)[:4].

    signed-note §Signatures (type 0x01) and tlog-cosignature (type 0x04). Requires
    ``0 <= key_type <= 255``; does not validate the name (see :class:`NoteVerifier`).
    """
    return sha256(name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key)[:_KEY_ID_SIZE]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted Ed25519 note key (signature type 0x01): name, 4-byte key ID and public key.

    Construction raises MalformedNote unless the name is valid, the key is 32 bytes and
    ``key_id`` equals :func:`note_key_id` of the name and key.
    """

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise MalformedNote("an Ed25519 note key is 32 bytes", field="public_key")
        if self.key_id != note_key_id(self.name, self.public_key):
            raise MalformedNote(
                f"key ID does not match key name {self.name!r} and its public key",
                field="key_id",
            )

    @property
    def vkey(self) -> str:
        """The verifier key text ``<name>+<8 hex>+<base64(0x01 || key)>`` (signed-note §Verifier keys)."""
        material = b64(bytes([ED25519_TYPE]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Parse an Ed25519 vkey.

        Requires three '+'-separated parts (the base64 part may itself contain '+'), a valid
        name, 8 lowercase hex digits matching the key, canonical base64 of 0x01 followed by a
        32-byte key. Other signature types (e.g. 0x04 cosigner keys) are refused: they do not
        sign notes with plain Ed25519. Raises MalformedNote.
        """
        if not isinstance(vkey, str):
            raise MalformedNote("a verifier key is text")
        # The name cannot contain '+' and the hex ID has none, so the first two '+' split it.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedNote(
                "a verifier key is <name>+<hex key ID>+<base64 key>", field="vkey"
            )
        name, hex_id, material_b64 = parts
        _check_key_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise MalformedNote("the key ID must be 8 lowercase hex digits", field="vkey")
        try:
            material = unb64(material_b64, field="vkey")
        except InvalidField as exc:
            raise MalformedNote(
                "the key material must be standard padded base64", field="vkey"
            ) from exc
        if not material or material[0] != ED25519_TYPE:
            found = f"0x{material[0]:02x}" if material else "none"
            raise MalformedNote(
                f"signature type {found} is not Ed25519 (0x01)", field="vkey"
            )
        if len(material) != 1 + _ED25519_PUBLIC_KEY_SIZE:
            raise MalformedNote(
                f"an Ed25519 key is 32 bytes, not {len(material) - 1}", field="vkey"
            )
        verifier = cls(name=name, key_id=bytes.fromhex(hex_id), public_key=material[1:])
        return verifier


def verifier_for(name: str, public_key: bytes) -> NoteVerifier:
    """The note verifier for ``public_key`` under key name ``name``. Raises MalformedNote."""
    return NoteVerifier(name=name, key_id=note_key_id(name, public_key), public_key=public_key)


@dataclass(frozen=True, slots=True)
class SignatureLine:
    """One parsed signature line: key name, 4-byte key ID and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes  # what follows the key ID: 64 bytes for Ed25519, other sizes for others


def _parse_signature_line(line: str) -> SignatureLine:
    """One line of the signature block, without its newline. Raises MalformedNote."""
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNote(
            "every line after the last blank line must be a signature line starting with "
            "'\u2014 '"
        )
    name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not space:
        raise MalformedNote("a signature line is '\u2014 <name> <base64>'")
    _check_key_name(name)
    try:
        # Canonical base64 only (RFC 4648 §3.5 allows this refusal): the bytes of a signature
        # line then have one spelling, so a flipped character can never verify unchanged.
        raw = unb64(encoded, field="signature")
    except InvalidField as exc:
        raise MalformedNote(
            f"signature by {name!r} is not standard padded base64", name=name
        ) from exc
    # signed-note §Format: 4 bytes of key ID and a non-empty signature.
    if len(raw) <= _KEY_ID_SIZE:
        raise MalformedNote(f"signature by {name!r} is too short", name=name)
    return SignatureLine(name=name, key_id=raw[:_KEY_ID_SIZE], signature=raw[_KEY_ID_SIZE:])


def _split_note(note: str) -> tuple[str, list[SignatureLine]]:
    """Split a note into its text and parsed signature lines (syntax only). Raises MalformedNote."""
    _check_utf8(note, what="note")
    # signed-note §Format: the text is separated from the signatures by the LAST empty line;
    # the text keeps its final newline, the separating blank line belongs to neither part.
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("a note needs a blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise MalformedNote("a note needs at least one signature line")
    if not block.endswith("\n"):
        raise MalformedNote("the last signature line must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(
            f"a note may carry at most {MAX_SIGNATURES} signatures, not {len(lines)}",
            signatures=len(lines),
        )
    return text, [_parse_signature_line(line) for line in lines]


def _check_note_text(text: str) -> None:
    """Text that can be signed: valid, non-empty, ending in a newline. Raises MalformedNote."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    _check_utf8(text, what="note text")


def sign_note(text: str, *, name: str, signing_key: SigningKey) -> str:
    """Sign ``text`` as a signed note under key name ``name`` (signed-note §Format).

    Requires text ending in '\\n', valid UTF-8 without control characters other than newline,
    and a valid key name. Returns text + '\\n' + '— <name> <base64(key ID || signature)>\\n'.
    Raises MalformedNote.
    """
    _check_note_text(text)
    _check_key_name(name)
    public = signing_key.public_key.raw
    signature = signing_key.unsafe_sign(text.encode("utf-8"))
    line = f"{_SIG_PREFIX}{name} {b64(note_key_id(name, public) + signature)}\n"
    return f"{text}\n{line}"


def add_signature_lines(note: str, lines: Sequence[str]) -> str:
    """Append signature lines (e.g. witness cosignatures) to a syntactically valid note.

    Each line is '— <name> <base64>' without its newline. Signatures are not verified here.
    Raises MalformedNote (bad note, bad line, or more than MAX_SIGNATURES in total).
    """
    _, existing = _split_note(note)
    for line in lines:
        if not isinstance(line, str) or "\n" in line:
            raise MalformedNote("a signature line is one line of text without its newline")
        _check_utf8(line, what="signature line")
        _parse_signature_line(line)
    if len(existing) + len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"a note may carry at most {MAX_SIGNATURES} signatures")
    return note + "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class OpenedNote:
    """A note whose text verified: the text, the trusted keys that signed it (note order,
    each once) and the (name, key ID) of signature lines by keys not configured (each once)."""

    text: str
    verified: tuple[NoteVerifier, ...]
    unverified: tuple[tuple[str, bytes], ...]


def _as_text(note: str | bytes) -> str:
    if isinstance(note, bytes):
        try:
            return note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNote("note is not valid UTF-8", position=exc.start) from exc
    if not isinstance(note, str):
        raise MalformedNote("a note is text")
    return note


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Verify a signed note against the configured verifier keys (signed-note §Signatures).

    A signature line whose (name, key ID) matches no verifier is ignored and listed as
    unverified. Every line that matches one MUST verify. Syntax is checked in full before any
    signature, so a malformed note is always reported as such.
    Raises MalformedNote (syntax, encoding, more than MAX_SIGNATURES lines),
    InvalidNoteSignature (a configured key's signature fails), NoTrustedSignature (no
    configured key signed), ConfigurationError (two verifiers share a name and key ID but
    differ in key: which one to trust is ambiguous).
    """
    text, lines = _split_note(_as_text(note))
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if known.setdefault(slot, verifier) != verifier:
            raise ConfigurationError(
                f"two verifier keys share name {verifier.name!r} and key ID "
                f"{verifier.key_id.hex()}; remove one",
                name=verifier.name,
                key_id=verifier.key_id.hex(),
            )
    message = text.encode("utf-8")
    verified: dict[tuple[str, bytes], NoteVerifier] = {}
    unverified: dict[tuple[str, bytes], None] = {}
    for line in lines:
        slot = (line.name, line.key_id)
        trusted = known.get(slot)
        if trusted is None:
            unverified.setdefault(slot, None)
            continue
        # Every line by a known key is checked, repeated ones too (Go checks only the first):
        # the spec says a known key's signature MUST verify, and a bad one rejects the note.
        try:
            unsafe_verify(trusted.public_key, message, line.signature)
        except (InvalidSignature, InvalidSignatureEncoding) as exc:
            raise InvalidNoteSignature(
                f"the signature by trusted key {trusted.name}+{trusted.key_id.hex()} "
                "does not verify; the note was altered or forged",
                name=trusted.name,
                key_id=trusted.key_id.hex(),
            ) from exc
        verified.setdefault(slot, trusted)
    if not verified:
        raise NoTrustedSignature(
            "the note carries no signature by a trusted key",
            unverified=[f"{name}+{key_id.hex()}" for name, key_id in unverified],
        )
    return OpenedNote(text=text, verified=tuple(verified.values()), unverified=tuple(unverified))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, 32-byte RFC 6962 root, extension lines.

    Construction raises MalformedNote unless: origin and every extension line are non-empty
    single lines of valid text; 0 <= tree_size <= 2^63 - 1; root is 32 bytes.
    """

    origin: str
    tree_size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, line in (("origin", self.origin), *(("extension", e) for e in self.extensions)):
            if not isinstance(line, str) or not line or "\n" in line:
                # tlog-checkpoint §Note text: all lines MUST be non-empty.
                raise MalformedNote(f"checkpoint {what} must be one non-empty line", field=what)
            _check_utf8(line, what=f"checkpoint {what}")
        if (
            not isinstance(self.tree_size, int)
            or isinstance(self.tree_size, bool)
            or not 0 <= self.tree_size <= _MAX_TREE_SIZE
        ):
            raise MalformedNote(
                f"checkpoint tree size must be an integer in [0, {_MAX_TREE_SIZE}]",
                field="tree_size",
            )
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_SIZE:
            raise MalformedNote("checkpoint root must be a 32-byte SHA-256 hash", field="root")

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each ending in '\\n'."""
        lines = [self.origin, str(self.tree_size), b64(self.root), *self.extensions]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly per tlog-checkpoint §Note text.

        Requires at least three lines ending in '\\n': a non-empty origin, a decimal size with
        no leading zeros (``0`` alone for the empty tree) and at most 2^63 - 1, the canonical
        base64 of exactly 32 bytes, then non-empty extension lines. Raises MalformedNote.
        """
        if not isinstance(text, str) or not text.endswith("\n"):
            raise MalformedNote("checkpoint text must end with a newline")
        _check_utf8(text, what="checkpoint")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedNote("a checkpoint has origin, size and root lines")
        origin, size_text, root_text, *extensions = lines
        if not _DECIMAL.fullmatch(size_text):
            raise MalformedNote(
                "checkpoint tree size must be at most 19 decimal digits without leading zeros",
                field="tree_size",
            )
        try:
            root = unb64(root_text, field="root", length=_HASH_SIZE)
        except InvalidField as exc:
            # Stricter than transparency-dev/formats, which accepts roots of any length: an
            # RFC 6962 root over SHA-256 is always 32 bytes.
            raise MalformedNote(
                "checkpoint root must be canonical base64 of a 32-byte hash", field="root"
            ) from exc
        return cls(
            origin=origin, tree_size=int(size_text), root=root, extensions=tuple(extensions)
        )


def sign_checkpoint(checkpoint: Checkpoint, *, signing_key: SigningKey) -> str:
    """Sign a checkpoint as a note whose key name is the origin (PROTOCOL §5).

    Requires an origin that is a valid key name (no spaces, no '+'). Raises MalformedNote.
    """
    return sign_note(checkpoint.body(), name=checkpoint.origin, signing_key=signing_key)


def verify_checkpoint(note: str | bytes, *, verifier: NoteVerifier, origin: str) -> Checkpoint:
    """Verify a signed checkpoint by ``verifier`` for the log ``origin`` and return its body.

    Signatures by other keys (witnesses) are ignored. The origin is compared after the
    signature, so an unsigned text is never interpreted.
    Raises MalformedNote, InvalidNoteSignature, NoTrustedSignature (``verifier`` did not sign)
    or OriginMismatch (signed, but for another log).
    """
    opened = open_note(note, [verifier])
    checkpoint = Checkpoint.parse_body(opened.text)
    if checkpoint.origin != origin:
        raise OriginMismatch(
            f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}",
            expected=origin,
            found=checkpoint.origin,
        )
    return checkpoint


@functools.lru_cache(maxsize=64)
def _check_checkpoint_note(note: str) -> None:
    """Raise MalformedNote unless ``note`` is a syntactically valid signed checkpoint.

    Memoised (a refusal is not, as it raises): the receipts of one block all carry its
    checkpoint, and checking it again for each of a thousand entries cost more than the rest
    of their proofs."""
    text, _ = _split_note(note)
    Checkpoint.parse_body(text)


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A c2sp.org/tlog-proof@v1: leaf index, RFC 9162 audit path and signed checkpoint.

    Construction raises MalformedProof unless index >= 0, at most 63 hashes of 32 bytes each,
    and ``checkpoint`` is a syntactically valid signed checkpoint note (signatures are only
    checked by :meth:`verify`).
    """

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.index, int)
            or isinstance(self.index, bool)
            or not 0 <= self.index < _MAX_TREE_SIZE
        ):
            raise MalformedProof("proof index must be a non-negative integer", field="index")
        if not isinstance(self.hashes, tuple) or len(self.hashes) > _MAX_PROOF_HASHES:
            raise MalformedProof(
                f"an inclusion proof is a tuple of at most {_MAX_PROOF_HASHES} hashes",
                field="hashes",
            )
        for position, node in enumerate(self.hashes):
            if not isinstance(node, bytes) or len(node) != _HASH_SIZE:
                raise MalformedProof(
                    f"proof hash {position} must be 32 bytes", field="hashes", position=position
                )
        if self.extra is not None and not isinstance(self.extra, bytes):
            raise MalformedProof("proof extra data must be bytes", field="extra")
        if not isinstance(self.checkpoint, str):
            raise MalformedProof("proof checkpoint must be note text", field="checkpoint")
        try:
            _check_checkpoint_note(self.checkpoint)
        except MalformedNote as exc:
            raise MalformedProof(
                f"proof checkpoint is not a signed checkpoint: {exc.detail}", field="checkpoint"
            ) from exc

    def format(self) -> str:
        """The tlog-proof text: header, optional extra, index, hashes, blank line, checkpoint."""
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64(node) for node in self.hashes)
        return "".join(f"{line}\n" for line in lines) + "\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        """Parse a tlog-proof strictly.

        Requires the exact header line, at most one ``extra <base64>`` line before the
        ``index`` line, a decimal index without leading zeros, one canonical base64 32-byte
        hash per line, one empty line, then a signed checkpoint note and nothing after it
        (anything after the last signature line makes the note malformed).
        Raises MalformedProof.
        """
        if not isinstance(text, str):
            raise MalformedProof("a tlog proof is text")
        head, separator, checkpoint = text.partition("\n\n")
        if not separator:
            raise MalformedProof("a tlog proof needs an empty line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != TLOG_PROOF_HEADER:
            raise MalformedProof(f"a tlog proof starts with the line {TLOG_PROOF_HEADER!r}")
        position = 1
        extra: bytes | None = None
        if position < len(lines) and lines[position].startswith("extra"):
            match = _PROOF_EXTRA.fullmatch(lines[position])
            try:
                if match is None:
                    raise InvalidField("malformed extra line", field="extra")
                extra = unb64(match.group(1), field="extra")
            except InvalidField as exc:
                raise MalformedProof(
                    "the extra line is 'extra <standard padded base64>'", field="extra"
                ) from exc
            position += 1
        if position >= len(lines):
            raise MalformedProof("a tlog proof needs an index line", field="index")
        match = _PROOF_INDEX.fullmatch(lines[position])
        if match is None:
            raise MalformedProof(
                "the index line is 'index <decimal without leading zeros, at most 19 digits>'",
                field="index",
            )
        index = int(match.group(1))
        hashes: list[bytes] = []
        for offset, line in enumerate(lines[position + 1 :]):
            try:
                hashes.append(unb64(line, field="hashes", length=_HASH_SIZE))
            except InvalidField as exc:
                raise MalformedProof(
                    f"proof hash {offset} must be canonical base64 of 32 bytes",
                    field="hashes",
                    position=offset,
                ) from exc
        return cls(index=index, hashes=tuple(hashes), checkpoint=checkpoint, extra=extra)

    def verify(self, *, leaf_hash: bytes, verifier: NoteVerifier, origin: str) -> Checkpoint:
        """Verify the checkpoint signature and origin, then the inclusion of ``leaf_hash``.

        Returns the verified checkpoint. Raises MalformedNote, InvalidNoteSignature,
        NoTrustedSignature, OriginMismatch (see :func:`verify_checkpoint`) or InvalidProof
        (RFC 9162 §2.1.3.2, including index >= tree size).
        """
        checkpoint = verify_checkpoint(self.checkpoint, verifier=verifier, origin=origin)
        # Imported here so that parsing proofs does not load the Merkle module's dependencies.
        from ledger.merkle import verify_inclusion

        verify_inclusion(
            leaf_hash=leaf_hash,
            index=self.index,
            tree_size=checkpoint.tree_size,
            proof=list(self.hashes),
            root=checkpoint.root,
        )
        return checkpoint


def parse_cosignature(sig: bytes) -> tuple[bytes, int, bytes]:
    """Decode a tlog-cosignature v1 (type 0x04) signature: key ID, timestamp, Ed25519 signature.

    Requires 76 bytes = 4-byte key ID || u64 big-endian timestamp || 64-byte signature, the
    timestamp at most 2^63 - 1 (tlog-cosignature §Format). Does not verify the signature.
    Raises MalformedNote.
    """
    if not isinstance(sig, bytes) or len(sig) != _KEY_ID_SIZE + 8 + _ED25519_SIGNATURE_SIZE:
        raise MalformedNote("a cosignature/v1 signature is 76 bytes", field="signature")
    timestamp = int.from_bytes(sig[_KEY_ID_SIZE : _KEY_ID_SIZE + 8], "big")
    if timestamp > 2**63 - 1:
        raise MalformedNote("cosignature timestamp exceeds 2^63 - 1", field="timestamp")
    return sig[:_KEY_ID_SIZE], timestamp, sig[_KEY_ID_SIZE + 8 :]


def split_note(note: str | bytes) -> tuple[str, tuple[SignatureLine, ...]]:
    """A note's text and its signature lines, checked for syntax only (nothing is verified).

    signed-note §Format. Raises MalformedNote.
    """
    text, lines = _split_note(_as_text(note))
    return text, tuple(lines)


def parse_signature_line(line: str) -> SignatureLine:
    """One signature line, without its newline: '— <name> <base64(key ID || signature)>'.

    Raises MalformedNote.
    """
    if not isinstance(line, str) or "\n" in line:
        raise MalformedNote("a signature line is one line of text without its newline")
    _check_utf8(line, what="signature line")
    return _parse_signature_line(line)


def check_key_name(name: str) -> None:
    """signed-note §Format: a non-empty key name without spaces, controls or '+'.

    Raises MalformedNote.
    """
    if not isinstance(name, str):
        raise MalformedNote("a key name is text", field="name")
    _check_key_name(name)
