"""Witness cosignatures: c2sp.org/tlog-cosignature@v1 (signature type 0x04) and cosigner keys.

A cosignature is a signed-note signature line by a witness over a checkpoint. Its key ID is
SHA-256(name || 0x0A || 0x04 || Ed25519 public key)[:4]; its signature is the 72-byte
``timestamped_signature``: an 8-byte big-endian POSIX time, then an Ed25519 signature over

    cosignature/v1\\n
    time <timestamp>\\n
    <the whole checkpoint body>

(tlog-cosignature §Format, §Signed message). The header line separates this message from the
checkpoint text the log itself signs, so neither signature can stand in for the other.

Cosigner keys are published as vkeys of type 0x04. The private key is kept in Go's signed-note
key format, ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``, which Go's
``golang.org/x/mod/sumdb/note`` and transparency-dev's cosigner accept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.encoding import b64, unb64
from ledger.errors import (
    InvalidField,
    InvalidKeyFile,
    InvalidNoteSignature,
    InvalidSignature,
    InvalidSignatureEncoding,
    MalformedNote,
    NoTrustedSignature,
)
from ledger.keys import SEED_SIZE, SigningKey, unsafe_verify
from ledger.notes import (
    COSIGNATURE_V1_TYPE,
    ED25519_TYPE,
    Checkpoint,
    SignatureLine,
    check_key_name,
    note_key_id,
    parse_cosignature,
    parse_signature_line,
    split_note,
)

__all__ = [
    "CosignerVerifier",
    "Cosigner",
    "cosign",
    "cosigned_message",
    "verify_cosignature",
    "cosignatures_in",
    "FoundCosignature",
    "MAX_TIMESTAMP",
]

MAX_TIMESTAMP = 2**63 - 1
_HEADER = "cosignature/v1\n"
_SIG_PREFIX = "\u2014 "
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_SKEY_PREFIX = "PRIVATE+KEY+"


def cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    """The bytes a v1 cosignature signs (tlog-cosignature §Signed message)."""
    _check_timestamp(timestamp)
    return f"{_HEADER}time {timestamp}\n{checkpoint.body()}".encode("utf-8")


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedNote(
            f"a cosignature timestamp is an integer in [0, {MAX_TIMESTAMP}]", field="timestamp"
        )


@dataclass(frozen=True, slots=True)
class CosignerVerifier:
    """A witness's public cosigning key (type 0x04): name, 4-byte key ID, Ed25519 key.

    Construction raises MalformedNote unless the name is a valid note key name, the key is 32
    bytes and ``key_id`` is the type 0x04 key ID of the name and key.
    """

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise MalformedNote("an Ed25519 cosigner key is 32 bytes", field="public_key")
        if self.key_id != note_key_id(self.name, self.public_key, key_type=COSIGNATURE_V1_TYPE):
            raise MalformedNote(
                f"key ID does not match cosigner name {self.name!r} and its public key",
                field="key_id",
            )

    @classmethod
    def of(cls, name: str, public_key: bytes) -> CosignerVerifier:
        """The verifier for ``public_key`` under the witness name ``name``. Raises MalformedNote."""
        key_id = note_key_id(name, public_key, key_type=COSIGNATURE_V1_TYPE)
        return cls(name=name, key_id=key_id, public_key=public_key)

    @property
    def vkey(self) -> str:
        """``<name>+<8 hex>+<base64(0x04 || key)>`` (signed-note §Verifier keys, type 0x04)."""
        material = b64(bytes([COSIGNATURE_V1_TYPE]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> CosignerVerifier:
        """Parse a type 0x04 vkey. Other types, including plain Ed25519 note keys (0x01), are
        refused: a witness is trusted for cosignatures, not for signing notes.
        Raises MalformedNote."""
        if not isinstance(vkey, str):
            raise MalformedNote("a verifier key is text", field="vkey")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedNote("a verifier key is <name>+<hex key ID>+<base64 key>", field="vkey")
        name, hex_id, material_b64 = parts
        check_key_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise MalformedNote("the key ID must be 8 lowercase hex digits", field="vkey")
        try:
            material = unb64(material_b64, field="vkey")
        except InvalidField as exc:
            raise MalformedNote("the key material must be standard padded base64", field="vkey") from exc
        if len(material) != 33 or material[0] != COSIGNATURE_V1_TYPE:
            raise MalformedNote(
                "a cosigner vkey holds 0x04 (tlog-cosignature v1) and a 32-byte Ed25519 key",
                field="vkey",
            )
        return cls(name=name, key_id=bytes.fromhex(hex_id), public_key=material[1:])


@dataclass(frozen=True, slots=True, repr=False)
class Cosigner:
    """A witness's name and signing key. ``repr`` shows only the public side."""

    name: str
    signing_key: SigningKey

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @property
    def verifier(self) -> CosignerVerifier:
        return CosignerVerifier.of(self.name, self.signing_key.public_key.raw)

    def __repr__(self) -> str:
        return f"Cosigner({self.verifier.vkey!r})"

    def skey(self) -> str:
        """The private key in Go's note format (type 0x01 key ID, as Go writes it), with a
        final newline. A secret: write it with :func:`ledger.keys.write_secret_file`."""
        public = self.signing_key.public_key.raw
        key_id = note_key_id(self.name, public, key_type=ED25519_TYPE).hex()
        material = b64(bytes([ED25519_TYPE]) + self.signing_key.seed)
        return f"{_SKEY_PREFIX}{self.name}+{key_id}+{material}\n"

    @classmethod
    def parse_skey(cls, text: str, *, source: str) -> Cosigner:
        """Parse :meth:`skey` text (one optional final newline). Never puts key material in an
        error. Raises InvalidKeyFile."""
        def reject(problem: str) -> InvalidKeyFile:
            return InvalidKeyFile(f"{source} is not a witness key file: {problem}", path=source)

        line = text[:-1] if text.endswith("\n") else text
        if not line.startswith(_SKEY_PREFIX) or "\n" in line:
            raise reject(f"expected one line {_SKEY_PREFIX}<name>+<key ID>+<key>")
        parts = line[len(_SKEY_PREFIX):].split("+", 2)
        if len(parts) != 3 or not _HEX_KEY_ID.fullmatch(parts[1]):
            raise reject("expected <name>+<8 hex key ID>+<base64 key> after PRIVATE+KEY+")
        name, hex_id, material_b64 = parts
        try:
            material = unb64(material_b64, field="key")
        except InvalidField as exc:
            raise reject("the key is not standard padded base64") from exc
        if len(material) != 1 + SEED_SIZE or material[0] != ED25519_TYPE:
            raise reject("the key is not 0x01 followed by a 32-byte Ed25519 seed")
        try:
            cosigner = cls(name=name, signing_key=SigningKey(material[1:]))
        except MalformedNote as exc:
            raise reject("the name is not a valid key name") from exc
        if note_key_id(name, cosigner.signing_key.public_key.raw).hex() != hex_id:
            raise reject("the key ID does not match the name and key")
        return cosigner

    def cosign(self, checkpoint: Checkpoint, *, timestamp: int) -> str:
        """See :func:`cosign`."""
        return cosign(checkpoint, cosigner=self, timestamp=timestamp)


