"""Blocks (PROTOCOL §5): the JCS-hashed header, its hash chain and the ledger's signature.

A block commits to the whole log at ``tree_size`` through ``root`` (the RFC 6962 tree hash),
and to its predecessor through ``prev``; the ledger key signs
``filiera/block/v1\\n || SHA-256(JCS(header))``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NewType

from . import jcs
from .encoding import b64, unb64, unhex32
from .errors import ChainBroken, InvalidField, InvalidSignature, InvalidSignatureEncoding, MissingField, UnknownField
from .keys import SigningKey, unsafe_verify

__all__ = [
    "BLOCK_CONTEXT",
    "GENESIS_PREV",
    "BlockHash",
    "BlockHeader",
    "SignedBlock",
    "sign_block",
    "verify_block_signature",
]

BLOCK_CONTEXT = b"filiera/block/v1\n"
GENESIS_PREV = "0" * 64

BlockHash = NewType("BlockHash", str)

_HEADER_FIELDS = ("ledger", "height", "prev", "time", "first_index", "tree_size", "root")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    ledger: str
    height: int
    prev: str
    time: str
    first_index: int
    tree_size: int
    root: str

    def __post_init__(self) -> None:
        if self.height < 0 or self.first_index < 0 or self.tree_size <= self.first_index:
            raise InvalidField(
                "a block needs height >= 0 and first_index < tree_size", field="header"
            )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _HEADER_FIELDS}

    def canonical(self) -> bytes:
        return jcs.canonicalize(self.to_json())

    def hash_raw(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()

    def hash(self) -> BlockHash:
        return BlockHash(self.hash_raw().hex())

    @classmethod
    def from_json(cls, obj: Any) -> BlockHeader:
        """Parse a header object. Raises InvalidField, MissingField, UnknownField."""
        if not isinstance(obj, dict):
            raise InvalidField("a block header must be an object", field="header")
        for name in obj:
            if name not in _HEADER_FIELDS:
                raise UnknownField(f"unknown block header field {name}", field=name)
        for name in _HEADER_FIELDS:
            if name not in obj:
                raise MissingField(f"block header lacks {name}", field=name)
        for name in ("height", "first_index", "tree_size"):
            if type(obj[name]) is not int:
                raise InvalidField(f"block header {name} must be an integer", field=name)
        unhex32(obj["prev"], field="prev")
        unhex32(obj["root"], field="root")
        if not isinstance(obj["ledger"], str) or not isinstance(obj["time"], str):
            raise InvalidField("block header ledger and time must be strings", field="header")
        return cls(**{name: obj[name] for name in _HEADER_FIELDS})


@dataclass(frozen=True, slots=True)
class SignedBlock:
    header: BlockHeader
    hash: BlockHash
    signature: bytes
    entries: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "hash": self.hash,
            "signature": b64(self.signature),
            "entries": list(self.entries),
        }


def _message(header: BlockHeader) -> bytes:
    return BLOCK_CONTEXT + header.hash_raw()


def sign_block(header: BlockHeader, key: SigningKey) -> bytes:
    """The ledger's Ed25519 signature over a block header."""
    return key.unsafe_sign(_message(header))


def verify_block_signature(header: BlockHeader, signature: bytes | str, public_key: bytes) -> None:
    """Raises ChainBroken if ``signature`` is not the ledger's signature over ``header``
    (including raw bytes that are not 64 long)."""
    try:
        raw = signature if isinstance(signature, bytes) else unb64(signature, field="signature", length=64)
        unsafe_verify(public_key, _message(header), raw)
    except (InvalidSignature, InvalidSignatureEncoding, InvalidField) as exc:
        raise ChainBroken(
            f"block {header.height}: the ledger signature does not verify",
            height=header.height,
            reason="block_signature",
        ) from exc
