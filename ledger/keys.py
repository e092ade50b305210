"""Ed25519 keys: key ids, strict verification, signing keys and key files.

Implements PROTOCOL.md §2 (keys) and the key-file part of §8. Validity is decided by libsodium
as PyNaCl ships it, never by OpenSSL (the ``cryptography`` package), whose verifier accepts
small-order keys and ``R`` values that libsodium refuses (see tests/ledger/test_keys.py, CCTV table).

Two different strictness levels apply, on purpose:

* **Verification** (:func:`unsafe_verify`) is exactly libsodium's ``crypto_sign_verify_detached``:
  it refuses ``S >= L``, small-order ``A`` or ``R``, non-canonical ``A``, a non-canonical ``R``
  (``R`` is compared by encoding), and uses the cofactorless equation. It does not insist that ``A``
  lie in the prime-order subgroup.
* **Registration** (:class:`PublicKey`) additionally requires the key to be in the prime-order
  subgroup (``crypto_core_ed25519_is_valid_point``). That is stricter than "not small order", and
  safe: RFC 8032 §5.1.5 key generation computes ``A = [s]B`` with ``B`` the prime-order base point,
  so every key made by any conforming implementation passes. Only hand-crafted mixed-order keys,
  whose signatures some verifiers accept and others refuse, are kept out of the registry.

Everything here signs or verifies raw bytes with no domain separation; callers in other modules
prefix ``filiera/<kind>/v1\\n`` (PROTOCOL §3, §5, §7), which is why the raw calls are ``unsafe_``.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NewType

import nacl.bindings
import nacl.exceptions

from ledger.encoding import b64, check_participant_id, hex_of, sha256, unb64
from ledger.errors import (
    InvalidField,
    InvalidKey,
    InvalidKeyFile,
    InvalidSignature,
    InvalidSignatureEncoding,
    LedgerError,
    UnsafeKeyFile,
    WeakKey,
)

__all__ = [
    "KeyId",
    "key_id",
    "PublicKey",
    "SigningKey",
    "unsafe_verify",
    "KeyFile",
    "write_key_file",
    "read_key_file",
    "write_secret_file",
    "read_secret_file",
    "signing_key_from_env",
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
]

KeyId = NewType("KeyId", str)

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64

_KEY_ID = re.compile(r"[0-9a-f]{16}")
_KEY_FILE_FIELDS = frozenset({"participant", "key_id", "public_key", "private_key"})
# A key file is about 200 bytes; anything far larger is not one, and is not read into memory.
_MAX_KEY_FILE_SIZE = 4096


def key_id(public_key: bytes) -> KeyId:
    """Return the key id of a raw public key: the first 16 hex digits of its SHA-256 (§2).

    Requires nothing of the key beyond being bytes; callers validate it first.
    """
    return KeyId(hex_of(sha256(public_key))[:16])


@functools.lru_cache(maxsize=65536)
def _is_valid_point(raw: bytes) -> bool:
    """libsodium's crypto_core_ed25519_is_valid_point, remembered: it costs about as much as a
    signature check, and each key of an entry is checked several times (intake, then sealing)."""
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(raw))


def _check_public_key(raw: object, *, field_name: str) -> bytes:
    """Return ``raw`` if it is a registrable Ed25519 key. Raises InvalidKey or WeakKey."""
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_SIZE:
        size = len(raw) if isinstance(raw, bytes) else None
        raise InvalidKey(
            f"{field_name} must be a {PUBLIC_KEY_SIZE}-byte Ed25519 public key",
            field=field_name,
            length=size,
        )
    # is_valid_point: canonical encoding, on the curve, not small order, and in the prime-order
    # subgroup. PROTOCOL §2 only demands "canonical and not small order"; the subgroup test is
    # stricter but no honest key can fail it (see the module docstring).
    if not _is_valid_point(raw):
        raise WeakKey(
            f"{field_name} is not a canonical Ed25519 point of prime order; "
            "generate a new key with a standard Ed25519 key generator",
            field=field_name,
            key_id=key_id(raw),
        )
    return raw


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A registrable Ed25519 public key (raw 32 bytes).

    Construction raises InvalidKey if ``raw`` is not 32 bytes and WeakKey if it is not a
    canonical point of the prime-order subgroup (so never small order).
    """

    raw: bytes

    def __post_init__(self) -> None:
        _check_public_key(self.raw, field_name="public_key")

    @property
    def key_id(self) -> KeyId:
        """The PROTOCOL §2 key id (16 lowercase hex digits)."""
        return key_id(self.raw)

    @property
    def b64(self) -> str:
        """Standard padded base64 of the raw key, as it appears on the wire (§1)."""
        return b64(self.raw)

    @classmethod
    def from_b64(cls, value: object, *, field: str) -> PublicKey:
        """Parse a key from wire text, naming ``field`` in any refusal.

        Requires standard padded base64 of exactly 32 bytes. Raises InvalidKey (not a string,
        not strict base64, wrong length) or WeakKey (not registrable).
        """
        try:
            raw = unb64(value, field=field)
        except InvalidField as exc:
            raise InvalidKey(exc.detail, field=field) from exc
        return cls(_check_public_key(raw, field_name=field))

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r}, b64={self.b64!r})"


