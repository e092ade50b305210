"""``filiera audit``: the offline audit of an exported bundle (ledger.audit), for auditors.

Needs no database and no server: only the bundle and the ledger's verifier key, obtained out of
band (a contract annex, the ledger's published keys), never from the bundle itself.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import click

from ledger.audit import audit_bundle
from ledger.errors import ConfigurationError, LedgerError
from ledger.notes import NoteVerifier

from ..cli import EXIT_INVALID, EXIT_USAGE, cli, fail, memory_budget_option, read_trusted_checkpoint, write_atomic


def _verifier(text: str) -> NoteVerifier:
    """A vkey given inline, or the path of a file holding one (first non-empty line)."""
    candidate = text.strip()
    path = Path(candidate)
    if "+" not in candidate or path.is_file():
        try:
            candidate = next(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError, StopIteration) as exc:
            raise ConfigurationError(f"cannot read a verifier key from {text}: {exc}") from exc
    return NoteVerifier.parse(candidate)


class _NoBar:
    def update(self, _n: int) -> None:
        pass


def _open(path: Path) -> IO[bytes]:
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        f: IO[bytes] = open(path, "rb")
        if f.read(2) == b"\x1f\x8b":
            f.close()
            return gzip.open(path, "rb")
        f.seek(0)
        return f
    except OSError as exc:
        raise ConfigurationError(f"cannot read the bundle {path}: {exc.strerror}") from exc


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--verifier-key", required=True, help="The ledger's note verifier key (origin+keyid+base64), or a file holding it.")
@click.option(
    "--trusted-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A signed checkpoint from your last audit: the bundle must extend it (fork and rollback "
    "detection); entries it pins skip only the signature work.",
)
@click.option("--state", "state_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="State snapshot saved by your last audit: check a partial bundle of only the new blocks.")
@click.option("--state-sha256", help="Refuse the --state file unless its SHA-256 is this (from your last report).")
@click.option("--save-state", type=click.Path(dir_okay=False, path_type=Path), help="After a clean audit, save the state snapshot here for the next incremental audit.")
@click.option("--save-checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="After a clean audit, save the bundle's checkpoint here (your next --trusted-checkpoint).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report to this file.")
@click.option("--workers", type=click.IntRange(0, 256), help="Processes for signature checks (default: every core; 0: none).")
@click.option("--recheck-signatures", is_flag=True, help="Check signatures below the trusted checkpoint too.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object instead of text.")
@memory_budget_option
def audit(
    bundle: Path,
    verifier_key: str,
    trusted_checkpoint: Path | None,
    state_file: Path | None,
    state_sha256: str | None,
    save_state: Path | None,
    save_checkpoint: Path | None,
    report_file: Path | None,
    workers: int | None,
    recheck_signatures: bool,
    as_json: bool,
    memory_budget: int,
) -> None:
    """Audit an exported BUNDLE offline (`-` reads stdin; .gz is read as gzip).

    Exit status: 0 the ledger holds, 1 it does not (the report names the first failing block
    and entry and why), 2 could not audit (unreadable input, wrong key format).
    """

    def usage(exc: LedgerError) -> NoReturn:
        if as_json:
            click.echo(json.dumps({"ok": None, "code": exc.code, "detail": exc.detail}))
        fail(exc, EXIT_USAGE)

    try:
        verifier = _verifier(verifier_key)
        checkpoint = read_trusted_checkpoint(trusted_checkpoint) if trusted_checkpoint else None
        state = open(state_file, "rb") if state_file is not None else None
        source = _open(bundle)
        size = bundle.stat().st_size if str(bundle) != "-" and bundle.is_file() else 0
    except OSError as exc:
        usage(ConfigurationError(f"cannot read {exc.filename}: {exc.strerror}"))
    except LedgerError as exc:
        usage(exc)

    tmp_state = None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(source)
            if state is not None:
                stack.enter_context(state)
            out = None
            if save_state is not None:
                tmp_state = save_state.with_name(f".{save_state.name}.{secrets.token_hex(6)}.tmp")
                out = stack.enter_context(open(os.open(tmp_state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"))
            # Progress by bytes read; not drawn for stdin or gzip, whose length is unknown.
            bar: Any = (
                stack.enter_context(click.progressbar(length=size, label="auditing", file=sys.stderr))
                if size and not isinstance(source, gzip.GzipFile)
                else _NoBar()
            )
            read = [0]

            def lines() -> Iterator[bytes]:
                for raw in source:
                    read[0] += len(raw)
                    yield raw

            last = [0]

            def progress(_entries: int) -> None:
                bar.update(read[0] - last[0])
                last[0] = read[0]

            report = audit_bundle(
                lines(),
                verifier=verifier,
                trusted_checkpoint=checkpoint,
                state=state,
                state_sha256=state_sha256,
                save_state=out,
                workers=workers,
                progress=progress,
                recheck_signatures=recheck_signatures,
                memory_budget=memory_budget,
            )
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
        if tmp_state is not None and save_state is not None:
            if report.ok and report.state_out:
                os.replace(tmp_state, save_state)
            tmp_state.unlink(missing_ok=True)
        if report.ok and save_checkpoint is not None and report.checkpoint is not None:
            write_atomic(save_checkpoint, report.checkpoint)
        if report_file is not None:
            write_atomic(report_file, json.dumps(report.to_json(), indent=2) + "\n")
    except LedgerError as exc:
        if tmp_state is not None:
            tmp_state.unlink(missing_ok=True)
        usage(exc)
    except OSError as exc:
        if tmp_state is not None:
            tmp_state.unlink(missing_ok=True)
        usage(ConfigurationError(f"cannot read or write a file: {exc}"))
    click.echo(json.dumps(report.to_json()) if as_json else report.to_text(), nl=as_json)
    sys.exit(0 if report.ok else EXIT_INVALID)

