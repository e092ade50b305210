"""The error contract and the API description (STYLE.md "one test each pins"; TESTPLAN T6).

Pins: the problem+json shape; every error code unique, mapped to a status and documented in
docs/errors.md with that status; /openapi.json is valid OpenAPI 3.1 and documents every route
Flask serves, with its methods.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from api import create_app
from api.problems import STATUS, problem_body, status_for
from ledger import errors as e

from ..conftest import LedgerEnv
from ..factories import ORIGIN

ERRORS_MD = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
# Codes the API can send that are not LedgerError leaves.
OUTSIDE_TREE = {"internal_error": 500}


def _assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    body: dict[str, Any] = resp.json
    assert PROBLEM_FIELDS <= set(body)
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:filiera:problem:{code}"
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail", "code"))
    return body


# --- problem+json shape -----------------------------------------------------------------


def test_problem_shape_for_ledger_and_werkzeug_errors(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    body = _assert_problem(client.get("/v1/entries/" + "ab" * 32), 404, "entry_not_found")
    assert body["title"] == e.EntryNotFound.title
    assert body["entry"] == "ab" * 32  # facts become extension members
    _assert_problem(client.get("/nowhere"), 404, "route_not_found")
    resp = client.delete("/v1/ledger")
    _assert_problem(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]
    _assert_problem(client.post("/v1/entries", data=b"{", content_type="application/json"), 400, "malformed_json")
    _assert_problem(
        client.post("/v1/entries", data=b"x" * (2 * 1024 * 1024), content_type="application/json"),
        413,
        "payload_too_large",
    )


def test_problem_body_is_built_from_the_error() -> None:
    body = problem_body(e.QuorumNotMet("needs 2 admins", required=2, got=1, opaque=object()))
    assert body == {
        "type": "urn:filiera:problem:quorum_not_met",
        "title": "Admin quorum not met",
        "status": 403,
        "detail": "needs 2 admins",
        "code": "quorum_not_met",
        "required": 2,
        "got": 1,
    }
    # A fact may never overwrite a member of the problem document itself.
    assert problem_body(e.InvalidField("bad", status=200, code="x"))["status"] == 400


def test_unexpected_failure_is_a_bare_500(ledger_env: LedgerEnv) -> None:
    app: Flask = create_app(ledger_env.settings, background_sealing=False)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(f"secret at {ledger_env.settings.data_dir}/x.py line 3")

    try:
        resp = app.test_client().get("/boom")
    finally:
        app.extensions["filiera"].store.dispose()
    body = _assert_problem(resp, 500, "internal_error")
    assert re.fullmatch(r"internal error; log id [0-9a-f]{32}", body["detail"])
    # The log id is the request's id, which the response also carries (api/requestlog.py).
    assert body["detail"].endswith(resp.headers["X-Request-Id"])
    assert "secret" not in resp.get_data(as_text=True)
    assert set(body) == PROBLEM_FIELDS


# --- the error tree and its documentation -----------------------------------------------


def _documented() -> dict[str, int]:
    """code -> HTTP status, from the tables of docs/errors.md."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", ERRORS_MD.read_text(encoding="utf-8"), re.MULTILINE)
    table: dict[str, int] = {}
    for code, status in rows:
        assert code not in table, f"{code} documented twice"
        table[code] = int(status)
    return table


def test_every_error_code_is_unique_and_mapped_to_a_status() -> None:
    classes = e.all_error_classes()
    assert len(classes) >= 60
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    for cls in classes:
        assert re.fullmatch(r"[a-z][a-z_]+", cls.code), cls
        assert cls.title, cls
        status = status_for(cls("detail"))
        assert status in set(STATUS.values()), cls
        assert e.error_for_code(cls.code, "detail").__class__ is cls


def test_request_errors_are_4xx_and_only_service_errors_5xx() -> None:
    for cls in e.all_error_classes():
        status = status_for(cls("detail"))
        if issubclass(cls, e.Unavailable):
            assert status == 503, cls
        elif issubclass(cls, e.ConfigurationError) or cls is e.LedgerError:
            assert status == 500, cls
        else:
            assert 400 <= status < 500, cls


