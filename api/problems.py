"""Errors as RFC 9457 ``application/problem+json``, rendered in one place.

Categories of the LedgerError tree map to HTTP statuses in :data:`STATUS`; every leaf keeps
its stable ``code``. Werkzeug's own 404, 405, 413 and 400 render the same way. An unexpected
exception becomes a 500 that says only "internal error" and a log id: no traceback, no path.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, g, json
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from ledger import errors as e

__all__ = ["STATUS", "status_for", "problem", "problem_body", "register"]

log = logging.getLogger("filiera.api")

STATUS: dict[type[e.LedgerError], int] = {
    e.MalformedInput: 400,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.MethodNotAllowed: 405,
    e.Conflict: 409,
    e.TooLarge: 413,
    e.UnsupportedMedia: 415,
    e.Throttled: 429,
    e.RuleViolation: 422,
    e.SignatureRejected: 422,
    e.IntegrityFailure: 422,
    e.Unavailable: 503,
    e.ConfigurationError: 500,
    e.LedgerError: 500,
}

_WERKZEUG: dict[int, type[e.LedgerError]] = {
    404: e.RouteNotFound,
    405: e.MethodNotAllowed,
    413: e.PayloadTooLarge,
    400: e.MalformedJson,
    415: e.UnsupportedMediaType,
}


def status_for(exc: e.LedgerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None))) or (
        isinstance(value, list) and all(isinstance(v, (str, int)) for v in value)
    )


def problem_body(exc: e.LedgerError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:filiera:problem:{exc.code}",
        "title": exc.title,
        "status": status_for(exc),
        "detail": exc.detail,
        "code": exc.code,
    }
    for k, v in exc.facts.items():
        if k not in body and _jsonable(v):
            body[k] = v
    return body


def problem(exc: e.LedgerError, headers: dict[str, str] | None = None) -> Response:
    body = problem_body(exc)
    resp = Response(
        json.dumps(body), status=body["status"], mimetype="application/problem+json"
    )
    if resp.status_code == 401:
        # RFC 9110 §11.6.1 asks 401 to name a scheme; RFC 9421 §5.1 lists what to sign.
        resp.headers["WWW-Authenticate"] = 'Signature realm="filiera"'
        resp.headers["Accept-Signature"] = (
            'filiera=("@method" "@target-uri");alg="ed25519";keyid;created;nonce'
        )
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(e.LedgerError)
    def _ledger_error(exc: e.LedgerError) -> Response:
        return problem(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        cls = _WERKZEUG.get(code)
        if cls is None:
            if code < 500:
                err: e.LedgerError = e.MalformedInput(exc.description or "bad request")
                resp = problem(err)
                resp.status_code = code
                return resp
            cls = e.LedgerError
        detail = {
            404: "no such resource; see /openapi.json for the API",
            405: "method not allowed on this resource; see /openapi.json",
            413: "request body too large",
        }.get(code, exc.description or "bad request")
        resp = problem(cls(detail))
        if code == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError) -> Response:
        # A dropped connection (a database restart) or a busy database: nothing was answered
        # from it, and the pool has been reset, so the same request can simply be retried.
        log.warning("database unavailable: %s", exc.orig)
        return problem(
            e.Unavailable("the database is unavailable or busy; retry shortly"),
            headers={"Retry-After": "1"},
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The log id is the request's id (api/requestlog.py): the operator finds the
        # traceback, and the request's own log line, by the id the caller reports.
        log_id = g.get("request_id") or uuid.uuid4().hex
        log.exception("internal error %s", log_id)
        body = {
            "type": "urn:filiera:problem:internal_error",
            "title": "Internal error",
            "status": 500,
            "detail": f"internal error; log id {log_id}",
            "code": "internal_error",
        }
        return Response(json.dumps(body), status=500, mimetype="application/problem+json")