def unsafe_verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify a raw Ed25519 signature exactly as libsodium's crypto_sign_verify_detached does.

    Unsafe because it adds no domain-separation prefix: call it only from code that builds the
    ``filiera/.../v1\\n`` message itself. Requires a 64-byte signature and a 32-byte key.
    Raises InvalidSignatureEncoding (signature length), InvalidKey (key length) or
    InvalidSignature (anything libsodium refuses, including small-order or non-canonical keys).
    """
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise InvalidSignatureEncoding(
            f"an Ed25519 signature is {SIGNATURE_SIZE} bytes",
            length=len(signature) if isinstance(signature, bytes) else None,
        )
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKey(
            f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes",
            field="public_key",
            length=len(public_key) if isinstance(public_key, bytes) else None,
        )
    try:
        # crypto_sign_open runs crypto_sign_verify_detached on (signature, message): the
        # PROTOCOL §2 definition of a valid signature.
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise InvalidSignature(
            "Ed25519 signature does not verify", key_id=key_id(public_key)
        ) from exc


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SigningKey:
    """An Ed25519 private key, held as its 32-byte RFC 8032 seed.

    Construction raises InvalidKey unless ``seed`` is 32 bytes. The public key is derived once.
    ``repr`` shows only the public key, so the seed never reaches a log or a traceback.
    """

    seed: bytes
    _secret: bytes = field(init=False, compare=False)
    _public: PublicKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_SIZE:
            raise InvalidKey(f"an Ed25519 seed is {SEED_SIZE} bytes", field="private_key")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(self.seed)
        # Frozen dataclasses refuse attribute assignment; these derived values are set exactly
        # once, here, so the instance stays immutable to its users.
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_public", PublicKey(public))

    @classmethod
    def generate(cls) -> SigningKey:
        """A new key from the operating system's CSPRNG."""
        return cls(os.urandom(SEED_SIZE))

    @property
    def public_key(self) -> PublicKey:
        """The matching public key; always registrable (RFC 8032 §5.1.5 keys are in the subgroup)."""
        return self._public

    def unsafe_sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached Ed25519 signature of ``message`` (deterministic).

        Unsafe because it adds no domain-separation prefix; see :func:`unsafe_verify`.
        """
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_SIZE]

    def __eq__(self, other: object) -> bool:
        # Constant-time, so comparing keys never leaks how many seed bytes matched.
        if not isinstance(other, SigningKey):
            return NotImplemented
        return hmac.compare_digest(self.seed, other.seed)

    def __hash__(self) -> int:
        return hash(self._public.raw)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self._public.b64!r}, key_id={self._public.key_id!r})"


@dataclass(frozen=True, repr=False)
class KeyFile:
    """The contents of a key file (PROTOCOL §8): a participant id and its signing key.

    Construction raises InvalidField if ``participant`` is not a participant id (§1).
    """

    participant: str
    signing_key: SigningKey

    def __post_init__(self) -> None:
        check_participant_id(self.participant, field="participant")

    @property
    def public_key(self) -> PublicKey:
        return self.signing_key.public_key

    @property
    def key_id(self) -> KeyId:
        return self.signing_key.public_key.key_id

    def to_json(self) -> str:
        """The §8 JSON text, with a final newline. Contains the private key: handle as a secret."""
        document = {
            "participant": self.participant,
            "key_id": self.key_id,
            "public_key": self.public_key.b64,
            "private_key": b64(self.signing_key.seed),
        }
        return json.dumps(document, indent=2) + "\n"

    def __repr__(self) -> str:
        return f"KeyFile(participant={self.participant!r}, signing_key={self.signing_key!r})"


def write_key_file(
    path: Path, *, participant: str, signing_key: SigningKey, overwrite: bool = False
) -> None:
    """Write a §8 key file with mode 0600, never readable by others even for a moment.

    Without ``overwrite`` the file must not exist. With it, the new key is written to a fresh
    0600 file beside ``path`` and renamed over it, so the old file's mode, any reader that holds
    it open, or a crash mid-write can never expose or half-write the new secret.
    Raises InvalidField (bad participant id) or InvalidKeyFile (exists, or cannot be written).
    """
    text = KeyFile(participant=participant, signing_key=signing_key).to_json().encode("utf-8")
    write_secret_file(path, text, overwrite=overwrite)


def write_secret_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write secret bytes (any key file format) with mode 0600, as :func:`write_key_file` does.

    Raises InvalidKeyFile (exists without ``overwrite``, or cannot be written).
    """
    path = Path(path)
    if overwrite:
        target = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    else:
        target = path
    # O_EXCL refuses an existing file or symlink, so the secret is never written through a link
    # someone else planted. The mode argument is filtered by the umask, which can only remove
    # bits; fchmod then pins exactly 0600 whatever the umask was.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise InvalidKeyFile(
            f"key file {path} already exists; remove it or choose another path",
            path=str(path),
        ) from exc
    except OSError as exc:
        raise InvalidKeyFile(
            f"cannot create key file {path}: {exc.strerror}", path=str(path)
        ) from exc
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(target, path)
    except OSError as exc:
        if overwrite:
            try:
                os.unlink(target)
            except OSError:
                pass
        raise InvalidKeyFile(
            f"cannot write key file {path}: {exc.strerror}", path=str(path)
        ) from exc