def cosign(checkpoint: Checkpoint, *, cosigner: Cosigner, timestamp: int) -> str:
    """The cosignature line ``— <name> <base64>`` (no newline) over ``checkpoint`` at
    ``timestamp`` (POSIX seconds). Requires 0 <= timestamp <= 2^63 - 1. Raises MalformedNote.
    """
    signature = cosigner.signing_key.unsafe_sign(cosigned_message(checkpoint, timestamp))
    raw = cosigner.verifier.key_id + timestamp.to_bytes(8, "big") + signature
    return f"{_SIG_PREFIX}{cosigner.name} {b64(raw)}"


def _verify_line(checkpoint: Checkpoint, line: SignatureLine, verifier: CosignerVerifier) -> int:
    key_id, timestamp, signature = parse_cosignature(line.key_id + line.signature)
    try:
        unsafe_verify(verifier.public_key, cosigned_message(checkpoint, timestamp), signature)
    except (InvalidSignature, InvalidSignatureEncoding) as exc:
        raise InvalidNoteSignature(
            f"the cosignature by witness {verifier.name}+{key_id.hex()} does not verify",
            name=verifier.name,
            key_id=key_id.hex(),
        ) from exc
    return timestamp


def verify_cosignature(checkpoint: Checkpoint, line: str, verifier: CosignerVerifier) -> int:
    """Verify one cosignature line (no newline) by ``verifier``; return its timestamp.

    Raises MalformedNote (syntax, not 76 bytes), NoTrustedSignature (another key's line) or
    InvalidNoteSignature (the signature does not verify).
    """
    parsed = parse_signature_line(line)
    if (parsed.name, parsed.key_id) != (verifier.name, verifier.key_id):
        raise NoTrustedSignature(
            f"the line is by {parsed.name}+{parsed.key_id.hex()}, not by witness {verifier.name}",
            unverified=[f"{parsed.name}+{parsed.key_id.hex()}"],
        )
    return _verify_line(checkpoint, parsed, verifier)


@dataclass(frozen=True, slots=True)
class FoundCosignature:
    """A verified cosignature in a note: who, when, and the line as it appeared."""

    verifier: CosignerVerifier
    timestamp: int
    line: str


def cosignatures_in(
    note: str | bytes, verifiers: Sequence[CosignerVerifier]
) -> tuple[Checkpoint, tuple[FoundCosignature, ...]]:
    """The checkpoint of a note and its cosignatures by the given witnesses (note order, the
    first line of each witness). Lines by other keys, the log's included, are ignored; every
    line by a given witness must verify (signed-note §Signatures). The log's own signature is
    not checked here: use :func:`ledger.notes.verify_checkpoint` for that.
    Raises MalformedNote or InvalidNoteSignature.
    """
    text, lines = split_note(note)
    checkpoint = Checkpoint.parse_body(text)
    known = {(v.name, v.key_id): v for v in verifiers}
    found: dict[tuple[str, bytes], FoundCosignature] = {}
    for line in lines:
        verifier = known.get((line.name, line.key_id))
        if verifier is None:
            continue
        timestamp = _verify_line(checkpoint, line, verifier)
        raw = b64(line.key_id + line.signature)
        found.setdefault(
            (line.name, line.key_id),
            FoundCosignature(verifier, timestamp, f"{_SIG_PREFIX}{line.name} {raw}"),
        )
    return checkpoint, tuple(found.values())
