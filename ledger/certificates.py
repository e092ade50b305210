"""Origin certificates (PROTOCOL §7, issue #5): issuing and verifying them offline.

A certificate is ``{"certificate": {...}, "signature": "<base64>"}``; the signature is Ed25519
by the ledger key over ``filiera/certificate/v1\\n`` followed by the raw SHA-256 of
JCS(``certificate``). The certificate holds the lot's provenance (``ledger.provenance``: the
lineage, origins, custody chains, attestations, the checks and the verdict), one signed
checkpoint, and every entry of the story with its leaf data (the envelope) and its C2SP
``tlog-proof`` against that checkpoint.

Verifying needs only the ledger's note verifier key (``<origin>+<hex>+<base64>``, from
``GET /v1/ledger``): the signature, the checkpoint, every entry's leaf hash recomputed from
its envelope and its inclusion proof, and then the whole provenance *recomputed* from the
included entries and compared with what the certificate states, so that not even the ledger
can certify a story its own entries do not bear out. What no certificate can prove is that
nothing was left out (see ``ledger.provenance``).

Importable without Flask or SQLAlchemy: the Python client and ``filiera certificate verify``
run it offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import jcs
from .encoding import b64, check_lot_id, sha256, unb64
from .entries import parse_envelope
from .errors import (
    IntegrityFailure,
    InvalidCertificate,
    InvalidField,
    InvalidSignature,
    LedgerError,
    MalformedCertificate,
    MalformedInput,
)
from .keys import SigningKey, unsafe_verify
from .merkle import verify_inclusion
from .notes import Checkpoint, NoteVerifier, TlogProof, verify_checkpoint
from .provenance import STORY_TYPES, Provenance, StoryEntry, assemble
from .story import ProvenanceView

__all__ = [
    "CERTIFICATE_CONTEXT",
    "CERTIFICATE_FORMAT",
    "VerifiedCertificate",
    "build_certificate",
    "sign_certificate",
    "issue_certificate",
    "certificate_hash",
    "verify_certificate",
]

CERTIFICATE_CONTEXT = b"filiera/certificate/v1\n"
CERTIFICATE_FORMAT = "filiera/certificate/v1"

# Fields the issuer states; all others are recomputed from the entries by the verifier.
_STATED = ("format", "ledger", "issued_at", "scope", "checkpoint", "entries")
_ENTRY_FIELDS = frozenset({"id", "index", "envelope", "tlog_proof"})


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """A certificate whose signature, checkpoint, proofs and provenance all verified.

    ``certified`` is the verdict: a valid certificate may well say the story has gaps."""

    ledger: str
    lot: str
    issued_at: str
    scope: str
    checkpoint: Checkpoint
    provenance: Provenance

    @property
    def verdict(self) -> str:
        return self.provenance.verdict

    @property
    def certified(self) -> bool:
        return self.provenance.verdict == "certified"

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": True,
            "certified": self.certified,
            "verdict": self.verdict,
            "ledger": self.ledger,
            "lot": self.lot,
            "product": self.provenance.product,
            "issued_at": self.issued_at,
            "scope": self.scope,
            "tree_size": self.checkpoint.tree_size,
            "failures": [f.to_json() for f in self.provenance.failures()],
        }


def build_certificate(view: ProvenanceView, *, issued_at: str) -> dict[str, Any]:
    """The unsigned ``certificate`` object for a provenance view."""
    return {
        "format": CERTIFICATE_FORMAT,
        "ledger": view.ledger,
        "issued_at": issued_at,
        "scope": view.scope,
        **view.provenance.to_json(),
        "checkpoint": view.checkpoint,
        "entries": [
            {
                "id": e.id,
                "index": e.index,
                "envelope": dict(e.envelope),
                "tlog_proof": TlogProof(index=e.index, hashes=e.hashes, checkpoint=view.checkpoint).format(),
            }
            for e in view.entries
        ],
    }


def certificate_hash(certificate: Mapping[str, Any]) -> bytes:
    """SHA-256 of JCS(certificate): what the ledger signs, after the context line."""
    return sha256(jcs.canonicalize(dict(certificate)))


def sign_certificate(certificate: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """``{"certificate", "signature"}``: Ed25519 by ``key`` over the context and the hash."""
    signature = key.unsafe_sign(CERTIFICATE_CONTEXT + certificate_hash(certificate))
    return {"certificate": dict(certificate), "signature": b64(signature)}


def issue_certificate(view: ProvenanceView, *, signing_key: SigningKey, issued_at: str) -> dict[str, Any]:
    return sign_certificate(build_certificate(view, issued_at=issued_at), signing_key)


def _refuse(reason: str, detail: str, **facts: Any) -> InvalidCertificate:
    return InvalidCertificate(detail, reason=reason, **facts)


def verify_certificate(document: Any, verifier: NoteVerifier) -> VerifiedCertificate:
    """Verify a signed certificate offline with the ledger's note verifier key.

    Checks, in order: the shape; the ledger's signature; that the certificate is for the
    verifier's ledger; the checkpoint's signature; each entry's envelope (strictly parsed),
    id, leaf hash and inclusion proof against that checkpoint; and that the provenance, checks
    and verdict recomputed from the entries are exactly those stated.
    Raises MalformedCertificate (not a certificate document) or InvalidCertificate (with
    ``reason``: ``signature``, ``ledger``, ``checkpoint``, ``entry``, ``proof`` or ``story``).
    A certificate that verifies may still say "not_certified": read ``.certified``.
    """
    if not isinstance(document, dict) or set(document) != {"certificate", "signature"}:
        raise MalformedCertificate('a certificate document is {"certificate": {...}, "signature": "..."}')
    cert = document["certificate"]
    if not isinstance(cert, dict):
        raise MalformedCertificate("certificate must be an object", field="certificate")
    try:
        signature = unb64(document["signature"], field="signature", length=64)
    except InvalidField as exc:
        raise MalformedCertificate(f"signature: {exc.detail}", field="signature") from exc
    try:
        digest = certificate_hash(cert)
    except LedgerError as exc:
        raise MalformedCertificate(f"the certificate is not canonicalisable JSON: {exc.detail}") from exc
    try:
        unsafe_verify(verifier.public_key, CERTIFICATE_CONTEXT + digest, signature)
    except InvalidSignature as exc:
        raise _refuse(
            "signature",
            f"the certificate is not signed by the ledger key of {verifier.name}: it was altered, "
            "or it comes from another ledger",
        ) from exc
    # Signed by the trusted key: from here on, a surprise is the issuer's error, not an attack,
    # but it is refused all the same.
    if cert.get("format") != CERTIFICATE_FORMAT:
        raise MalformedCertificate(f"format must be {CERTIFICATE_FORMAT!r}", field="format")
    if cert.get("ledger") != verifier.name:
        raise _refuse("ledger", f"the certificate is for ledger {cert.get('ledger')!r}, not {verifier.name!r}")
    try:
        lot = check_lot_id(cert.get("lot"), field="lot")
        for name in ("issued_at", "scope", "checkpoint"):
            if not isinstance(cert.get(name), str):
                raise MalformedCertificate(f"{name} must be a string", field=name)
        checkpoint = verify_checkpoint(cert["checkpoint"], verifier=verifier, origin=verifier.name)
    except IntegrityFailure as exc:
        raise _refuse("checkpoint", f"the certificate's checkpoint does not verify: {exc.detail}") from exc
    except MalformedInput as exc:
        raise MalformedCertificate(exc.detail, **exc.facts) from exc
    story = _verified_entries(cert, checkpoint, verifier.name)
    provenance = assemble(lot, story)
    recomputed = provenance.to_json()
    stated = {k: v for k, v in cert.items() if k not in _STATED}
    if stated != recomputed:
        differing = sorted(k for k in set(stated) | set(recomputed) if stated.get(k) != recomputed.get(k))
        raise _refuse(
            "story",
            f"the certificate states {', '.join(differing)} otherwise than its own entries show",
            fields=differing,
        )
    return VerifiedCertificate(
        ledger=verifier.name, lot=lot, issued_at=cert["issued_at"], scope=cert["scope"],
        checkpoint=checkpoint, provenance=provenance,
    )


def _verified_entries(cert: Mapping[str, Any], checkpoint: Checkpoint, origin: str) -> list[StoryEntry]:
    entries = cert.get("entries")
    if not isinstance(entries, list):
        raise MalformedCertificate("entries must be a list", field="entries")
    story: list[StoryEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(entries):
        where = f"entries[{i}]"
        if not isinstance(item, dict) or set(item) != _ENTRY_FIELDS or type(item["index"]) is not int:
            raise MalformedCertificate(
                f"{where} must have exactly {', '.join(sorted(_ENTRY_FIELDS))}, index an integer", field=where
            )
        try:
            env = parse_envelope(item["envelope"], origin=origin)
            proof = TlogProof.parse(item["tlog_proof"])
        except MalformedInput as exc:
            raise MalformedCertificate(f"{where}: {exc.detail}", field=where) from exc
        if env.id != item["id"] or env.id in seen:
            raise _refuse("entry", f"{where}: the id is not its envelope's, or the entry is listed twice", entry=item["id"])
        if str(env.type) not in STORY_TYPES:
            raise _refuse("entry", f"{where}: a {env.type} entry is not part of a lot's story", entry=env.id)
        if proof.checkpoint != cert["checkpoint"] or proof.index != item["index"]:
            raise _refuse("proof", f"{where}: the tlog-proof is against another checkpoint or index", entry=env.id)
        try:
            verify_inclusion(
                leaf_hash=env.leaf_hash, index=proof.index, tree_size=checkpoint.tree_size,
                proof=list(proof.hashes), root=checkpoint.root,
            )
        except IntegrityFailure as exc:
            raise _refuse("proof", f"{where}: entry {env.id} is not proven in the checkpoint: {exc.detail}", entry=env.id) from exc
        seen.add(env.id)
        story.append(StoryEntry(id=env.id, index=proof.index, payload=env.payload, signers=env.signers()))
    return story