def _reject(source: str, problem: str) -> InvalidKeyFile:
    return InvalidKeyFile(f"{source} is not a Filiera key file: {problem}", path=source)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def _parse_key_json(text: str, *, source: str) -> KeyFile:
    """Parse and cross-check §8 JSON. Never puts key material in an error. Raises InvalidKeyFile."""
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # json.JSONDecodeError and duplicate members
        raise _reject(source, "not a JSON object with unique members") from exc
    if not isinstance(document, dict):
        raise _reject(source, "not a JSON object")
    members = set(document)
    if members != _KEY_FILE_FIELDS:
        missing = sorted(_KEY_FILE_FIELDS - members)
        extra = sorted(members - _KEY_FILE_FIELDS)
        raise _reject(source, f"missing members {missing}, unexpected members {extra}")
    for name in sorted(_KEY_FILE_FIELDS):
        if not isinstance(document[name], str):
            raise _reject(source, f"{name} must be a string")
    try:
        seed = unb64(document["private_key"], field="private_key", length=SEED_SIZE)
        signing_key = SigningKey(seed)
    except LedgerError as exc:
        raise _reject(source, "private_key must be base64 of a 32-byte seed") from exc
    try:
        key_file = KeyFile(participant=document["participant"], signing_key=signing_key)
    except LedgerError as exc:
        raise _reject(source, "participant is not a valid participant id") from exc
    # The public key and key id are redundant copies; a mismatch means the file was edited or
    # assembled from two keys, and guessing which half is right would sign with the wrong key.
    if not _KEY_ID.fullmatch(document["key_id"]) or document["key_id"] != key_file.key_id:
        raise _reject(source, "key_id does not match the private key")
    if document["public_key"] != key_file.public_key.b64:
        raise _reject(source, "public_key does not match the private key")
    return key_file


def read_key_file(path: Path) -> KeyFile:
    """Read a §8 key file, refusing one that group or others could read or write.

    Permissions are checked on the opened file (fstat), so a swap between check and read cannot
    slip a different file past the check. Symlinks are followed: secret mounts use them.
    Raises UnsafeKeyFile (mode allows group/other access; detail says to ``chmod 600``) or
    InvalidKeyFile (unreadable, not a regular file, too large, malformed, inconsistent).
    """
    return _parse_key_json(read_secret_file(path), source=str(path))


def read_secret_file(path: Path) -> str:
    """The text of a key file (any format), checked as :func:`read_key_file` checks it.

    Raises UnsafeKeyFile (group or others may access it) or InvalidKeyFile (unreadable, not a
    regular file, larger than 4 KiB, not UTF-8).
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang start-up; it is then
        # refused as not a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidKeyFile(
            f"cannot open key file {path}: {exc.strerror}", path=str(path)
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _reject(str(path), "not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise UnsafeKeyFile(
                f"key file {path} has mode {mode:04o}, so other users may read the private key; "
                f"run: chmod 600 {path}",
                path=str(path),
                mode=f"{mode:04o}",
            )
        chunks: list[bytes] = []
        remaining = _MAX_KEY_FILE_SIZE + 1
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise InvalidKeyFile(
            f"cannot read key file {path}: {exc.strerror}", path=str(path)
        ) from exc
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_SIZE:
        raise _reject(str(path), f"larger than {_MAX_KEY_FILE_SIZE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _reject(str(path), "not UTF-8") from exc


def signing_key_from_env(value: str) -> SigningKey:
    """Parse the §8 key-file JSON given as text (e.g. an environment variable's value).

    The same cross-checks as :func:`read_key_file` apply; there is no file mode to check.
    Raises InvalidKeyFile.
    """
    if not isinstance(value, str) or len(value) > _MAX_KEY_FILE_SIZE:
        raise _reject("the key environment variable", "not key-file JSON text")
    return _parse_key_json(value, source="the key environment variable").signing_key
