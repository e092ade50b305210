"""A Merkle node damaged behind the service's back (NULL or not binary, as a flipped byte in a
SQLite file or an edit by someone with database access leaves it), on SQLite and PostgreSQL:
a proof that needs it is a deliberate 503 ``storage_damaged`` telling the caller nothing of the
server's insides, logged once as an error naming the node; proofs that do not need it still
work."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from ledger.merkle import consistency_plan, inclusion_plan, plan_nodes

from ..conftest import LedgerEnv
from ..factories import Member, post_entry, register
from ..tampering import allow_null, tampered

# Tree of 5 entries (genesis and four registrations): the node (level 1, index 1) hashes
# entries 2 and 3. Entry 4's proof and the proofs inside the first two entries do not use it.
DAMAGED = (1, 1)
NEEDS_IT = {
    "inclusion": "/v1/proofs/inclusion?index=0",
    "consistency": "/v1/proofs/consistency?from=2&to=5",
    "tlog": "/v1/proofs/tlog?index=1",
}
DOES_NOT = ("/v1/proofs/inclusion?index=4", "/v1/proofs/consistency?from=1&to=2", "/v1/proofs/inclusion?index=1&tree_size=2")


def _damage(env: LedgerEnv, how: str) -> None:
    """Store node DAMAGED's hash as NULL (NOT NULL taken off first, as a byte flip would get
    past it) or, on SQLite, as the same hash in hex text."""
    url = env.settings.database_url
    if how == "null":
        allow_null(url, "merkle_nodes", "hash")
    level, idx = DAMAGED
    value = "NULL" if how == "null" else "lower(hex(hash))"
    with tampered(url) as conn:
        assert conn.exec_driver_sql(f"UPDATE merkle_nodes SET hash = {value} WHERE level = {level} AND idx = {idx}").rowcount == 1


def test_the_damaged_node_is_in_those_proofs_only() -> None:
    needed = {
        "inclusion": plan_nodes(inclusion_plan(index=0, tree_size=5)),
        "consistency": plan_nodes(consistency_plan(old_size=2, new_size=5)),
        "tlog": plan_nodes(inclusion_plan(index=1, tree_size=5)),
    }
    assert all(DAMAGED in nodes for nodes in needed.values()), needed
    assert DAMAGED not in plan_nodes(inclusion_plan(index=4, tree_size=5))
    assert DAMAGED not in plan_nodes(consistency_plan(old_size=1, new_size=2))


@pytest.mark.parametrize("how", ["null", "text"])
def test_a_proof_needing_a_damaged_node_is_a_deliberate_503(
    client: FlaskClient, ledger_env: LedgerEnv, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    if how == "text" and ledger_env.backend != "sqlite":
        pytest.skip("PostgreSQL's bytea column cannot hold text")
    for i in range(4):
        assert post_entry(client, register(ledger_env.admin, Member(f"m{i}"), ["producer"])).status_code == 201
    assert client.get("/v1/ledger").get_json()["tree_size"] == 5
    before = {path: client.get(path).get_data() for path in [*NEEDS_IT.values(), *DOES_NOT]}
    assert all(client.get(path).status_code == 200 for path in before)

    _damage(ledger_env, how)
    for kind, path in NEEDS_IT.items():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            resp = client.get(path)
        assert resp.status_code == 503, (path, resp.get_data(as_text=True))
        assert resp.mimetype == "application/problem+json"
        body = resp.get_json()
        assert (body["code"], body["type"], body["status"]) == ("storage_damaged", "urn:filiera:problem:storage_damaged", 503)
        assert "filiera verify" in body["detail"]
        assert set(body) == {"type", "title", "status", "detail", "code"}
        text = resp.get_data(as_text=True)
        assert str(ledger_env.settings.data_dir.parent) not in text and "merkle_nodes" not in text
        # One error line, naming the node, for the operator; no unexpected exception.
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert message.startswith(f"storage damaged: the {kind} proof needs Merkle node (level 1, index 1),"), message
        assert errors[0].exc_info is None and "internal error" not in message
    # The proofs that do not use the node are unchanged.
    for path in DOES_NOT:
        resp = client.get(path)
        assert (resp.status_code, resp.get_data()) == (200, before[path]), path
