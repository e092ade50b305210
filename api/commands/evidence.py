"""``filiera evidence verify``: check one entry's evidence offline (docs/evidence.md).

The evidence is what a submitter keeps from ``POST /v1/entries``: the envelope it signed and
the receipt's ``tlog_proof``. The check is :func:`ledger.evidence.verify_evidence`; this module
reads the files and maps its verdict to output and exit status: 0 the evidence holds, 1 it
does not (the failure's code on stdout), 2 it could not be checked (a file that cannot be
read, a malformed verifier key or option).
"""

from __future__ import annotations

import json
import re
import sys
from typing import NoReturn

import click

from ledger.encoding import check_lot_id
from ledger.errors import ConfigurationError, InvalidField, LedgerError

from ..cli import EXIT_INVALID, EXIT_USAGE, cli

__all__ = ["evidence"]

# Far above any entry (the API takes 1 MiB bodies) or proof (a few KiB): a bound so that
# pointing --entry at a device or a huge file fails at once instead of filling memory.
MAX_FILE_BYTES = 16 * 1024 * 1024
_ENTRY_ID = re.compile(r"[0-9a-f]{64}")


def _read(path: str, what: str) -> bytes:
    """The bytes of ``path`` (``-``: standard input). Raises ConfigurationError."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}", path=path) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigurationError(f"the {what} {path} is larger than {MAX_FILE_BYTES} bytes", path=path)
    return data


@cli.group()
def evidence() -> None:
    """Check an entry's evidence (its envelope and tlog proof) offline."""


@evidence.command("verify")
@click.option("--entry", "entry_file", required=True, help="The entry's envelope as JSON (as signed and submitted, any formatting), or - for stdin.")
@click.option("--proof", "proof_file", required=True, help="The entry's tlog proof: the text of the receipt's tlog_proof field, or - for stdin.")
@click.option("--verifier-key", required=True, help="The ledger's note verifier key (verifier_key of GET /v1/ledger), obtained out of band.")
@click.option("--lot", help="The lot the evidence must be about (an origin's, handoff's or transformation's lot, or an attestation's subject).")
@click.option("--entry-id", help="The entry id (64 hex) the evidence must be for.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object on stdout.")
def verify(entry_file: str, proof_file: str, verifier_key: str, lot: str | None, entry_id: str | None, as_json: bool) -> None:
    """Check that the proof shows the entry is in the ledger that VERIFIER_KEY signs for.

    Proves inclusion: these envelope bytes are a leaf of the log under a checkpoint the ledger
    key signed. Member signatures and the rules at the entry's position are the ledger's to
    check (`filiera verify`, `filiera audit`). Exit status: 0 valid, 1 refused (the code names
    why), 2 could not check.
    """
    from ledger.evidence import verify_evidence
    from ledger.notes import NoteVerifier

    def fail(exc: LedgerError, status: int) -> NoReturn:
        if as_json:
            click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, **exc.facts}))
        elif status == EXIT_INVALID:
            click.echo(f"FAILED: {exc.code}: {exc.detail}")
        if status != EXIT_INVALID:
            click.echo(f"error: {exc.code}: {exc.detail}", err=True)
        sys.exit(status)

    try:
        verifier = NoteVerifier.parse(verifier_key)
        if lot is not None:
            check_lot_id(lot, field="--lot")
        if entry_id is not None and not _ENTRY_ID.fullmatch(entry_id):
            raise InvalidField("--entry-id must be 64 lowercase hex digits", field="--entry-id")
        if entry_file == "-" and proof_file == "-":
            raise ConfigurationError("only one of --entry and --proof can be read from stdin")
        envelope = _read(entry_file, "entry file")
        proof = _read(proof_file, "proof file")
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    try:
        found = verify_evidence(envelope, proof, verifier=verifier, lot=lot, entry_id=entry_id)
    except LedgerError as exc:
        fail(exc, EXIT_INVALID)
    if as_json:
        click.echo(json.dumps({"ok": True, **found.to_json()}))
        return
    about = f"{found.type} by {found.author}" + (f", lots {', '.join(found.lots)}" if found.lots else "")
    click.echo(
        f"OK: entry {found.entry} ({about}) is leaf {found.index} of {found.origin} "
        f"at tree size {found.tree_size}, root {found.checkpoint.root.hex()}"
    )
