"""Structured logs: request ids, one line per request, JSON or text (``FILIERA_LOG_FORMAT``).

Every request gets an id: a sane ``X-Request-Id`` from the client (or the proxy) is kept,
anything else is replaced by a fresh one, and the response carries it back. The id is on
every log record written while the request runs, on the request's own line, and is the log
id a 500 problem document names (api/problems.py).

What a request line holds, and why no more: the time, level, id, method, the *route template*
(``/v1/entries/<entry_id>``, not the path: ids in paths are business data, and templates keep
the log greppable per endpoint), status, duration, and the member id of a verified signature.
Never bodies, query strings, signatures, keys or nonces; the client's address only with
``FILIERA_LOG_CLIENT_IPS=on`` (it may be personal data, GDPR Art. 4(1)).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from ledger.config import Settings

__all__ = ["JsonFormatter", "configure_logging", "register", "request_id"]

log = logging.getLogger("filiera.request")

# Long enough for a UUID or a trace id, short and plain enough that a hostile id can neither
# forge log lines nor bloat them.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

# Record attributes a request line sets; the JSON formatter copies them as fields.
_FIELDS = ("request_id", "method", "route", "status", "duration_ms", "member", "client_ip")

# Probes and scrapes arrive every few seconds: they are logged at DEBUG, not INFO.
_QUIET_ENDPOINTS = frozenset({"health.health", "health.live", "health.ready", "metrics.metrics"})

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def request_id() -> str | None:
    """The current request's id, or None outside a request."""
    if not has_request_context():
        return None
    rid: str | None = g.get("request_id")
    return rid


class _RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
    ``pid``, the request fields present on the record, and ``exc`` with a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which gunicorn worker
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "-":
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_logging(settings: Settings) -> None:
    """Set the level, and the format of Filiera's handler on the root logger.

    Like ``logging.basicConfig``, it adds a handler (to standard error) only if nobody has
    configured logging yet; a handler it added earlier is reconfigured. Where someone else
    owns the handlers (pytest, an embedding application) only the request id filter is added.
    """
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    # Alembic narrates every plugin it loads at INFO; only its warnings belong in our log.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Flask-Limiter logs each refusal at INFO with its key, which may be a client address;
    # refusals are counted in filiera_rate_limited_total and in the request lines instead.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    ours: list[logging.Handler] = [h for h in root.handlers if getattr(h, "_filiera", False)]
    if not ours and not root.handlers:
        stream = logging.StreamHandler(sys.stderr)
        stream._filiera = True  # type: ignore[attr-defined]
        root.addHandler(stream)
        ours = [stream]
    formatter: logging.Formatter = (
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    for handler in ours:
        handler.setFormatter(formatter)
    for handler in root.handlers:
        if not any(isinstance(f, _RequestIdFilter) for f in handler.filters):
            handler.addFilter(_RequestIdFilter())


def register(app: Flask, settings: Settings) -> None:
    """Request ids and request lines. Registered before every other hook, so that even a
    request refused by the rate limiter is timed and logged."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = g.get("request_id")
        if rid is None:  # a hook before ours failed; still give the response an id
            rid = g.request_id = uuid.uuid4().hex
        response.headers["X-Request-Id"] = rid
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        rule = request.url_rule.rule if request.url_rule is not None else None
        member = g.get("filiera_member")
        fields: dict[str, Any] = {
            "request_id": rid,
            "method": request.method,
            "route": rule,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "member": member.id if member is not None else None,
            "client_ip": request.remote_addr if settings.log_client_ips else None,
        }
        level = logging.DEBUG if request.endpoint in _QUIET_ENDPOINTS else logging.INFO
        log.log(
            level,
            "%s %s %d %sms",
            request.method,
            rule or "-",
            response.status_code,
            duration_ms,
            extra=fields,
        )
        return response
