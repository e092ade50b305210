"""The origin certificate as a W3C Verifiable Credential 2.0 (issue #5), secured by a Data
Integrity proof of the ``eddsa-jcs-2022`` cryptosuite (W3C *Data Integrity EdDSA Cryptosuites
v1.0*, §3.3), so that wallets and verifiers of that ecosystem accept it.

The cryptosuite uses the ledger's own primitives, Ed25519 and RFC 8785: the proof options
(``type``, ``cryptosuite``, ``created``, ``verificationMethod``, ``proofPurpose`` and the
document's ``@context``) and the document without its proof are each canonicalised with JCS
and hashed with SHA-256; the ledger key signs ``SHA-256(JCS(proofConfig)) ||
SHA-256(JCS(document))``; ``proofValue`` is that signature in multibase base58btc (``z...``).
The verification method is the ledger key as a ``did:key`` (multicodec ``ed25519-pub``,
0xed01), which a verifier resolves offline; the issuer is that DID.

``credentialSubject`` carries a summary for wallets (ledger, lot, product, verdict) and the
signed PROTOCOL §7 certificate itself (``certificate`` and ``signature``), so a Filiera-aware
verifier checks the entries, proofs and checks inside exactly as :mod:`ledger.certificates`
does. The ledger's signature over ``hashData`` carries no ``filiera/.../v1`` prefix because
the cryptosuite fixes the signed bytes; they are 64 bytes of two SHA-256 outputs, which no
other message the ledger signs (prefixed entries, blocks, certificates, or checkpoint notes of
text lines) can equal.

Base58btc is the ten lines below (Bitcoin's alphabet, leading zero bytes as ``1``): no
maintained library is installed, and it is checked against the specification's vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import jcs
from .certificates import VerifiedCertificate, certificate_hash, verify_certificate
from .encoding import parse_time, sha256
from .errors import InvalidCertificate, InvalidField, InvalidSignature, LedgerError, MalformedCertificate
from .keys import SigningKey, unsafe_verify
from .notes import NoteVerifier

__all__ = [
    "VC_CONTEXT",
    "CRYPTOSUITE",
    "CREDENTIAL_TYPE",
    "base58btc_encode",
    "base58btc_decode",
    "multikey",
    "did_key",
    "did_key_method",
    "public_key_of_method",
    "add_proof",
    "verify_proof",
    "issue_credential",
    "verify_credential",
]

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
CRYPTOSUITE = "eddsa-jcs-2022"
CREDENTIAL_TYPE = "FilieraOriginCertificate"
_ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub, as an unsigned varint
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_MAX_BASE58 = 128  # longer than any key or signature; bounds the big-integer work
_SUBJECT_FIELDS = frozenset({"ledger", "lot", "product", "verdict", "certificate", "signature"})


def base58btc_encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + "".join(reversed(out))


def base58btc_decode(text: str) -> bytes:
    """Raises InvalidField for a character outside the alphabet or an overlong text."""
    if not isinstance(text, str) or len(text) > _MAX_BASE58:
        raise InvalidField(f"base58btc text of at most {_MAX_BASE58} characters expected", field="base58btc")
    n = 0
    for ch in text:
        digit = _ALPHABET.find(ch)
        if digit < 0:
            raise InvalidField(f"{ch!r} is not a base58btc character", field="base58btc")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")


def multikey(public_key: bytes) -> str:
    """An Ed25519 public key as a Multikey: ``z`` + base58btc(0xed01 || key)."""
    return "z" + base58btc_encode(_ED25519_PUB + public_key)


def did_key(public_key: bytes) -> str:
    return f"did:key:{multikey(public_key)}"


def did_key_method(public_key: bytes) -> str:
    """The ``did:key`` verification method of an Ed25519 key: ``did:key:z6Mk...#z6Mk...``."""
    return f"{did_key(public_key)}#{multikey(public_key)}"


def public_key_of_method(method: str) -> bytes:
    """The Ed25519 key a ``did:key`` verification method names (resolved offline, as the
    did:key method specifies). Raises InvalidCertificate for any other method."""
    if not isinstance(method, str) or not method.startswith("did:key:z"):
        raise InvalidCertificate("the verification method is not a did:key", reason="key")
    did, _, fragment = method.partition("#")
    if fragment != did[len("did:key:"):]:
        raise InvalidCertificate("a did:key verification method's fragment repeats its key", reason="key")
    try:
        raw = base58btc_decode(fragment[1:])
    except InvalidField as exc:
        raise InvalidCertificate("the did:key is not base58btc", reason="key") from exc
    if len(raw) != 34 or raw[:2] != _ED25519_PUB or multikey(raw[2:]) != fragment:
        raise InvalidCertificate("the did:key is not a canonical Ed25519 key", reason="key")
    return raw[2:]


def _hash_data(document: Mapping[str, Any], proof_config: Mapping[str, Any]) -> bytes:
    # vc-di-eddsa §3.3.4 Hashing: proofConfigHash first, then transformedDocumentHash.
    return sha256(jcs.canonicalize(dict(proof_config))) + sha256(jcs.canonicalize(dict(document)))


