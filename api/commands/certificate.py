"""`filiera certificate verify FILE --verifier-key VKEY [--json]`: check an origin certificate
(PROTOCOL §7), or its W3C VC 2.0 form, offline with the ledger's note verifier key.

Exit status: 0 the certificate is valid and certifies the lot; 1 it is invalid (altered,
another ledger's, proofs or story that do not hold), or valid but ``not_certified`` (the output
says which, and why); 2 it could not be checked (unreadable file, malformed verifier key).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ledger import jcs
from ledger.certificates import VerifiedCertificate, verify_certificate
from ledger.credentials import verify_credential
from ledger.errors import ConfigurationError, LedgerError, MalformedInput
from ledger.notes import NoteVerifier

from ..cli import EXIT_INVALID, EXIT_USAGE, cli, fail

__all__ = ["certificate"]


@cli.group()
def certificate() -> None:
    """Origin certificates of lots (PROTOCOL §7)."""


def _verifier(value: str) -> NoteVerifier:
    """The verifier key given inline, or the first line of the file it names."""
    path = Path(value)
    text = value
    if "+" not in value and path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the verifier key file {value}: {exc}") from exc
    try:
        return NoteVerifier.parse(text)
    except MalformedInput as exc:
        raise ConfigurationError(f"--verifier-key: {exc.detail} (use verifier_key from GET /v1/ledger)") from exc


def verify_document(document: Any, verifier: NoteVerifier) -> VerifiedCertificate:
    """Either form: a VC carries a Data Integrity ``proof``, a §7 document does not."""
    if isinstance(document, dict) and "proof" in document:
        return verify_credential(document, verifier)
    return verify_certificate(document, verifier)


@certificate.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--verifier-key", "vkey", required=True, metavar="VKEY",
              help="The ledger's note verifier key <origin>+<hex>+<base64> (verifier_key of GET /v1/ledger), or a file holding it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout.")
def verify(file: Path, vkey: str, as_json: bool) -> None:
    """Check FILE offline: the ledger's signature, the checkpoint, every entry's leaf hash and
    inclusion proof, and the provenance recomputed from the entries. Exit 0 valid and
    certified, 1 invalid or not certified, 2 unreadable."""
    try:
        verifier = _verifier(vkey)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {file}: {exc.strerror or exc}") from exc
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    try:
        result = verify_document(jcs.loads(data), verifier)
    except LedgerError as exc:
        _invalid(exc, as_json)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
    elif result.certified:
        click.echo(
            f"VALID and CERTIFIED: lot {result.lot} ({result.provenance.product}) of ledger "
            f"{result.ledger}, checkpoint of tree size {result.checkpoint.tree_size}, issued {result.issued_at}"
        )
    else:
        click.echo(f"VALID but NOT CERTIFIED: the ledger {result.ledger} certifies that the story of lot {result.lot} has gaps:")
        for check in result.provenance.checks:
            for failure in check.failures:
                click.echo(f"  {check.name} / {failure.reason}: {failure.detail}")
    sys.exit(0 if result.certified else EXIT_INVALID)


def _invalid(exc: LedgerError, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"valid": False, "certified": False, "code": exc.code, "detail": exc.detail, **exc.facts}))
    else:
        click.echo(f"INVALID: {exc.code}: {exc.detail}")
    sys.exit(EXIT_INVALID)
