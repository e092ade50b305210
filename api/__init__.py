"""Filiera's HTTP API: an application factory over the ``ledger`` library."""

from __future__ import annotations

from flask import Flask

from ledger.clock import Clock
from ledger.config import Settings
from ledger.errors import ConfigurationError
from ledger.keys import SigningKey, read_key_file, signing_key_from_env
from ledger.sealing import Sealer
from ledger.storage.store import Store

from . import ops, problems
from .services import Services

__all__ = ["create_app", "load_ledger_key"]


def load_ledger_key(settings: Settings) -> SigningKey:
    """The ledger's signing key: ``FILIERA_LEDGER_KEY`` (JSON) or the key file (mode 0600).

    Raises ConfigurationError (UnsafeKeyFile, InvalidKeyFile) with what to fix.
    """
    if settings.ledger_key_json:
        return signing_key_from_env(settings.ledger_key_json)
    if not settings.ledger_key_file.exists():
        raise ConfigurationError(
            f"no ledger key at {settings.ledger_key_file}; run `filiera init` or set "
            "FILIERA_LEDGER_KEY_FILE"
        )
    kf = read_key_file(settings.ledger_key_file)
    if kf.participant != "ledger":
        raise ConfigurationError(
            f"{settings.ledger_key_file} is {kf.participant}'s key, not the ledger's"
        )
    return kf.signing_key


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    background_sealing: bool = True,
) -> Flask:
    """Build the app for one ledger database. Refuses to start (ConfigurationError,
    UnsafeConfiguration, NotInitialised) rather than serve a ledger it cannot keep safe."""
    settings = settings or Settings.from_env()
    ops.prepare(settings)
    store = Store.open(settings)
    key = load_ledger_key(settings)
    with store.read() as conn:
        policy = store.policy(conn)
    if policy is not None and policy.ledger_key != key.public_key.raw:
        raise ConfigurationError(
            "the configured ledger key is not the key named in this ledger's genesis block"
        )
    sealer = Sealer(store, signing_key=key, clock=clock, seal_timeout=settings.seal_timeout)
    if background_sealing:
        sealer.start_background(settings.seal_interval)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["filiera"] = Services(settings, store, sealer, key.public_key)
    problems.register(app)
    # Request ids and logs, metrics, rate limits, health, security headers: api/ops.py.
    ops.register(app, settings)

    from .routes import blocks, entries, epcis, export, ledger, lots, meta, participants, proofs

    for module in (ledger, entries, blocks, proofs, participants, lots, epcis, export, meta):
        app.register_blueprint(module.bp)
    return app
