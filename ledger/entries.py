"""Entry envelopes (PROTOCOL §3): entry id, signed message, leaf data and leaf hash.

An :class:`Envelope` that exists has a well-formed payload for its type, well-formed
signatures, and its derived values (id, leaf data, leaf hash) computed once. Whether its
signatures verify and are *authorised* is decided by ``ledger.rules`` against the ledger
state at the entry's position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NewType

from . import jcs
from .encoding import b64, check_key_id, check_participant_id, unb64
from .errors import (
    InvalidField,
    InvalidSignatureEncoding,
    MissingField,
    UnknownField,
    WrongLedger,
)
from .keys import KeyId, SigningKey, key_id, unsafe_verify
from .merkle import leaf_hash as merkle_leaf_hash
from .payloads import EntryType, validate_payload

__all__ = [
    "ENTRY_CONTEXT",
    "EntryId",
    "LeafHash",
    "Signature",
    "Envelope",
    "parse_envelope",
    "envelope_from_leaf",
    "entry_message",
    "sign_payload",
    "add_signature",
    "verify_entry_signature",
    "MAX_SIGNATURES",
]

ENTRY_CONTEXT = b"filiera/entry/v1\n"
MAX_SIGNATURES = 16

EntryId = NewType("EntryId", str)
LeafHash = NewType("LeafHash", bytes)


@dataclass(frozen=True, slots=True)
class Signature:
    signer: str
    key_id: KeyId
    sig: bytes

    def to_json(self) -> dict[str, str]:
        return {"signer": self.signer, "key_id": self.key_id, "sig": b64(self.sig)}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A well-formed entry. Build with :func:`parse_envelope`, never directly."""

    payload: Mapping[str, Any]
    signatures: tuple[Signature, ...]
    type: EntryType
    id: EntryId
    id_raw: bytes
    leaf_data: bytes
    leaf_hash: LeafHash

    @property
    def author(self) -> str:
        return str(self.payload["author"])

    @property
    def nonce(self) -> str:
        return str(self.payload["nonce"])

    @property
    def time(self) -> str:
        return str(self.payload["time"])

    def signers(self) -> frozenset[str]:
        return frozenset(s.signer for s in self.signatures)

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload, "signatures": [s.to_json() for s in self.signatures]}


def entry_message(entry_id_raw: bytes) -> bytes:
    """The bytes every entry signature covers: the context line and the raw 32-byte id."""
    return ENTRY_CONTEXT + entry_id_raw


def _parse_signature(obj: Any, i: int) -> Signature:
    field = f"signatures[{i}]"
    if not isinstance(obj, dict):
        raise InvalidField(f"{field} must be an object", field=field)
    for name in obj:
        if name not in ("signer", "key_id", "sig"):
            raise UnknownField(f"unknown field {field}.{name}", field=f"{field}.{name}")
    for name in ("signer", "key_id", "sig"):
        if name not in obj:
            raise MissingField(f"missing field {field}.{name}", field=f"{field}.{name}")
    signer = check_participant_id(obj["signer"], field=f"{field}.signer")
    kid = KeyId(check_key_id(obj["key_id"], field=f"{field}.key_id"))
    try:
        sig = unb64(obj["sig"], field=f"{field}.sig", length=64)
    except InvalidField as exc:
        raise InvalidSignatureEncoding(
            f"{field}.sig must be 64 bytes of standard base64 (RFC 4648 §4)", field=f"{field}.sig"
        ) from exc
    return Signature(signer=signer, key_id=kid, sig=sig)


