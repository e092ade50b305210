"""``filiera export``: the ledger as an audit bundle (``filiera-bundle/v1`` NDJSON, see
:mod:`ledger.bundle` and ``docs/auditing.md``), from the local database or from a server's
``GET /v1/export`` signed with an auditor's key (RFC 9421).

The bundle is written to ``FILE.partial`` as it arrives and renamed to ``FILE`` once its
``end`` record is written, so a ``FILE`` that exists is complete; ``--resume`` continues a
``.partial`` from its last complete block. Progress goes to stderr, the one-line summary (or
``--json``) to stdout. Exit status: 0 exported, 2 could not export (usage, unreachable,
forbidden, refused range, cut short).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, NoReturn

import click
from sqlalchemy.exc import OperationalError

from ledger.errors import ConfigurationError, LedgerError, Unavailable
from ledger.keys import read_key_file
from ledger.notes import Checkpoint

from ..cli import EXIT_USAGE, Ctx, cli, fail, read_trusted_checkpoint
from ..export_file import Kept, Written, finish, partial_path, read_complete, read_partial, write_bundle
from ..export_sources import BundleStream, http_stream, local_stream


def _checkpoint(path: Path) -> Checkpoint:
    text = read_trusted_checkpoint(path)
    return Checkpoint.parse_body(text.partition("\n\n")[0] + "\n")


def _open_partial(path: Path, kept: Kept | None) -> IO[bytes]:
    """The ``.partial`` file: cut back to what ``kept`` holds, or new. It holds every entry,
    commercial terms included, so a new one is readable by its owner only (as key files are)."""
    if kept is not None:
        f = path.open("r+b")
        f.truncate(kept.offset)
        f.seek(kept.offset)
        return f
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _find_partial(out: Path, *, resume: bool, force: bool) -> tuple[Kept | None, Written | None]:
    """What is already on disk: (the partial export to continue, or a complete FILE).
    Raises ConfigurationError when continuing or overwriting was not asked for."""
    partial = partial_path(out)
    if force:
        return None, None
    if out.exists():
        if not resume:
            raise ConfigurationError(f"{out} exists; --force exports it again, --resume completes it if it was cut short")
        done = read_complete(out)
        if done is not None:
            return None, done
        if partial.exists():
            raise ConfigurationError(f"both {out} and {partial} exist; remove the one you do not want to continue")
        if read_partial(out) is None:
            raise ConfigurationError(f"{out} is not a Filiera export; choose another --out or --force to overwrite it")
        # A bundle cut short that was saved under its final name (by curl, say): continue it
        # under the .partial name, like any other.
        os.replace(out, partial)
    if not partial.exists():
        return None, None
    if not resume:
        raise ConfigurationError(f"{partial} holds an unfinished export; --resume continues it, --force starts over")
    kept = read_partial(partial)
    if kept is None:
        click.echo(f"{partial} holds no complete header line; exporting afresh", err=True)
    return kept, None


def _resume_range(kept: Kept, start: int | None, end: int | None, since: int | None) -> tuple[int, int | None]:
    """The range to fetch when resuming: from the last complete block (fetched again and
    checked), to the end the partial file was started with when it says so (its consistency
    record), else ``--to`` or the head. The options given again must agree with the file."""
    if start is not None and start > kept.header.from_index:
        raise ConfigurationError(f"the partial export starts at entry {kept.header.from_index}, before --from {start}")
    c = kept.consistency
    if since is not None and (c is None or c.from_size != since):
        raise ConfigurationError(
            f"the partial export was started {'without' if c is None else f'since tree size {c.from_size}, not'} "
            f"{'--since-checkpoint' if c is None else since}; --force starts over"
        )
    if c is None:
        return kept.refetch_from, end
    # The consistency record proves the tree at its `to`: the rest must end there too.
    if end is not None and end < c.to_size:
        raise ConfigurationError(f"the partial export runs to tree size {c.to_size}, past --to {end}")
    return kept.refetch_from, c.to_size


def _summary(out: Path, w: Written, *, resumed_at: int | None, already: bool) -> dict[str, Any]:
    return {
        "ok": True,
        "file": str(out),
        "origin": w.header.origin,
        "from_index": w.header.from_index,
        "tree_size": w.tree_size,
        "blocks": w.blocks,
        "entries": w.entries,
        "bytes": w.bytes,
        "since": w.consistency.from_size if w.consistency else None,
        "resumed_at": resumed_at,
        "already_complete": already,
    }


def _say(s: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(s))
        return
    what = "already complete" if s["already_complete"] else "exported"
    line = (
        f"{what}: {s['file']}: {s['origin']} entries {s['from_index']} to {s['tree_size'] - 1}, "
        f"{s['entries']} entries in {s['blocks']} blocks, tree size {s['tree_size']}"
    )
    if s["since"] is not None:
        line += f", consistency proof from tree size {s['since']}"
    if s["resumed_at"] is not None:
        line += f" (resumed at entry {s['resumed_at']})"
    click.echo(line)


@cli.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file to write (NDJSON; FILE.partial until complete).")
@click.option("--url", help="Export a server's ledger (GET /v1/export) instead of the local database.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="With --url: the key file of an auditor or admin, to sign the request (RFC 9421).")
@click.option("--from", "start", type=int, help="First entry index wanted (default 0); the bundle starts at the first whole block at or after it.")
@click.option("--to", "end", type=int, help="End of the range, exclusive (a tree size; default the head); the bundle ends with the last whole block at or before it.")
@click.option("--since-checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A signed checkpoint you trust: the bundle proves it consistent with its own (for partial exports).")
@click.option("--resume", is_flag=True, help="Continue FILE.partial (or a cut-short FILE) from its last complete block.")
@click.option("--force", is_flag=True, help="Export afresh, replacing FILE (once complete) and any FILE.partial.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary, or the failure, as one JSON object on stdout.")
@click.pass_obj
def export_command(
    obj: Ctx,
    out: Path,
    url: str | None,
    key_file: Path | None,
    start: int | None,
    end: int | None,
    since_checkpoint: Path | None,
    resume: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write the ledger, or whole blocks of it, as an audit bundle to FILE.

    From the local database (FILIERA_DATABASE_URL, --data-dir ...) by default, or with --url
    and --key from a server, signed as an auditor or admin. The progress bar goes to stderr;
    stdout carries only the summary. Exit status: 0 exported, 2 could not export.
    """

    def failed(exc: LedgerError) -> NoReturn:
        if as_json:
            facts = {k: v for k, v in exc.facts.items() if isinstance(v, (str, int, float, bool, type(None)))}
            click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, **facts}))
        fail(exc, EXIT_USAGE)

    try:
        if resume and force:
            raise ConfigurationError("--resume continues a partial export and --force starts over; give one")
        if url and key_file is None:
            raise ConfigurationError("--url needs --key: the export is for auditors and admins, so sign the request with such a key file")
        if key_file is not None and not url:
            raise ConfigurationError("--key signs requests to a server (--url); a local export reads the database")
        key = read_key_file(key_file).signing_key if key_file is not None else None
        trusted = _checkpoint(since_checkpoint) if since_checkpoint is not None else None
        since = trusted.tree_size if trusted is not None else None
        try:
            kept, done = _find_partial(out, resume=resume, force=force)
        except OSError as exc:
            raise ConfigurationError(f"cannot read {out} or its .partial file: {exc}", path=str(out)) from exc
        if done is not None:
            _say(_summary(out, done, resumed_at=None, already=True), as_json)
            return
        req_start: int | None = start
        req_end, req_since = end, since
        if kept is not None:
            req_start, req_end = _resume_range(kept, start, end, since)
            # The partial file keeps its own consistency record (if any): a second one would
            # come after its first block, where the format has none.
            req_since = None
    except LedgerError as exc:
        failed(exc)

    stream: BundleStream | None = None
    try:
        if url and key is not None:
            stream = http_stream(url, key, start=req_start, end=req_end, since=req_since)
        else:
            stream = local_stream(obj.settings, start=req_start or 0, end=req_end, since=req_since)
        partial = partial_path(out)
        base = kept.header.from_index if kept is not None else stream.start
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(_open_partial(partial, kept))
            bar = stack.enter_context(
                click.progressbar(length=max(stream.end - base, 1), label="exporting", file=sys.stderr, show_pos=True)
            )
            if kept is not None:
                bar.update(kept.entries)
            written = write_bundle(
                f,
                stream.lines,
                kept=kept,
                origin=trusted.origin if trusted is not None else None,
                progress=bar.update,
            )
            finish(f, partial, out)
    except LedgerError as exc:
        failed(exc)
    except OperationalError as exc:
        failed(Unavailable(f"database unreachable or busy: {exc.orig}"))
    except OSError as exc:
        failed(ConfigurationError(f"cannot write {out}: {exc}", path=str(out)))
    finally:
        if stream is not None:
            stream.close()
    _say(_summary(out, written, resumed_at=kept.tree_size if kept is not None else None, already=False), as_json)
