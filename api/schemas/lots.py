"""A lot's provenance view and origin certificate (issue #5; PROTOCOL §7)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .common import hex64
from .entries import EnvelopeSchema

_NULLABLE = {"allow_none": True, "required": True}


class FailureSchema(Schema):
    reason = fields.String(
        required=True,
        metadata={"enum": ["origin_unknown", "claim_unattested", "custody_break", "receipt_missing",
                           "contract_country", "contract_claim"]},
    )
    detail = fields.String(required=True)
    lot = fields.String(metadata={"description": "the lot concerned"})
    entry = hex64(metadata={"description": "the entry concerned (origin, handoff, receipt, transform)"})
    handoff = hex64(metadata={"description": "a handoff the story leaves out"})
    producer = fields.String()
    claim = fields.String()
    contract = fields.String()
    country = fields.String()


class CheckSchema(Schema):
    check = fields.String(
        required=True,
        metadata={"enum": ["origins_known", "claims_attested", "custody_continuous", "handoffs_received",
                           "contract_requirements"]},
    )
    passed = fields.Boolean(required=True)
    failures = fields.List(fields.Nested(FailureSchema), required=True)


class LineageLotSchema(Schema):
    lot = fields.String(required=True)
    made_by = hex64(**_NULLABLE)
    maker = fields.String(**_NULLABLE)
    kind = fields.String(**_NULLABLE, metadata={"enum": ["origin", "transform", None]})
    product = fields.String(**_NULLABLE)
    quantity = fields.String(**_NULLABLE)
    unit = fields.String(**_NULLABLE)
    site = fields.String(**_NULLABLE)
    process = fields.String(**_NULLABLE)
    parents = fields.List(fields.String(), required=True)


class AttestedBySchema(Schema):
    certifier = fields.String(required=True)
    attestation = hex64(required=True)


class ClaimSchema(Schema):
    claim = fields.String(required=True)
    attested_by = fields.List(fields.Nested(AttestedBySchema), required=True)


class OriginSchema(Schema):
    entry = hex64(required=True)
    index = fields.Integer(required=True)
    producer = fields.String(required=True)
    site = fields.String(required=True)
    country = fields.String(required=True)
    region = fields.String()
    place = fields.String()
    geo = fields.Dict()
    produced_on = fields.String()
    lots = fields.List(fields.String(), required=True)
    claims = fields.List(fields.Nested(ClaimSchema), required=True)


class StepSchema(Schema):
    handoff = hex64(required=True)
    index = fields.Integer(required=True)
    from_ = fields.String(data_key="from", required=True)
    to = fields.String(required=True)
    dispatched_at = fields.String(required=True)
    location = fields.String(**_NULLABLE)
    status = fields.String(required=True, metadata={"enum": ["accepted", "rejected", "open"]})
    receipt = hex64(**_NULLABLE)
    received_at = fields.String(**_NULLABLE)
    cosigned = fields.Boolean(required=True)
    contract = fields.String(**_NULLABLE, metadata={"description": "only in a member's view that includes it"})


class CustodySchema(Schema):
    lot = fields.String(required=True)
    first_holder = fields.String(**_NULLABLE)
    steps = fields.List(fields.Nested(StepSchema), required=True)
    status = fields.String(required=True, metadata={"enum": ["held", "in_transit", "consumed", "unknown"]})
    custodian = fields.String(**_NULLABLE)
    consumed_by = hex64(**_NULLABLE)


class AttestationSchema(Schema):
    entry = hex64(required=True)
    index = fields.Integer(required=True)
    certifier = fields.String(required=True)
    subject = fields.String(required=True)
    claims = fields.List(fields.String(), required=True)
    certificate = fields.Dict(**_NULLABLE)


class ProvenanceSchema(Schema):
    """The story of a lot, derived from its entries alone, and the checks on it."""

    lot = fields.String(required=True)
    product = fields.String(**_NULLABLE)
    quantity = fields.String(**_NULLABLE)
    unit = fields.String(**_NULLABLE)
    status = fields.String(required=True, metadata={"enum": ["held", "in_transit", "consumed", "unknown"]})
    custodian = fields.String(**_NULLABLE)
    verdict = fields.String(required=True, metadata={"enum": ["certified", "not_certified"]})
    checks = fields.List(fields.Nested(CheckSchema), required=True)
    claims = fields.List(fields.String(), required=True, metadata={"description": "claims attested for this lot"})
    lineage = fields.List(fields.Nested(LineageLotSchema), required=True)
    origins = fields.List(fields.Nested(OriginSchema), required=True)
    custody = fields.List(fields.Nested(CustodySchema), required=True)
    attestations = fields.List(fields.Nested(AttestationSchema), required=True)
    contracts = fields.List(fields.Dict(), metadata={"description": "members only: contracts they may see"})
    payments = fields.List(fields.Dict(), metadata={"description": "members only: payments they may see"})


class ProvedEntrySchema(Schema):
    id = hex64(required=True)
    index = fields.Integer(required=True)
    type = fields.String(required=True)
    leaf_hash = hex64(required=True)
    envelope = fields.Nested(EnvelopeSchema, required=True)
    proof = fields.List(hex64(), required=True, metadata={"description": "RFC 9162 audit path in the checkpoint's tree"})


class ViewCheckpointSchema(Schema):
    tree_size = fields.Integer(required=True)
    root = hex64(required=True)
    note = fields.String(required=True, metadata={"description": "C2SP signed checkpoint"})


class ProvenanceViewSchema(ProvenanceSchema):
    ledger = fields.String(required=True)
    scope = fields.String(required=True, metadata={"description": '"public", or the member the view was read for'})
    participants = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    checkpoint = fields.Nested(ViewCheckpointSchema, required=True)
    entries = fields.List(fields.Nested(ProvedEntrySchema), required=True)


class CertificateEntrySchema(Schema):
    id = hex64(required=True)
    index = fields.Integer(required=True)
    envelope = fields.Nested(EnvelopeSchema, required=True)
    tlog_proof = fields.String(required=True, metadata={"description": "C2SP tlog-proof against the checkpoint"})


class CertificateBodySchema(ProvenanceSchema):
    format = fields.String(required=True, metadata={"enum": ["filiera/certificate/v1"]})
    ledger = fields.String(required=True)
    issued_at = fields.String(required=True, metadata={"format": "date-time"})
    scope = fields.String(required=True)
    checkpoint = fields.String(required=True, metadata={"description": "C2SP signed checkpoint"})
    entries = fields.List(fields.Nested(CertificateEntrySchema), required=True)


class CertificateSchema(Schema):
    """PROTOCOL §7; with ``?format=vc``, a W3C VC 2.0 carrying this (:class:`CredentialSchema`)."""

    certificate = fields.Nested(CertificateBodySchema, required=True)
    signature = fields.String(
        required=True,
        metadata={"description": "base64 Ed25519 by the ledger key over filiera/certificate/v1\\n || SHA-256(JCS(certificate))"},
    )


class CertificateQuerySchema(Schema):
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "vc"]))


class DataIntegrityProofSchema(Schema):
    """vc-di-eddsa §3.3: an ``eddsa-jcs-2022`` proof by the ledger key (did:key)."""

    context = fields.List(fields.String(), data_key="@context")
    type = fields.String(required=True, metadata={"enum": ["DataIntegrityProof"]})
    cryptosuite = fields.String(required=True, metadata={"enum": ["eddsa-jcs-2022"]})
    created = fields.String(required=True, metadata={"format": "date-time"})
    verificationMethod = fields.String(required=True)  # noqa: N815 - the VC member's name
    proofPurpose = fields.String(required=True)  # noqa: N815
    proofValue = fields.String(required=True, metadata={"description": "z + base58btc of the signature"})  # noqa: N815


class CredentialSubjectSchema(Schema):
    ledger = fields.String(required=True)
    lot = fields.String(required=True)
    product = fields.String(**_NULLABLE)
    verdict = fields.String(required=True, metadata={"enum": ["certified", "not_certified"]})
    certificate = fields.Nested(CertificateBodySchema, required=True)
    signature = fields.String(required=True)


class CredentialSchema(Schema):
    """``?format=vc``: a W3C Verifiable Credential 2.0 carrying the signed certificate."""

    context = fields.List(fields.String(), required=True, data_key="@context")
    id = fields.String(required=True, metadata={"description": "urn:filiera:certificate: + SHA-256(JCS(certificate))"})
    type = fields.List(fields.String(), required=True)
    name = fields.String(required=True)
    issuer = fields.String(required=True, metadata={"description": "did:key of the ledger key"})
    validFrom = fields.String(required=True, metadata={"format": "date-time"})  # noqa: N815
    credentialSubject = fields.Nested(CredentialSubjectSchema, required=True)  # noqa: N815
    proof = fields.Nested(DataIntegrityProofSchema, required=True)
