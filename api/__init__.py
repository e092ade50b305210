"""Filiera's HTTP API: an application factory over the ``ledger`` library."""

from __future__ import annotations

from flask import Flask

from ledger.clock import Clock
from ledger.config import Settings
from ledger.errors import ConfigurationError
from ledger.keys import SigningKey, read_key_file, signing_key_from_env
from ledger.sealing import Sealer
from ledger.storage.store import Store
from ledger.witness_policy import WitnessPolicy
from ledger.witnessing import Witnessing

from . import problems
from .services import Services

__all__ = ["create_app", "load_ledger_key", "load_witness_policy"]


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


def load_witness_policy(settings: Settings, origin: str | None, ledger_key: bytes) -> WitnessPolicy | None:
    """The policy named by FILIERA_WITNESS_POLICY, if any. When it lists logs, this ledger
    must be one of them. Raises InvalidWitnessPolicy or ConfigurationError."""
    if settings.witness_policy is None:
        return None
    try:
        data = settings.witness_policy.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the witness policy {settings.witness_policy}: {exc.strerror}"
        ) from exc
    policy = WitnessPolicy.parse(data, source=str(settings.witness_policy))
    if policy.logs and origin is not None:
        from ledger.notes import verifier_for

        ours = verifier_for(origin, ledger_key)
        if ours not in policy.logs:
            raise ConfigurationError(
                f"the witness policy {settings.witness_policy} lists logs, but not this ledger "
                f"({ours.vkey}); add a `log` line for it or remove the `log` lines"
            )
    return policy


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    background_sealing: bool = True,
    background_witnessing: bool | None = None,
) -> Flask:
    """Build the app for one ledger database. Refuses to start (ConfigurationError,
    UnsafeConfiguration, NotInitialised) rather than serve a ledger it cannot keep safe.

    With a witness policy, a witnessing thread runs too (``background_witnessing``, default:
    as ``background_sealing``). A read-only node (``settings.read_only``) runs neither and
    refuses every write (api/readonly.py)."""
    # Imported here, not at the top: gunicorn's master imports this package (its logger class)
    # before it sets PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads when imported.
    from . import ops

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
    try:
        witness_policy = load_witness_policy(settings, policy.origin if policy else None, key.public_key.raw)
    except BaseException:
        store.dispose()
        raise
    sealer = Sealer(store, signing_key=key, clock=clock, seal_timeout=settings.seal_timeout)
    # A read-only node (a replica's database) seals nothing and leaves witnessing to the
    # nodes that write: its sealer only answers receipts and lends its clock.
    if background_sealing and not settings.read_only:
        sealer.start_background(settings.seal_interval)
    witnessing = None
    if witness_policy is not None and not settings.read_only:
        witnessing = Witnessing(
            store, witness_policy, timeout=settings.witness_timeout, interval=settings.witness_interval,
            refresh=settings.witness_refresh,
        )
        if background_sealing if background_witnessing is None else background_witnessing:
            witnessing.start_background()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    svc = Services(settings, store, sealer, key.public_key, witness_policy, witnessing)
    if settings.read_only:
        from .readonly import LocalNonces

        svc.remember_nonce = LocalNonces(settings.run_dir).remember
    app.extensions["filiera"] = svc
    problems.register(app)
    # Request ids and logs, metrics, rate limits, health, security headers: api/ops.py.
    ops.register(app, settings)
    if settings.read_only:
        from . import readonly

        readonly.register(app, settings)

    from .routes import (
        analytics, blocks, dashboard, engagement, entries, epcis, export, ledger, lots, meta, participants, proofs,
        public, webhooks,
    )

    for module in (
        ledger, entries, blocks, proofs, participants, lots, epcis, export, analytics, engagement, public, webhooks,
        dashboard, meta,
    ):
        app.register_blueprint(module.bp)
    return app