def parse_envelope(obj: Any, *, origin: str | None, plain: bytes | None = None) -> Envelope:
    """Check an envelope's shape and compute its id, leaf data and leaf hash.

    ``origin`` is the ledger's origin that ``payload.ledger`` must equal (None only while
    reading a genesis entry whose origin is not yet known).
    Raises MalformedInput leaves (InvalidField, MissingField, UnknownField, UnknownType,
    WrongLedger, InvalidSignatureEncoding, PersonalData, InvalidNumber, InvalidString).
    """
    if not isinstance(obj, dict):
        raise InvalidField("an entry must be a JSON object with payload and signatures", field="")
    for name in obj:
        if name not in ("payload", "signatures"):
            raise UnknownField(
                f"unknown field {name}; an entry has only payload and signatures", field=name
            )
    if "payload" not in obj:
        raise MissingField("missing field payload", field="payload")
    if "signatures" not in obj:
        raise MissingField("missing field signatures", field="signatures")
    payload = obj["payload"]
    # ``plain``: the canonical leaf ``obj`` was parsed from (jcs.loads_canonical). Its keys are
    # exactly "payload" < "signatures", so the payload's JCS is the text between them, and that
    # text can screen for personal data in one pass.
    payload_bytes = None
    if plain is not None and isinstance(payload, dict):
        payload_bytes = plain[len(_LEAF_HEAD) : plain.rindex(_LEAF_SIGNATURES)]
    entry_type = validate_payload(payload, text=payload_bytes)
    if origin is not None and payload["ledger"] != origin:
        raise WrongLedger(
            f"payload.ledger is {payload['ledger']!r} but this ledger is {origin!r}; "
            "entries cannot be replayed across ledgers",
            expected=origin,
        )
    raw_sigs = obj["signatures"]
    if not isinstance(raw_sigs, list) or not 1 <= len(raw_sigs) <= MAX_SIGNATURES:
        raise InvalidField(
            f"signatures must be a list of 1 to {MAX_SIGNATURES} signatures", field="signatures"
        )
    sigs = sorted(
        (_parse_signature(s, i) for i, s in enumerate(raw_sigs)), key=lambda s: (s.signer, s.key_id)
    )
    for a, b in zip(sigs, sigs[1:]):
        if (a.signer, a.key_id) == (b.signer, b.key_id):
            raise InvalidField(
                f"two signatures by {a.signer} with key {a.key_id}", field="signatures"
            )
    signatures = tuple(sigs)
    if plain is not None and payload_bytes is not None and [sig.to_json() for sig in signatures] == raw_sigs:
        # Signatures already in canonical order and encoding: the leaf is the text parsed.
        return _build(payload, signatures, entry_type, payload_bytes, plain)
    return _build(payload, signatures, entry_type, payload_bytes)


def _build(
    payload: Mapping[str, Any],
    sigs: tuple[Signature, ...],
    entry_type: EntryType,
    payload_bytes: bytes | None = None,
    leaf: bytes | None = None,
) -> Envelope:
    if payload_bytes is not None:
        id_raw = hashlib.sha256(payload_bytes).digest()
        leaf_data = leaf if leaf is not None else jcs.dumps_plain(
            {"payload": payload, "signatures": [s.to_json() for s in sigs]}
        )
    else:
        id_raw = hashlib.sha256(jcs.canonicalize(payload)).digest()
        leaf_data = jcs.canonicalize({"payload": payload, "signatures": [s.to_json() for s in sigs]})
    return Envelope(
        payload=payload,
        signatures=sigs,
        type=entry_type,
        id=EntryId(id_raw.hex()),
        id_raw=id_raw,
        leaf_data=leaf_data,
        leaf_hash=LeafHash(merkle_leaf_hash(leaf_data)),
    )


_LEAF_HEAD = b'{"payload":'
_LEAF_SIGNATURES = b',"signatures":'


def envelope_from_leaf(leaf_data: bytes, *, origin: str | None) -> Envelope:
    """Re-read an envelope from its stored leaf data (strict: the same checks as on intake).

    Raises MalformedInput leaves if the stored bytes are not a valid envelope.
    """
    fast = jcs.loads_canonical(leaf_data)
    if fast is not None:
        return parse_envelope(fast, origin=origin, plain=leaf_data)
    return parse_envelope(jcs.loads(leaf_data), origin=origin)


def verify_entry_signature(envelope: Envelope, signature: Signature, public_key: bytes) -> None:
    """Check one signature of ``envelope`` cryptographically (strict Ed25519, PROTOCOL §2).

    Requires ``key_id(public_key) == signature.key_id``. Raises InvalidSignature.
    Says nothing about whether the key may sign: that is ``ledger.rules``.
    """
    if key_id(public_key) != signature.key_id:
        from .errors import UnknownKey

        raise UnknownKey(
            f"key {signature.key_id} does not match the public key it was resolved to",
            key_id=signature.key_id,
        )
    unsafe_verify(public_key, entry_message(envelope.id_raw), signature.sig)


def sign_payload(payload: Mapping[str, Any], signers: Iterable[tuple[str, SigningKey]]) -> dict[str, Any]:
    """Wrap a payload in an envelope signed by each (participant id, key). For clients."""
    id_raw = hashlib.sha256(jcs.canonicalize(payload)).digest()
    msg = entry_message(id_raw)
    return {
        "payload": dict(payload),
        "signatures": [
            {"signer": who, "key_id": key.public_key.key_id, "sig": b64(key.unsafe_sign(msg))}
            for who, key in signers
        ],
    }


def add_signature(envelope: Mapping[str, Any], signer: str, key: SigningKey) -> dict[str, Any]:
    """Return a copy of an envelope (as JSON) with one more signature over its payload."""
    id_raw = hashlib.sha256(jcs.canonicalize(envelope["payload"])).digest()
    sig = {
        "signer": signer,
        "key_id": key.public_key.key_id,
        "sig": b64(key.unsafe_sign(entry_message(id_raw))),
    }
    others = [
        s
        for s in envelope.get("signatures", [])
        if (s.get("signer"), s.get("key_id")) != (signer, sig["key_id"])
    ]
    return {"payload": envelope["payload"], "signatures": [*others, sig]}
