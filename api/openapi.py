"""The OpenAPI 3.1 description, generated from the routes and their marshmallow schemas.

Each view declares its operation with :func:`operation`; :func:`build_spec` walks Flask's URL
map, so a route without a declaration is noticed (a test compares the two).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema

from .schemas.common import ProblemSchema

__all__ = ["operation", "build_spec", "TEXT", "NDJSON", "HTML", "SVG", "PNG"]

F = TypeVar("F", bound=Callable[..., Any])

TEXT = "text/plain"
NDJSON = "application/x-ndjson"
HTML = "text/html"
SVG = "image/svg+xml"
PNG = "image/png"

_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Malformed request (see `code`)",
    401: "Authentication failed",
    403: "Not allowed",
    404: "Not found",
    409: "Conflicts with the ledger",
    413: "Body too large",
    415: "Unsupported content type or encoding",
    422: "Refused by a ledger rule or signature check",
    429: "Rate limit exceeded (see Retry-After)",
    503: "Database unavailable, ledger not initialised, or stored ledger damaged (storage_damaged)",
}


def operation(
    *,
    summary: str,
    tag: str,
    responses: Mapping[int, type[Schema] | list[type[Schema] | str] | str | tuple[str, Mapping[str, Any]] | None],
    query: type[Schema] | None = None,
    body: type[Schema] | None = None,
    path: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    errors: tuple[int, ...] = (400,),
    description: str = "",
    member: bool = False,
) -> Callable[[F], F]:
    """Declare a view's OpenAPI operation. ``responses`` maps statuses to a schema, a media
    type (``TEXT``, ``NDJSON``, ``HTML``, ``SVG``, ``PNG``), a (media type, JSON Schema) pair for
    JSON bodies of another media type, a list of schemas (one of them, e.g. chosen by the query),
    or None (no body); ``errors`` lists problem statuses (one that ``responses`` also declares,
    e.g. an HTML 404, is documented with both bodies)."""

    def mark(view: F) -> F:
        view._openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "tag": tag,
            "responses": dict(responses),
            "query": query,
            "body": body,
            "path": dict(path or {}),
            "headers": dict(headers or {}),
            "errors": (*errors, 401) if member else errors,
            "member": member,
            "description": description or (view.__doc__ or "").strip(),
        }
        return view

    return mark


def _path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule)


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="Filiera ledger API",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Supply-chain provenance ledger: Ed25519-signed entries in an "
            "append-only, hash-chained RFC 9162 Merkle log. Errors are RFC 9457 problem "
            "documents with a stable `code`.",
        },
    )
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.security_scheme(
        "memberSignature",
        {
            "type": "apiKey",
            "in": "header",
            "name": "Signature",
            "description": "RFC 9421 HTTP Message Signature by a member's Ed25519 key (label "
            "`filiera`, keyid = key id, covering @method and @target-uri, with created and "
            "nonce), sent with its Signature-Input header.",
        },
    )
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        meta = getattr(view, "_openapi", None)
        if meta is None:
            continue
        ops: dict[str, Any] = {}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops[method.lower()] = _operation(rule.endpoint, method, meta, rule.arguments)
        spec.path(path=_path(rule.rule), operations=ops)
    return spec.to_dict()


def _operation(endpoint: str, method: str, meta: Mapping[str, Any], args: set[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, kind in meta["responses"].items():
        resp: dict[str, Any] = {"description": _REASONS.get(status, "OK")}
        if isinstance(kind, str):
            resp["content"] = {kind: {"schema": {"type": "string"}}}
        elif isinstance(kind, tuple):
            media, schema = kind
            resp["content"] = {media: {"schema": dict(schema)}}
        elif isinstance(kind, list):
            # One of several bodies or media types, chosen by the query (e.g. ?format=vc,
            # ?format=parquet): media types as text, schemas as JSON (one of them).
            content = {k: {"schema": {"type": "string"}} for k in kind if isinstance(k, str)}
            schemas = [k for k in kind if not isinstance(k, str)]
            if len(schemas) == 1:
                content["application/json"] = {"schema": schemas[0]}
            elif schemas:
                content["application/json"] = {"schema": {"oneOf": schemas}}
            resp["content"] = content
        elif kind is not None:
            resp["content"] = {"application/json": {"schema": kind}}
        if status in (200, 201, 202) and meta["headers"]:
            resp["headers"] = {
                h: {"description": d, "schema": {"type": "string"}} for h, d in meta["headers"].items()
            }
        responses[str(status)] = resp
    # Every route but health and metrics counts against a rate limit (api/ratelimits.py).
    limited = () if endpoint.startswith(("health.", "metrics.")) else (429,)
    for status in (*meta["errors"], *limited, 503):
        existing = responses.get(str(status))
        if existing is not None and status in meta["errors"]:
            # A status answered two ways (an HTML page for a lot the route looks up, a problem
            # when the router finds no route at all): both bodies are documented.
            existing.setdefault("content", {})["application/problem+json"] = {"schema": "Problem"}
            continue
        responses.setdefault(
            str(status),
            {
                "description": _REASONS.get(status, "Error"),
                "content": {"application/problem+json": {"schema": "Problem"}},
            },
        )
    op: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "summary": meta["summary"],
        "tags": [meta["tag"]],
        "responses": responses,
    }
    if meta["description"]:
        op["description"] = meta["description"]
    if meta["member"]:
        op["security"] = [{"memberSignature": []}]
    params: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": meta["path"].get(name, "string")}}
        for name in sorted(args)
    ]
    if meta["query"] is not None:
        params.append({"in": "query", "schema": meta["query"]})
    if params:
        op["parameters"] = params
    if meta["body"] is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": meta["body"]}}}
    return op