def add_proof(
    document: Mapping[str, Any], *, signing_key: SigningKey, verification_method: str, created: str,
    proof_purpose: str = "assertionMethod",
) -> dict[str, Any]:
    """``document`` with an ``eddsa-jcs-2022`` DataIntegrityProof (vc-di-eddsa §3.3.1)."""
    parse_time(created, field="created")
    proof: dict[str, Any] = {
        "type": "DataIntegrityProof",
        "cryptosuite": CRYPTOSUITE,
        "created": created,
        "verificationMethod": verification_method,
        "proofPurpose": proof_purpose,
    }
    if "@context" in document:
        # Create Proof step 2: the proof carries the document's context.
        proof["@context"] = document["@context"]
    value = signing_key.unsafe_sign(_hash_data(document, proof))
    return {**document, "proof": {**proof, "proofValue": "z" + base58btc_encode(value)}}


def verify_proof(document: Any) -> bytes:
    """Verify a document's ``eddsa-jcs-2022`` proof (vc-di-eddsa §3.3.2) with the key its
    ``did:key`` verification method names. Returns that key (the caller decides whether to
    trust it). Raises MalformedCertificate or InvalidCertificate."""
    if not isinstance(document, dict) or not isinstance(document.get("proof"), dict):
        raise MalformedCertificate("a secured document is an object with a proof object", field="proof")
    proof = document["proof"]
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    if options.get("type") != "DataIntegrityProof" or options.get("cryptosuite") != CRYPTOSUITE:
        raise InvalidCertificate(f"the proof is not a DataIntegrityProof of {CRYPTOSUITE}", reason="signature")
    value = proof.get("proofValue")
    try:
        parse_time(options.get("created"), field="proof.created")
        if not isinstance(value, str) or not value.startswith("z"):
            raise InvalidField("proofValue must be multibase base58btc (z...)", field="proof.proofValue")
        signature = base58btc_decode(value[1:])
    except InvalidField as exc:
        raise MalformedCertificate(exc.detail, field=exc.facts.get("field", "proof")) from exc
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    if "@context" in options:
        # Verify Proof step 4: the document's context must start with the proof's.
        ctx, own = options["@context"], unsecured.get("@context")
        if not isinstance(ctx, list) or not isinstance(own, list) or own[: len(ctx)] != ctx:
            raise InvalidCertificate("the proof's @context is not a prefix of the document's", reason="signature")
        unsecured["@context"] = ctx
    public_key = public_key_of_method(options.get("verificationMethod", ""))
    try:
        unsafe_verify(public_key, _hash_data(unsecured, options), signature)
    except (InvalidSignature, LedgerError) as exc:
        raise InvalidCertificate("the Data Integrity proof does not verify: the credential was altered", reason="signature") from exc
    return public_key


def issue_credential(signed: Mapping[str, Any], *, signing_key: SigningKey) -> dict[str, Any]:
    """The VC 2.0 form of a signed certificate (``{"certificate", "signature"}``)."""
    cert = signed["certificate"]
    pub = signing_key.public_key.raw
    credential = {
        "@context": [VC_CONTEXT],
        "id": f"urn:filiera:certificate:{certificate_hash(cert).hex()}",
        "type": ["VerifiableCredential", CREDENTIAL_TYPE],
        "name": f"Origin certificate of lot {cert['lot']}",
        "issuer": did_key(pub),
        "validFrom": cert["issued_at"],
        "credentialSubject": {
            "ledger": cert["ledger"], "lot": cert["lot"], "product": cert["product"], "verdict": cert["verdict"],
            "certificate": dict(cert), "signature": signed["signature"],
        },
    }
    return add_proof(credential, signing_key=signing_key, verification_method=did_key_method(pub), created=cert["issued_at"])


def verify_credential(credential: Any, verifier: NoteVerifier) -> VerifiedCertificate:
    """Verify the VC form offline: its Data Integrity proof by the ledger key (the did:key of
    the verifier key's public key, and no other), then the certificate it carries in full.
    Raises MalformedCertificate or InvalidCertificate."""
    expected = did_key_method(verifier.public_key)
    proof = credential.get("proof") if isinstance(credential, dict) else None
    if isinstance(proof, dict) and proof.get("verificationMethod") != expected:
        raise InvalidCertificate(f"the credential is not signed by the ledger key of {verifier.name}", reason="key")
    verify_proof(credential)
    subject = credential.get("credentialSubject")
    context = credential.get("@context")
    if (
        not isinstance(context, list)
        or context[:1] != [VC_CONTEXT]
        or credential.get("type") != ["VerifiableCredential", CREDENTIAL_TYPE]
        or credential.get("issuer") != did_key(verifier.public_key)
        or not isinstance(subject, dict)
        or set(subject) != _SUBJECT_FIELDS
    ):
        raise MalformedCertificate(f"not a {CREDENTIAL_TYPE} credential of this ledger")
    verified = verify_certificate({"certificate": subject["certificate"], "signature": subject["signature"]}, verifier)
    cert = subject["certificate"]
    summary = {k: cert.get(k) for k in ("ledger", "lot", "product", "verdict")}
    if {k: subject[k] for k in summary} != summary or credential.get("validFrom") != cert["issued_at"]:
        raise InvalidCertificate("the credential's summary differs from the certificate it carries", reason="story")
    if credential.get("id") != f"urn:filiera:certificate:{certificate_hash(cert).hex()}":
        raise InvalidCertificate("the credential's id is not its certificate's hash", reason="story")
    return verified
