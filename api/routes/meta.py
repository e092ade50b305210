"""The API's own description."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from ..openapi import build_spec, operation

bp = Blueprint("meta", __name__)


@bp.get("/openapi.json")
@operation(summary="This API's OpenAPI 3.1 description", tag="meta", responses={200: None}, errors=())
def openapi() -> Response:
    spec = current_app.extensions.get("filiera_openapi")
    if spec is None:
        spec = current_app.extensions["filiera_openapi"] = build_spec(current_app)
    return jsonify(spec)
