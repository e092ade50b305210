"""A lot's provenance and its origin certificate (PROTOCOL §6, §7; issue #5).

Both are public: without a signature they show the public view (the supply-chain entries of
the lot's story, never a contract, price or payment). Signed by a member (RFC 9421) they add
the contracts and payments of the story that the member may see, with the contract checks.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ledger import jcs
from ledger.certificates import issue_certificate
from ledger.credentials import issue_credential
from ledger.encoding import check_lot_id, format_time
from ledger.errors import ConfigurationError, LotNotFound
from ledger.storage.stories import Viewer, read_view
from ledger.story import ProvenanceView

from ..auth import optional_member
from ..openapi import operation
from ..schemas.lots import CertificateQuerySchema, CertificateSchema, CredentialSchema, ProvenanceViewSchema
from ..services import load_query, services

bp = Blueprint("lots", __name__)

def _view(lot: str) -> ProvenanceView:
    check_lot_id(lot, field="lot")
    member = optional_member()
    svc = services()
    viewer = Viewer(member.id, member.sees_all) if member is not None else None
    view = read_view(svc.store, lot, viewer=viewer, max_lots=svc.settings.provenance_max_lots)
    if view is None:
        raise LotNotFound(f"no lot {lot} in this ledger", lot=lot)
    return view


def _fresh(resp: Response) -> Response:
    # The story grows with every block: a cached answer would be stale at once.
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/v1/lots/<path:lot>/provenance")
@operation(
    summary="Provenance of a lot: lineage, custody, attestations, checks, proofs",
    tag="lots",
    responses={200: ProvenanceViewSchema},
    errors=(400, 401, 404),
)
def provenance(lot: str) -> Response:
    """The lineage through transforms to every origin, each lot's custody chain in log order,
    the attestations, the checks with a reason for each failure, and the verdict; then every
    entry of the story with its inclusion proof against one checkpoint (``checkpoint``).
    Public without a signature; signed by a member (RFC 9421), it adds the story's contracts
    and payments that member may see, and the contract checks."""
    return _fresh(jsonify(_view(lot).to_json()))


@bp.get("/v1/lots/<path:lot>/certificate")
@operation(
    summary="Signed origin certificate of a lot (PROTOCOL §7), or the same as a VC 2.0",
    tag="lots",
    query=CertificateQuerySchema,
    responses={200: [CertificateSchema, CredentialSchema]},
    errors=(400, 401, 404),
)
def certificate(lot: str) -> Response:
    """``{"certificate", "signature"}`` signed by the ledger key, each entry's evidence a C2SP
    tlog-proof against one checkpoint, verifiable offline (`filiera certificate verify`). With
    ``?format=vc``: a W3C Verifiable Credential 2.0 with an ``eddsa-jcs-2022`` Data Integrity
    proof by the ledger key (did:key) that carries the certificate. The body is the
    document's canonical JSON (RFC 8785). A story with a gap gets ``verdict: not_certified``
    and the reasons. Public, or signed by a member for a certificate that includes the
    contracts that member may see."""
    args = load_query(CertificateQuerySchema)
    view = _view(lot)
    sealer = services().sealer
    if sealer.key is None:
        raise ConfigurationError("this server has no ledger key to sign certificates with")
    signed = issue_certificate(view, signing_key=sealer.key, issued_at=format_time(sealer.clock.now()))
    document = issue_credential(signed, signing_key=sealer.key) if args["format"] == "vc" else signed
    return _fresh(Response(jcs.canonicalize(document), mimetype="application/json"))
