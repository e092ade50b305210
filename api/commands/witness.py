"""``filiera witness``: run a c2sp.org/tlog-witness witness, or have this ledger's newest
checkpoint witnessed now.

* ``witness init``  writes a witness key (Go signed-note private key format, mode 0600) and
  prints its cosigner vkey (type 0x04) for ledgers' policy files;
* ``witness serve`` serves ``POST /add-checkpoint`` for the logs named by ``--log`` (gunicorn,
  threaded workers; records in ``--state``);
* ``witness cosign-now`` submits the ledger's newest checkpoint to the witnesses of its policy
  (FILIERA_WITNESS_POLICY or ``--policy``) once, as the server's background loop does.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ledger.cosignature import Cosigner
from ledger.errors import ConfigurationError, LedgerError, MalformedNote
from ledger.keys import SigningKey, read_secret_file, write_secret_file
from ledger.notes import NoteVerifier

from ..cli import EXIT_INVALID, EXIT_USAGE, Ctx, cli, fail

__all__ = ["witness"]

# How long `cosign-now` waits for the server's own witnessing round to finish.
_TURN_WAIT_S = 30.0


@cli.group()
def witness() -> None:
    """Witness cosigning (C2SP tlog-witness): run a witness, or get this ledger witnessed."""


@witness.command("init")
@click.option("--name", required=True, help="The witness's name, e.g. witness.example.org/w1 (appears in its cosignature lines).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Key file to write (mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(name: str, out: Path, force: bool) -> None:
    """Create a witness key; prints its verifier key (vkey) for ledgers' policy files."""
    try:
        cosigner = Cosigner(name=name, signing_key=SigningKey.generate())
        write_secret_file(out, cosigner.skey().encode("utf-8"), overwrite=force)
    except MalformedNote as exc:
        fail(ConfigurationError(f"--name {name!r} is not a valid key name: {exc.detail}"))
    except LedgerError as exc:
        fail(exc)
    click.echo(cosigner.verifier.vkey)


def load_cosigner(path: Path) -> Cosigner:
    """A witness key file written by ``witness init``. Raises UnsafeKeyFile or InvalidKeyFile."""
    return Cosigner.parse_skey(read_secret_file(path), source=str(path))


def _logs(vkeys: tuple[str, ...]) -> dict[str, list[NoteVerifier]]:
    logs: dict[str, list[NoteVerifier]] = {}
    for vkey in vkeys:
        try:
            verifier = NoteVerifier.parse(vkey)
        except MalformedNote as exc:
            raise ConfigurationError(f"--log {vkey!r} is not an Ed25519 note vkey: {exc.detail}") from exc
        # A log's key name is its origin (tlog-checkpoint; PROTOCOL §5 for Filiera ledgers).
        logs.setdefault(verifier.name, []).append(verifier)
    return logs


@witness.command("serve")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The witness key file (from `filiera witness init`).")
@click.option("--log", "log_vkeys", required=True, multiple=True, help="A log's verifier key (GET /v1/ledger's verifier_key); repeat for more logs.")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the latest checkpoint of each log.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
def serve(key_file: Path, log_vkeys: tuple[str, ...], state_dir: Path, host: str, port: int, workers: int, threads: int) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) for the given logs."""
    from api.witness_app import create_witness_app

    try:
        cosigner = load_cosigner(key_file)
        logs = _logs(log_vkeys)
        # Built once here so that a bad state directory fails now, not in every worker.
        create_witness_app(cosigner=cosigner, logs=logs, state_dir=state_dir)
    except LedgerError as exc:
        fail(exc)
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": 60,
                "keepalive": 5,
                "errorlog": "-",
                "limit_request_line": 8190,
                "limit_request_fields": 100,
                # Several witnesses (and ledgers) may run on one host: no shared control socket.
                "control_socket_disable": True,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_witness_app(cosigner=cosigner, logs=logs, state_dir=state_dir)

    click.echo(f"witness {cosigner.verifier.vkey} on http://{host}:{port} for {len(logs)} log(s)")
    sys.stdout.flush()
    _Server().run()


@witness.command("cosign-now")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), help="Witness policy file (default FILIERA_WITNESS_POLICY).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per witness, then a summary object.")
@click.pass_obj
def cosign_now(obj: Ctx, policy: Path | None, as_json: bool) -> None:
    """Submit this ledger's newest checkpoint to its witnesses now and keep their cosignatures.

    Exit status: 0 the quorum is met for it, 1 a witness holds another history of this
    ledger (a split view), 2 the quorum is not met (witnesses unreachable or refusing).
    """
    from dataclasses import replace

    from api import load_ledger_key, load_witness_policy
    from ledger.storage.store import Store
    from ledger.witnessing import Witnessing

    settings = replace(obj.settings, witness_policy=policy) if policy else obj.settings
    try:
        if settings.witness_policy is None:
            raise ConfigurationError("no witness policy: set FILIERA_WITNESS_POLICY or pass --policy")
        store = Store.open(settings)
    except LedgerError as exc:
        fail(exc)
    try:
        with store.read() as conn:
            genesis = store.policy(conn)
        key = load_ledger_key(settings)
        witness_policy = load_witness_policy(settings, genesis.origin if genesis else None, key.public_key.raw)
        assert witness_policy is not None
        if not witness_policy.witnesses:
            raise ConfigurationError(f"the witness policy {settings.witness_policy} names no witnesses")
        witnessing = Witnessing(store, witness_policy, timeout=settings.witness_timeout)
        deadline = time.monotonic() + _TURN_WAIT_S
        while not (results := witnessing.round(force=True)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the server's loop holds the turn; it ends within its timeout
    except LedgerError as exc:
        fail(exc)
    finally:
        store.dispose()
    if not results:
        fail(ConfigurationError("another process kept the witnessing turn; try again"))
    met = witness_policy.satisfied({r.witness for r in results if r.status in ("cosigned", "current")})
    conflict = any(r.status == "conflict" for r in results)
    for r in results:
        if as_json:
            click.echo(json.dumps({"witness": r.witness, "status": r.status, "tree_size": r.tree_size, "detail": r.detail}))
        else:
            click.echo(f"{r.witness}: {r.status} at size {r.tree_size}" + (f" ({r.detail})" if r.detail else ""))
    size = results[0].tree_size
    if as_json:
        click.echo(json.dumps({"ok": met and not conflict, "tree_size": size, "quorum_met": met, "conflict": conflict}))
    else:
        click.echo(f"quorum {'met' if met else 'NOT met'} for the checkpoint of size {size}", err=not met)
    if conflict:
        sys.exit(EXIT_INVALID)
    if not met:
        sys.exit(EXIT_USAGE)
