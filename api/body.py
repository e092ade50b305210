"""Reading request bodies strictly: content type, encoding, size, then I-JSON (RFC 7493)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ledger import jcs
from ledger.errors import MalformedJson, PayloadTooLarge, UnsupportedEncoding, UnsupportedMediaType

__all__ = ["read_json"]


def read_json() -> Any:
    """The request's JSON body, parsed strictly. Raises a MalformedInput, TooLarge or
    UnsupportedMedia leaf; never lets Flask's lenient parser (duplicate keys, NaN) decide."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not accepted; send the JSON uncompressed",
            encoding=encoding,
        )
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send Content-Type: application/json (got {mimetype or 'none'!r})",
            content_type=mimetype or "",
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset != "utf-8":
        raise UnsupportedMediaType("JSON must be UTF-8 (RFC 8259 §8.1)", charset=charset)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"request body exceeds {limit} bytes", limit=limit
        ) from exc
    if len(data) > limit or (
        # Werkzeug stops a body sent without Content-Length (chunked) at the limit without
        # saying whether more followed; the server-terminated stream tells, one byte on.
        len(data) == limit
        and request.content_length is None
        and request.environ["wsgi.input"].read(1)
    ):
        raise PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
    if not data:
        raise MalformedJson("the request body is empty; send one JSON document")
    return jcs.loads(data)