def test_every_error_code_is_documented_with_its_status() -> None:
    documented = _documented()
    expected = {cls.code: status_for(cls("detail")) for cls in e.all_error_classes()} | OUTSIDE_TREE
    assert set(documented) - set(expected) == set(), "docs/errors.md lists codes the tree lacks"
    assert set(expected) - set(documented) == set(), "codes missing from docs/errors.md"
    assert documented == expected


def test_protocol_example_codes_exist() -> None:
    """PROTOCOL §6 names these codes; those of v1's governance entries must exist."""
    codes = {cls.code for cls in e.all_error_classes()}
    for code in ("invalid_signature", "unknown_key", "key_revoked", "quorum_not_met", "malformed_json", "payload_too_large"):
        assert code in codes


# --- OpenAPI ----------------------------------------------------------------------------


def _spec(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    spec: dict[str, Any] = resp.json
    return spec


def test_openapi_document_is_valid_3_1(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    spec = _spec(client)
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert "Problem" in spec["components"]["schemas"]


def test_openapi_validator_can_fail() -> None:
    with pytest.raises(Exception):  # noqa: B017 - any validation error will do
        validate({"openapi": "3.1.0", "info": {"title": "x"}, "paths": {"/a": {"get": {"responses": 5}}}})


def _flask_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule)


def _served(app: Flask) -> dict[str, set[str]]:
    served: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = {m.lower() for m in (rule.methods or set())} - {"head", "options"}
        served.setdefault(_flask_path(rule.rule), set()).update(methods)
    return served


def _undocumented(app: Flask, spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, methods in _served(app).items()
        for method in methods
        if method not in spec["paths"].get(path, {})
    }


def test_every_route_is_documented_with_its_methods(app: Flask, client: FlaskClient, ledger_env: LedgerEnv) -> None:
    spec = _spec(client)
    paths = spec["paths"]
    served = _served(app)
    assert _undocumented(app, spec) == set()
    documented = {(p, m) for p, ops in paths.items() for m in ops if m in {"get", "post", "put", "patch", "delete"}}
    assert documented == {(p, m) for p, ms in served.items() for m in ms}
    for required in ("/v1/health", "/v1/ledger", "/v1/checkpoint", "/v1/entries", "/v1/entries/batch",
                     "/v1/entries/{entry_id}", "/v1/blocks", "/v1/blocks/{height}", "/v1/proofs/inclusion",
                     "/v1/proofs/consistency", "/v1/participants", "/v1/participants/{participant_id}",
                     "/v1/lots/{lot}/provenance", "/v1/lots/{lot}/certificate", "/openapi.json"):
        assert required in paths, required


def test_openapi_declares_problem_responses(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    spec = _spec(client)
    submit = spec["paths"]["/v1/entries"]["post"]
    assert {"200", "201", "202", "400", "403", "404", "409", "413", "415", "422"} <= set(submit["responses"])
    problem = submit["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert ORIGIN not in str(spec)  # the description is of the API, not of one ledger's data


def test_an_undocumented_route_is_noticed(ledger_env: LedgerEnv) -> None:
    app = create_app(ledger_env.settings, background_sealing=False)

    @app.post("/v1/backdoor")
    def backdoor() -> str:
        return "ok"

    try:
        spec = _spec(app.test_client())
    finally:
        app.extensions["filiera"].store.dispose()
    assert _undocumented(app, spec) == {("/v1/backdoor", "post")}


def test_errors_doc_example_is_a_real_problem() -> None:
    text = ERRORS_MD.read_text(encoding="utf-8")
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))  # type: ignore[union-attr]
    cls = type(e.error_for_code(example["code"], "x"))
    assert cls is not e.LedgerError
    rebuilt = problem_body(cls(example["detail"], required=example["required"], got=example["got"]))
    assert rebuilt == example
