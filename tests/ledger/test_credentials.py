"""ledger.credentials against the W3C vc-di-eddsa vectors (tests/vectors/vc-di-eddsa): the
eddsa-jcs-2022 proof is made and checked exactly as the specification's example, and the
Multikey, did:key and base58btc encodings agree with it."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import jcs
from ledger.credentials import (
    add_proof,
    base58btc_decode,
    base58btc_encode,
    did_key_method,
    multikey,
    public_key_of_method,
    verify_proof,
)
from ledger.errors import InvalidCertificate, LedgerError
from ledger.keys import SigningKey

from ..conftest import VECTORS

V = VECTORS / "vc-di-eddsa"


def _json(name: str) -> Any:
    return json.loads((V / name).read_text(encoding="utf-8"))


def _text(name: str) -> str:
    return (V / name).read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    private = base58btc_decode(_json("keyPair.json")["privateKeyMultibase"][1:])
    assert private[:2] == b"\x80\x26"  # multicodec ed25519-priv
    return SigningKey(private[2:])


def test_the_vectors_are_all_here() -> None:
    assert len(list(V.glob("*.json")) + list(V.glob("*.txt"))) == 11


def test_the_key_is_the_vectors_multikey(key: SigningKey) -> None:
    assert multikey(key.public_key.raw) == _json("keyPair.json")["publicKeyMultibase"]
    method = _json("proofConfigJCS.json")["verificationMethod"]
    assert did_key_method(key.public_key.raw) == method
    assert public_key_of_method(method) == key.public_key.raw


def test_every_intermediate_value_matches(key: SigningKey) -> None:
    doc, config = _json("unsigned.json"), _json("proofConfigJCS.json")
    assert jcs.canonicalize(doc).decode() == _text("canonDocJCS.txt")
    assert hashlib.sha256(jcs.canonicalize(doc)).hexdigest() == _text("docHashJCS.txt")
    assert jcs.canonicalize(config).decode() == _text("proofCanonJCS.txt")
    assert hashlib.sha256(jcs.canonicalize(config)).hexdigest() == _text("proofHashJCS.txt")
    combined = hashlib.sha256(jcs.canonicalize(config)).digest() + hashlib.sha256(jcs.canonicalize(doc)).digest()
    assert combined.hex() == _text("combinedHashJCS.txt")
    assert key.unsafe_sign(combined).hex() == _text("sigHexJCS.txt")
    assert "z" + base58btc_encode(bytes.fromhex(_text("sigHexJCS.txt"))) == _text("sigBTC58JCS.txt")


def test_signing_the_example_gives_the_signed_example(key: SigningKey) -> None:
    config = _json("proofConfigJCS.json")
    signed = add_proof(_json("unsigned.json"), signing_key=key, verification_method=config["verificationMethod"], created=config["created"])
    assert signed == _json("signedJCS.json")


def test_the_signed_example_verifies(key: SigningKey) -> None:
    assert verify_proof(_json("signedJCS.json")) == key.public_key.raw


TAMPER = {
    "subject-changed": lambda d: d["credentialSubject"].update(alumniOf="Another School"),
    "field-added": lambda d: d.update(extra="x"),
    "proof-created-changed": lambda d: d["proof"].update(created="2023-02-24T23:36:39Z"),
    "proof-purpose-changed": lambda d: d["proof"].update(proofPurpose="authentication"),
    "proof-context-not-prefix": lambda d: d["proof"].update({"@context": ["https://example.org/other"]}),
    "signature-flipped": lambda d: d["proof"].update(proofValue="z" + base58btc_encode(bytes([b ^ (i == 5) for i, b in enumerate(base58btc_decode(d["proof"]["proofValue"][1:]))]))),
    "other-did-key": lambda d: d["proof"].update(verificationMethod=did_key_method(SigningKey(b"\x07" * 32).public_key.raw)),
    "wrong-cryptosuite": lambda d: d["proof"].update(cryptosuite="eddsa-rdfc-2022"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_a_tampered_credential_is_refused(case: str) -> None:
    doc = copy.deepcopy(_json("signedJCS.json"))
    TAMPER[case](doc)
    with pytest.raises(InvalidCertificate):
        verify_proof(doc)


@pytest.mark.parametrize("value", ["z0OIl", "ab!", "z" * 200])
def test_base58btc_refuses_foreign_characters_and_overlong_text(value: str) -> None:
    with pytest.raises(LedgerError):
        base58btc_decode(value)


@given(st.binary(max_size=80))
def test_base58btc_round_trips(data: bytes) -> None:
    assert base58btc_decode(base58btc_encode(data)) == data
