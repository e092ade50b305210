"""The ``filiera`` command (PROTOCOL §8): init, keygen, sign, submit, serve, verify, demo."""

from __future__ import annotations

import functools
import contextlib
import json
import os
import secrets
import sys
import urllib.error
import urllib.request

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from ledger import jcs
from ledger.config import Settings, redacted_url
from ledger.encoding import check_participant_id, format_time
from ledger.entries import add_signature, parse_envelope, sign_payload
from ledger.errors import ConfigurationError, LedgerError, ParticipantReserved, Unavailable
from ledger.client import http_json
from ledger.keys import KeyFile, SigningKey, read_key_file, write_key_file
from ledger.rules.governance import RESERVED_IDS
from ledger.spill import DEFAULT_BUDGET

__all__ = ["main", "cli"]

EXIT_INVALID = 1  # verification failed / a submission refused
EXIT_USAGE = 2  # bad arguments or configuration


def _fail(exc: LedgerError, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {exc.code}: {exc.detail}", err=True)
    sys.exit(code)


class _Ctx:
    def __init__(self, data_dir: str | None, database_url: str | None) -> None:
        overrides: dict[str, object] = {}
        if data_dir:
            overrides["data_dir"] = Path(data_dir)
            if "FILIERA_LEDGER_KEY_FILE" not in os.environ:
                overrides["ledger_key_file"] = Path(data_dir) / "ledger.key"
        if database_url:
            overrides["database_url"] = database_url
        self.settings = Settings.from_env(None, **overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", envvar=None, help="Data directory (default FILIERA_DATA_DIR or ./var).")
@click.option("--database-url", help="SQLAlchemy URL (default FILIERA_DATABASE_URL or SQLite in the data dir).")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """Filiera: a supply-chain provenance ledger."""
    try:
        ctx.obj = _Ctx(data_dir, database_url)
    except LedgerError as exc:
        _fail(exc)


def _nonce() -> str:
    return secrets.token_urlsafe(18)


def _now() -> str:
    return format_time(datetime.now(timezone.utc))


def _migrate(settings: Settings) -> Any:
    from ledger.storage.migrate import upgrade
    from ledger.storage.store import Store

    store = Store.open(settings, check=False)
    from ledger.storage.store import check_durability

    check_durability(store.engine)
    upgrade(store.engine)
    return store


@cli.command()
@click.pass_obj
def migrate(obj: _Ctx) -> None:
    """Create or upgrade the database schema (Alembic)."""
    try:
        _migrate(obj.settings).dispose()
    except LedgerError as exc:
        _fail(exc)
    click.echo("schema is up to date")


def init_ledger(
    settings: Settings, *, origin: str, admin: str, admin_name: str, quorum: int = 1
) -> tuple[KeyFile, KeyFile]:
    """Create the ledger key, the first admin's key and block 0. Raises LedgerError."""
    from ledger.notes import verifier_for
    from ledger.sealing import Sealer

    check_participant_id(admin, field="admin")
    if admin in RESERVED_IDS:
        raise ParticipantReserved(f"participant id {admin!r} is reserved", participant=admin)
    verifier_for(origin, b"\x00" * 32)  # the origin must be a valid note key name
    admin_file = settings.data_dir / f"{admin}.key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = _migrate(settings)
    try:
        with store.read() as conn:
            if store.head(conn) is not None:
                from ledger.errors import LedgerExists

                raise LedgerExists(f"{settings.database_url} already holds a ledger")
        # Refuse before writing either key, so that a refused init leaves no half-made
        # ledger (a ledger key written, the admin's refused) and never replaces a secret.
        for path in (settings.ledger_key_file, admin_file):
            if path.exists() or path.is_symlink():
                from ledger.errors import InvalidKeyFile

                raise InvalidKeyFile(f"key file {path} already exists; remove it or choose another data directory", path=str(path))
        ledger_key = SigningKey.generate()
        admin_key = SigningKey.generate()
        written: list[Path] = []
        try:
            write_key_file(settings.ledger_key_file, participant="ledger", signing_key=ledger_key)
            written.append(settings.ledger_key_file)
            write_key_file(admin_file, participant=admin, signing_key=admin_key)
            written.append(admin_file)
            sealer = Sealer(store, signing_key=ledger_key)
            sealer.genesis(
                origin=origin,
                admins=[{"id": admin, "name": admin_name, "roles": ["admin"], "keys": [{"public_key": admin_key.public_key.b64}]}],
                admin_quorum=quorum,
                nonce=_nonce(),
            )
        except BaseException:
            # No block 0, so these keys sign nothing: remove them rather than leave a data
            # directory that makes the next init refuse.
            for path in written:
                path.unlink(missing_ok=True)
            raise
    finally:
        store.dispose()
    return read_key_file(settings.ledger_key_file), read_key_file(admin_file)


@cli.command()
@click.option("--origin", required=True, help="The ledger's origin, e.g. ledger.example.com/olive-oil.")
@click.option("--admin", default="admin", show_default=True, help="Participant id of the first admin.")
@click.option("--admin-name", default="Ledger administrator", show_default=True, help="Public trading name of the first admin.")
@click.pass_obj
def init(obj: _Ctx, origin: str, admin: str, admin_name: str) -> None:
    """Create a ledger: its key, the first admin's key file and block 0."""
    try:
        lk, ak = init_ledger(obj.settings, origin=origin, admin=admin, admin_name=admin_name)
    except LedgerError as exc:
        _fail(exc)
    from ledger.notes import verifier_for

    click.echo(f"ledger {origin} created in {redacted_url(obj.settings.database_url)}")
    click.echo(f"  ledger key     {obj.settings.ledger_key_file} (key id {lk.key_id})")
    click.echo(f"  admin key      {obj.settings.data_dir / (admin + '.key')} ({admin}, key id {ak.key_id})")
    click.echo(f"  verifier key   {verifier_for(origin, lk.public_key.raw).vkey}")


@cli.command()
@click.option("--participant", required=True, help="Participant id the key belongs to.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Key file to write (mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def keygen(participant: str, out: Path, force: bool) -> None:
    """Generate an Ed25519 key file; prints the public key to register."""
    try:
        check_participant_id(participant, field="participant")
        key = SigningKey.generate()
        write_key_file(out, participant=participant, signing_key=key, overwrite=force)
    except LedgerError as exc:
        _fail(exc)
    click.echo(json.dumps({"participant": participant, "key_id": key.public_key.key_id, "public_key": key.public_key.b64}))


def _read_json_file(path: str) -> Any:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return jcs.loads(data)


@cli.command()
@click.argument("file")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Signer's key file.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
def sign(file: str, key_file: Path, out: Path | None) -> None:
    """Add a signature to an envelope, or wrap a bare payload (FILE or - for stdin).

    A bare payload gets ``time`` and ``nonce`` filled in when they are missing.
    """
    try:
        kf = read_key_file(key_file)
        doc = _read_json_file(file)
        if not isinstance(doc, dict):
            raise ConfigurationError("FILE must hold a JSON object: a payload or an envelope")
        if "payload" in doc and set(doc) <= {"payload", "signatures"}:
            env = add_signature(doc, kf.participant, kf.signing_key)
        else:
            payload = {"time": _now(), "nonce": _nonce(), **doc}
            payload.setdefault("author", kf.participant)
            env = sign_payload(payload, [(kf.participant, kf.signing_key)])
        # Refuse here, not at the server, what no ledger would accept (shape, fields, personal
        # data, duplicate signatures); whether the signer may sign is for the ledger to decide.
        parse_envelope(env, origin=None)
    except LedgerError as exc:
        _fail(exc)
    text = json.dumps(env, indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def say_rate_limited(seconds: float, *, after_bar: bool = False) -> None:
    """On stderr, before waiting out a 429 (``http_json``'s ``on_wait``): what the wait is for.
    ``after_bar``: a progress bar holds the current line, so start a new one."""
    click.echo(f"{chr(10) if after_bar else ''}rate limited by the server: waiting {seconds:.0f} s", err=True)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--url", required=True, help="Ledger base URL, e.g. http://127.0.0.1:8000")
@click.option("--async", "is_async", is_flag=True, help="Ask for 202 (queued) instead of waiting for the block.")
@click.option(
    "--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your key file: also signs the HTTP requests (RFC 9421), so they count against your member rate limit instead of your address's.",
)
@click.option(
    "--rate-limit-wait", default=300.0, show_default=True, type=click.FloatRange(0),
    help="Seconds to spend waiting out 429 rate_limited answers (Retry-After) per file before counting it refused.",
)
def submit(files: tuple[str, ...], url: str, is_async: bool, key_file: Path | None, rate_limit_wait: float) -> None:
    """Post signed envelopes (FILE or - for stdin); prints each receipt (or problem) as a JSON
    line on stdout and a summary on stderr. Exit 1 if any file was refused or unreadable.

    A 429 (rate limited) is waited out as its Retry-After says, and the file posted again."""
    counts = {"sealed": 0, "present": 0, "queued": 0, "refused": 0, "unreadable": 0}
    headers = {"Prefer": "respond-async"} if is_async else {}
    try:
        key = read_key_file(key_file).signing_key if key_file else None
    except LedgerError as exc:
        click.echo(f"error: {exc.code}: {exc.detail}", err=True)
        sys.exit(EXIT_USAGE)

    def summary() -> None:
        parts = [f"{counts['sealed']} sealed", f"{counts['present']} already present"]
        if counts["queued"]:
            parts.append(f"{counts['queued']} queued")
        parts.append(f"{counts['refused']} refused")
        if counts["unreadable"]:
            parts.append(f"{counts['unreadable']} unreadable")
        click.echo(", ".join(parts), err=True)

    for f in files:
        try:
            env = _read_json_file(f)
        except LedgerError as exc:
            click.echo(json.dumps({"file": f, "status": None, "code": exc.code, "detail": exc.detail}))
            counts["unreadable"] += 1
            continue
        except OSError as exc:
            click.echo(json.dumps({"file": f, "status": None, "code": "unreadable_file", "detail": str(exc)}))
            counts["unreadable"] += 1
            continue
        try:
            status, body = http_json(
                "POST", url.rstrip("/") + "/v1/entries", env, headers, key=key, rate_limit_wait=rate_limit_wait, on_wait=say_rate_limited
            )
        except (urllib.error.URLError, OSError, LedgerError) as exc:
            summary()
            click.echo(f"error: cannot reach {url}: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        click.echo(json.dumps({"file": f, "status": status, **(body if isinstance(body, dict) else {"body": body})}))
        if status == 201:
            counts["sealed"] += 1
        elif status == 200:
            counts["present"] += 1
        elif status == 202:
            counts["queued"] += 1
        else:
            counts["refused"] += 1
    summary()
    sys.exit(EXIT_INVALID if counts["refused"] or counts["unreadable"] else 0)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--read-only", is_flag=True,
    help="A read-only node (FILIERA_READ_ONLY=1), e.g. on a streaming replica: no writes, 503 to every write.",
)
@click.pass_obj
def serve(obj: _Ctx, host: str, port: int, workers: int, read_only: bool) -> None:
    """Serve the API with gunicorn (config: api/gunicorn.conf.py)."""
    from api import create_app

    import dataclasses
    import tempfile

    if read_only:
        obj.settings = dataclasses.replace(obj.settings, read_only=True)

    # Fail here, with a clear message, rather than in every worker. A scratch run directory
    # stands in for the one api/gunicorn.conf.py makes, so the rate-limit store is tried too.
    try:
        with tempfile.TemporaryDirectory(prefix="filiera-check-") as scratch:
            settings = dataclasses.replace(obj.settings, run_dir=Path(scratch))
            create_app(settings, background_sealing=False).extensions["filiera"].store.dispose()
    except LedgerError as exc:
        _fail(exc)
    conf = Path(__file__).with_name("gunicorn.conf.py")
    env = dict(os.environ)
    # gunicorn changes into the repository (--chdir), so relative paths must be made absolute.
    env["FILIERA_DATA_DIR"] = str(obj.settings.data_dir.resolve())
    env["FILIERA_DATABASE_URL"] = obj.settings.database_url
    env["FILIERA_LEDGER_KEY_FILE"] = str(obj.settings.ledger_key_file.resolve())
    env["FILIERA_WEBHOOK_KEY_FILE"] = str(obj.settings.webhook_key_file.resolve())
    if obj.settings.read_only:
        env["FILIERA_READ_ONLY"] = "1"
    if obj.settings.witness_policy is not None:
        env["FILIERA_WITNESS_POLICY"] = str(obj.settings.witness_policy.resolve())
    args = [sys.executable, "-m", "gunicorn", "-c", str(conf), "--bind", f"{host}:{port}", "--workers", str(workers), "--chdir", str(Path(__file__).resolve().parents[1])]
    mode = " (read-only)" if obj.settings.read_only else ""
    click.echo(f"serving {redacted_url(obj.settings.database_url)}{mode} on http://{host}:{port} with {workers} workers")
    os.execve(sys.executable, args, env)


def _read_trusted_checkpoint(path: Path) -> str:
    """A signed checkpoint note saved earlier (``--save-checkpoint`` or GET /v1/checkpoint).

    Only its form is checked here; its signature is checked against the ledger's key once
    genesis has been read. Raises ConfigurationError or MalformedNote.
    """
    from ledger.notes import Checkpoint

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the trusted checkpoint {path}: {exc}", path=str(path)) from exc
    body, sep, _ = text.partition("\n\n")
    if not sep:
        raise ConfigurationError(f"{path} is not a signed checkpoint note (no signature lines)", path=str(path))
    Checkpoint.parse_body(body + "\n")
    return text


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}", path=str(path)) from exc


def _require_auditor(url: str, kf: KeyFile) -> None:
    """A whole-ledger check needs a key that sees every entry. Raises ConfigurationError."""
    status, me = http_json("GET", f"{url.rstrip('/')}/v1/participants/{kf.participant}", key=kf.signing_key)
    roles = set(me.get("roles", [])) if status == 200 and isinstance(me, dict) else set()
    if not roles & {"auditor", "admin"}:
        raise ConfigurationError(
            f"{kf.participant} is not an auditor or admin of this ledger (roles: "
            f"{', '.join(sorted(roles)) or 'none'}); only they see every entry to verify"
        )


@cli.command()
@click.argument("path")
@click.option("--url", required=True, help="Ledger base URL, e.g. http://127.0.0.1:8000")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Your key file: signs the request (RFC 9421) so member-only resources answer.")
def get(path: str, url: str, key_file: Path | None) -> None:
    """GET a resource (e.g. /v1/entries/ID) as a member and print the JSON; exit 1 on 4xx/5xx."""
    try:
        key = read_key_file(key_file).signing_key if key_file else None
    except LedgerError as exc:
        _fail(exc)
    target = url.rstrip("/") + "/" + path.lstrip("/")
    try:
        status, body = http_json("GET", target, key=key)
    except (urllib.error.URLError, OSError, LedgerError) as exc:
        click.echo(f"error: cannot reach {url}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body)
    sys.exit(EXIT_INVALID if status >= 400 else 0)


memory_budget_option = click.option(
    "--memory-budget",
    type=click.IntRange(min=1),
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Records of the replayed state (lots, handoffs, contracts, used nonces...) held in "
    "memory; past it they spill to a scratch file in the temporary directory (TMPDIR), "
    "deleted at the end. Lower it to use less memory, raise it to spill less.",
)


@cli.command()
@click.option("--url", help="Verify a server's ledger through its API instead of the local database.")
@click.option("--ledger-key", help="Trusted ledger public key (base64); default: the one genesis names.")
@click.option(
    "--trusted-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A signed checkpoint saved earlier: the ledger must reach its size with its root "
    "(detects a truncated or rewritten log).",
)
@click.option(
    "--save-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="After a successful check, save the head's signed checkpoint here (may be the "
    "--trusted-checkpoint file: it then advances).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --url: the key file of an auditor or admin, to sign the reads (RFC 9421).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report, or the failure, as one JSON object on stdout.")
@memory_budget_option
@click.pass_obj
def verify(
    obj: _Ctx,
    url: str | None,
    ledger_key: str | None,
    trusted_checkpoint: Path | None,
    save_checkpoint: Path | None,
    key_file: Path | None,
    as_json: bool,
    memory_budget: int,
) -> None:
    """Re-check every block, link, root, signature and authorisation; exit 1 on the first failure.

    The progress bar goes to stderr; stdout carries only the result (one JSON object with
    --json). Exit status: 0 verified, 1 the ledger does not verify, 2 could not check.
    """
    from sqlalchemy.exc import DatabaseError, OperationalError

    from ledger.errors import ChainBroken
    from ledger.keys import PublicKey
    from ledger.verify import verify_chain

    from .verify_sources import db_source, http_source

    def fail(exc: LedgerError, code: int) -> NoReturn:
        if as_json:
            # A broken chain always names where (null where it cannot: e.g. a row no block seals).
            where = dict.fromkeys(("reason", "height", "index", "entry")) if isinstance(exc, ChainBroken) else {}
            click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, **where, **exc.facts}))
        if isinstance(exc, ChainBroken):
            if not as_json:
                click.echo(f"FAILED: {exc.detail}")
            sys.exit(code)
        _fail(exc, code)

    try:
        trusted = PublicKey.from_b64(ledger_key, field="--ledger-key").raw if ledger_key else None
        checkpoint = _read_trusted_checkpoint(trusted_checkpoint) if trusted_checkpoint else None
        reader_file = read_key_file(key_file) if key_file else None
        reader = reader_file.signing_key if reader_file else None
        if url and reader_file is None:
            raise ConfigurationError(
                "--url needs --key: entries are for members, so sign the reads with an "
                "auditor's or admin's key file"
            )
        if url and reader_file is not None:
            _require_auditor(url, reader_file)
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    try:
        signed_http = functools.partial(http_json, key=reader)
        source = (
            http_source(url, signed_http, memory_budget=memory_budget)
            if url
            else db_source(obj.settings, memory_budget=memory_budget)
        )
        with click.progressbar(length=source.total, label="verifying", file=sys.stderr, show_pos=True) as bar:
            last = [0]

            def progress(n: int) -> None:
                bar.update(n - last[0])
                last[0] = n

            try:
                report = verify_chain(
                    source.blocks,
                    ledger_key=trusted,
                    node_check=source.node_check,
                    state_check=source.state_check,
                    trusted_checkpoint=checkpoint,
                    progress=progress,
                    on_block=source.on_block,
                    resume=source.resume,
                    after_block=source.after_block,
                )
            finally:
                source.close()
    except ChainBroken as exc:
        fail(exc, EXIT_INVALID)
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    except (urllib.error.URLError, OSError, LedgerError) as exc:
        fail(Unavailable(f"cannot reach {url}: {exc}"), EXIT_USAGE)
    except OperationalError as exc:
        if "could not decode" in str(exc.orig).lower():
            # SQLite read a text value that is not UTF-8: a damaged row, not a busy database.
            fail(ChainBroken(f"the database cannot read the stored log: {exc.orig}", reason="storage", height=None), EXIT_INVALID)
        fail(Unavailable(f"database unreachable or busy: {exc.orig}"), EXIT_USAGE)
    except DatabaseError as exc:
        # The database answered but cannot read its own rows (a damaged file, a value of the
        # wrong type): the stored log is not intact, which is a verification failure.
        fail(ChainBroken(f"the database cannot read the stored log: {exc.orig}", reason="storage", height=None), EXIT_INVALID)
    if save_checkpoint is not None and report.checkpoint is not None:
        try:
            _write_atomic(save_checkpoint, report.checkpoint)
        except LedgerError as exc:
            fail(exc, EXIT_USAGE)
    result = {
        "ok": True,
        "origin": report.origin,
        "height": report.height,
        "tree_size": report.tree_size,
        "root": report.root,
        "blocks": report.blocks,
        "entries": report.entries,
        "trusted_checkpoint_size": report.trusted_size,
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        extra = f"; consistent with the trusted checkpoint at size {report.trusted_size}" if report.trusted_size is not None else ""
        click.echo(f"OK: {report.origin}: {report.blocks} blocks, {report.entries} entries, root {report.root}{extra}")


@cli.command()
@click.option("--origin", default="demo.filiera.example", show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing if the database already holds a ledger.")
@click.option(
    "--lots",
    type=click.IntRange(min=4),
    default=None,
    help="Harvested lots of olives to follow through the chain (default 30); 100000 makes a large ledger.",
)
@click.pass_obj
def demo(obj: _Ctx, origin: str, if_missing: bool, lots: int | None) -> None:
    """Create a demo ledger: an olive-oil consortium, its keys and its trade.

    Groves in Puglia harvest lots of olives, a certifier attests them, a mill presses them, a
    bottler bottles the oil for retailers in Milan and Munich under contracts with delivery
    deadlines, a carrier delivers (some late, one pallet refused), the retailers pay. Every
    member's key file is written to the data directory. Progress goes to stderr.
    """
    from .demo import DEFAULT_LOTS, build_demo

    settings = obj.settings
    total = DEFAULT_LOTS if lots is None else lots
    with contextlib.ExitStack() as stack:
        bars: list[Any] = []

        def progress(lots_sealed: int) -> None:
            # Drawn from the first sealed batch, so that --if-missing on an existing
            # ledger prints no bar.
            if not bars:
                bars.append(stack.enter_context(click.progressbar(length=total, label="sealing the demo", file=sys.stderr, show_pos=True)))
            bars[0].update(lots_sealed)

        try:
            summary = build_demo(settings, origin=origin, if_missing=if_missing, lots=total, progress=progress)
        except LedgerError as exc:
            stack.close()
            _fail(exc)
    if summary is None:
        click.echo(f"a ledger already exists in {settings.database_url}; leaving it as it is")
        return
    click.echo(
        f"demo ledger {summary.origin}: {summary.members} members, {summary.lots:,} harvested lots; "
        f"{summary.entries:,} entries in {summary.blocks:,} blocks, "
        f"{summary.seconds:.1f} s ({summary.rate:,.0f} entries/s)"
    )
    click.echo(f"key files in {settings.data_dir}")


# Public names for the command modules of api/commands (which import this module).
Ctx = _Ctx
fail = _fail
read_trusted_checkpoint = _read_trusted_checkpoint
write_atomic = _write_atomic

from . import commands  # noqa: E402,F401  (registers the commands kept in their own modules)


def main() -> None:
    cli(prog_name="filiera")


