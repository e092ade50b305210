"""Rate limits per member and per client address (Flask-Limiter over ``limits``).

A request signed by a member (RFC 9421, checked before the limit, api/auth.py) counts against
that member's limit, ``FILIERA_RATE_LIMIT_MEMBER``, wherever it comes from; any other request
counts against its client address, ``FILIERA_RATE_LIMIT_IP``. A request with a signature that
does not verify counts as unsigned (and is then refused by its route as usual). Health probes
and metric scrapes are never limited. One limit counts every route of the API together.

The limit is a fixed window that starts at a key's first hit, with exactly-counted hits, so a
limit of L per minute admits exactly L requests in that minute; the rest are answered 429
``rate_limited`` with ``Retry-After``. The counters must be shared by every worker or each
would allow L: they live in ``FILIERA_RATE_LIMIT_STORAGE`` (api/ratelimit_store.py, Redis, ...),
by default a SQLite file in the server's run directory. Without a shared store (the app
outside gunicorn) limits are off unless a storage is named, and the log says so.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.parse

from flask import Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import SCHEMES  # type: ignore[attr-defined]  # the registry of storage schemes

from sqlalchemy.exc import SQLAlchemyError

from ledger.config import Settings, redacted_url
from ledger.errors import ConfigurationError, LedgerError, RateLimited

from . import ratelimit_store  # noqa: F401 - registers the sql+ storage schemes with limits
from .auth import current_member
from .metrics import RATE_LIMITED
from .problems import problem

__all__ = ["check", "register", "limit_value", "storage_uri"]

log = logging.getLogger("filiera.ratelimits")

# Endpoints a load balancer or Prometheus calls every few seconds from one address.
_EXEMPT = frozenset({"health.health", "health.live", "health.ready", "metrics.metrics"})


def limit_value(name: str, value: str) -> str:
    """A checked limit string (``"600/minute"``, ``"10 per second"``), or ``""`` for off.
    Raises ConfigurationError naming the setting."""
    if value.strip().lower() in ("", "off", "none", "0"):
        return ""
    try:
        items = parse_many(value)
    except (ValueError, LimitsConfigurationError) as exc:
        raise ConfigurationError(
            f"{name} must be a rate like 600/minute or off, got {value!r}"
        ) from exc
    if len(items) != 1:
        raise ConfigurationError(f"{name} takes one rate, got {value!r}")
    return value.strip()


def check(settings: Settings) -> None:
    """Raises ConfigurationError for a malformed limit or a storage ``limits`` does not know,
    before anything is opened."""
    limit_value("FILIERA_RATE_LIMIT_MEMBER", settings.rate_limit_member)
    limit_value("FILIERA_RATE_LIMIT_IP", settings.rate_limit_ip)
    uri = settings.rate_limit_storage
    scheme = urllib.parse.urlparse(uri).scheme
    if uri and (scheme not in SCHEMES or scheme.startswith("async+")):
        raise ConfigurationError(
            f"FILIERA_RATE_LIMIT_STORAGE: unknown storage {uri.split(':', 1)[0]!r}; use "
            "sql+sqlite:///..., sql+postgresql://..., redis://... or memory://"
        )


def storage_uri(settings: Settings) -> str | None:
    """Where the counters live: the setting, else the run directory's SQLite file, else None
    (no store that every worker sees)."""
    if settings.rate_limit_storage:
        return settings.rate_limit_storage
    if settings.run_dir is not None:
        return f"sql+sqlite:///{(settings.run_dir / 'rate-limits.sqlite').resolve()}"
    return None


def _scope() -> tuple[str, str]:
    """("member", id) for a verified member's request, else ("ip", client address)."""
    cached: tuple[str, str] | None = g.get("rate_scope")
    if cached is not None:
        return cached
    scope = ("ip", request.remote_addr or "unknown")
    if "Signature" in request.headers or "Signature-Input" in request.headers:
        try:
            scope = ("member", current_member().id)
        except LedgerError:
            # Refused by the route itself if it needs a member; for the limit it is anonymous.
            pass
    g.rate_scope = scope
    return scope


def register(app: Flask, settings: Settings) -> Limiter | None:
    """Install the limits; returns the Limiter, or None when limits are off.

    Raises ConfigurationError for a malformed limit or an unknown storage.
    """
    member_limit = limit_value("FILIERA_RATE_LIMIT_MEMBER", settings.rate_limit_member)
    ip_limit = limit_value("FILIERA_RATE_LIMIT_IP", settings.rate_limit_ip)
    if not member_limit and not ip_limit:
        return None
    uri = storage_uri(settings)
    if uri is None:
        log.warning(
            "rate limits are off: no storage every worker shares (run under `filiera serve` "
            "or set FILIERA_RATE_LIMIT_STORAGE)"
        )
        return None

    def key() -> str:
        kind, who = _scope()
        return f"{kind}:{who}"

    def limit() -> str:
        return member_limit if _scope()[0] == "member" else ip_limit

    try:
        limiter = Limiter(
            key,
            app=app,
            application_limits=[limit],
            application_limits_exempt_when=lambda: request.endpoint in _EXEMPT,
            strategy="fixed-window",
            storage_uri=uri,
            key_prefix="filiera",
            headers_enabled=False,
            # A store that fails lets requests through (and logs): limits protect the
            # service, they must not take it down.
            swallow_errors=True,
        )
    except (LimitsConfigurationError, ValueError, SQLAlchemyError) as exc:
        raise ConfigurationError(f"rate-limit storage {redacted_url(uri)}: {exc}") from exc

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        reset_at = current.window.reset_time if current is not None else time.time() + 1
        retry_after = max(1, math.ceil(reset_at - time.time()))
        kind, _ = _scope()
        RATE_LIMITED.labels(kind).inc()
        err = RateLimited(
            f"too many requests for this {'member' if kind == 'member' else 'address'} "
            f"({exc.limit.limit}); retry after {retry_after} s",
            limit=str(exc.limit.limit),
            scope=kind,
        )
        return problem(err, headers={"Retry-After": str(retry_after)})

    return limiter
