"""The ``filiera`` command (PROTOCOL §8): init, keygen, sign, submit, serve, verify, demo."""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from ledger import jcs
from ledger.config import Settings
from ledger.encoding import check_participant_id, format_time
from ledger.entries import add_signature, sign_payload
from ledger.errors import ConfigurationError, LedgerError
from ledger.keys import KeyFile, SigningKey, read_key_file, write_key_file

__all__ = ["main", "cli"]

EXIT_INVALID = 1  # verification failed / a submission refused
EXIT_USAGE = 2  # bad arguments or configuration


def _fail(exc: LedgerError, code: int = EXIT_USAGE) -> None:
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
        self.settings = Settings.from_env(**overrides)


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
    verifier_for(origin, b"\x00" * 32)  # the origin must be a valid note key name
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = _migrate(settings)
    try:
        with store.read() as conn:
            if store.head(conn) is not None:
                from ledger.errors import LedgerExists

                raise LedgerExists(f"{settings.database_url} already holds a ledger")
        ledger_key = SigningKey.generate()
        admin_key = SigningKey.generate()
        write_key_file(settings.ledger_key_file, participant="ledger", signing_key=ledger_key)
        admin_file = settings.data_dir / f"{admin}.key"
        write_key_file(admin_file, participant=admin, signing_key=admin_key)
        sealer = Sealer(store, signing_key=ledger_key)
        sealer.genesis(
            origin=origin,
            admins=[{"id": admin, "name": admin_name, "roles": ["admin"], "keys": [{"public_key": admin_key.public_key.b64}]}],
            admin_quorum=quorum,
            nonce=_nonce(),
        )
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

    click.echo(f"ledger {origin} created in {obj.settings.database_url}")
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
        if set(doc) == {"payload", "signatures"}:
            env = add_signature(doc, kf.participant, kf.signing_key)
        else:
            payload = {"time": _now(), "nonce": _nonce(), **doc}
            payload.setdefault("author", kf.participant)
            env = sign_payload(payload, [(kf.participant, kf.signing_key)])
    except LedgerError as exc:
        _fail(exc)
    text = json.dumps(env, indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
    """A small JSON-over-HTTP call: returns (status, parsed body or text)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(raw)
    return status, raw.decode("utf-8", "replace")


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--url", required=True, help="Ledger base URL, e.g. http://127.0.0.1:8000")
@click.option("--async", "is_async", is_flag=True, help="Ask for 202 (queued) instead of waiting for the block.")
def submit(files: tuple[str, ...], url: str, is_async: bool) -> None:
    """Post signed envelopes; prints each receipt (or problem) as a JSON line."""
    failed = 0
    headers = {"Prefer": "respond-async"} if is_async else {}
    for f in files:
        try:
            env = _read_json_file(f)
        except (LedgerError, OSError) as exc:
            click.echo(json.dumps({"file": f, "error": str(exc)}))
            failed += 1
            continue
        try:
            status, body = http_json("POST", url.rstrip("/") + "/v1/entries", env, headers)
        except (urllib.error.URLError, OSError) as exc:
            click.echo(f"error: cannot reach {url}: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        click.echo(json.dumps({"file": f, "status": status, **(body if isinstance(body, dict) else {"body": body})}))
        if status >= 400:
            failed += 1
    sys.exit(EXIT_INVALID if failed else 0)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.pass_obj
def serve(obj: _Ctx, host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn (config: api/gunicorn.conf.py)."""
    from api import create_app

    # Fail here, with a clear message, rather than in every worker.
    try:
        create_app(obj.settings, background_sealing=False).extensions["filiera"].store.dispose()
    except LedgerError as exc:
        _fail(exc)
    conf = Path(__file__).with_name("gunicorn.conf.py")
    env = dict(os.environ)
    env["FILIERA_DATA_DIR"] = str(obj.settings.data_dir)
    env["FILIERA_DATABASE_URL"] = obj.settings.database_url
    env["FILIERA_LEDGER_KEY_FILE"] = str(obj.settings.ledger_key_file)
    args = [sys.executable, "-m", "gunicorn", "-c", str(conf), "--bind", f"{host}:{port}", "--workers", str(workers), "--chdir", str(Path(__file__).resolve().parents[1])]
    click.echo(f"serving {obj.settings.database_url} on http://{host}:{port} with {workers} workers")
    os.execve(sys.executable, args, env)


@cli.command()
@click.option("--url", help="Verify a server's ledger through its API instead of the local database.")
@click.option("--ledger-key", help="Trusted ledger public key (base64); default: the one genesis names.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(obj: _Ctx, url: str | None, ledger_key: str | None, as_json: bool) -> None:
    """Re-check every block, link, root, signature and authorisation; exit 1 on the first failure."""
    from ledger.errors import ChainBroken
    from ledger.keys import PublicKey
    from ledger.verify import verify_chain

    from .verify_sources import db_blocks, http_blocks

    try:
        trusted = PublicKey.from_b64(ledger_key, field="--ledger-key").raw if ledger_key else None
        if url:
            source, total, node_check = http_blocks(url, http_json)
        else:
            source, total, node_check = db_blocks(obj.settings)
    except LedgerError as exc:
        _fail(exc)
    try:
        with click.progressbar(length=total, label="verifying", file=sys.stderr, show_pos=True) as bar:
            last = [0]

            def progress(n: int) -> None:
                bar.update(n - last[0])
                last[0] = n

            report = verify_chain(source, ledger_key=trusted, node_check=node_check, progress=progress)
    except ChainBroken as exc:
        out = {"ok": False, "code": exc.code, "detail": exc.detail, **{k: v for k, v in exc.facts.items()}}
        click.echo(json.dumps(out) if as_json else f"FAILED: {exc.detail}")
        sys.exit(EXIT_INVALID)
    except LedgerError as exc:
        _fail(exc)
    result = {"ok": True, "origin": report.origin, "height": report.height, "tree_size": report.tree_size, "root": report.root, "blocks": report.blocks, "entries": report.entries}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"OK: {report.origin}: {report.blocks} blocks, {report.entries} entries, root {report.root}")


@cli.command()
@click.option("--origin", default="demo.filiera.example", show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing if the database already holds a ledger.")
@click.pass_obj
def demo(obj: _Ctx, origin: str, if_missing: bool) -> None:
    """Create a demo ledger: an olive-oil consortium's members and keys."""
    from .demo import build_demo

    settings = obj.settings
    try:
        made = build_demo(settings, origin=origin, if_missing=if_missing, echo=click.echo)
    except LedgerError as exc:
        _fail(exc)
    if not made:
        click.echo(f"a ledger already exists in {settings.database_url}; leaving it as it is")


def main() -> None:
    cli(prog_name="filiera")


