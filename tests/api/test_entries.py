"""Submitting entries through HTTP as a supplier system does (PROTOCOL §3, §6; TESTPLAN T5, T11).

Receipts carry a C2SP tlog-proof that verifies offline against the ledger's note verifier key;
replays write nothing; batches are sealed in order against the state the earlier entries leave.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from ledger.entries import parse_envelope, sign_payload
from ledger.errors import InvalidProof
from ledger.keys import SigningKey
from ledger.notes import NoteVerifier, TlogProof

from ..conftest import LedgerEnv
from ..factories import (
    ORIGIN,
    Member,
    key_add,
    post_batch,
    post_entry,
    register,
    tree_size,
)


def _verify_receipt(client: FlaskClient, env: dict[str, Any], receipt: dict[str, Any]) -> None:
    """The receipt names this entry and its tlog proof verifies against the published key."""
    info = client.get("/v1/ledger").json
    parsed = parse_envelope(env, origin=info["origin"])
    assert receipt["id"] == parsed.id
    assert receipt["leaf_hash"] == parsed.leaf_hash.hex()
    proof = TlogProof.parse(receipt["tlog_proof"])
    assert proof.index == receipt["index"]
    checkpoint = proof.verify(
        leaf_hash=parsed.leaf_hash,
        verifier=NoteVerifier.parse(info["verifier_key"]),
        origin=info["origin"],
    )
    assert checkpoint.tree_size > receipt["index"]


def test_submit_returns_receipt_with_verifying_tlog_proof(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("oleificio"), ["producer"])
    resp = post_entry(client, env)
    assert resp.status_code == 201
    body = resp.json
    assert set(body) == {"id", "index", "height", "leaf_hash", "tlog_proof"}
    assert (body["index"], body["height"]) == (1, 1)
    assert resp.headers["Location"].endswith(f"/v1/entries/{body['id']}")
    _verify_receipt(client, env, body)
    stored = client.get(f"/v1/entries/{body['id']}")
    assert stored.status_code == 200
    assert stored.json["payload"] == env["payload"]
    assert stored.json["index"] == body["index"]


def test_tlog_proof_refuses_another_leaf(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    resp = post_entry(client, register(ledger_env.admin, Member("oleificio"), ["producer"]))
    info = client.get("/v1/ledger").json
    proof = TlogProof.parse(resp.json["tlog_proof"])
    with pytest.raises(InvalidProof):
        proof.verify(
            leaf_hash=bytes(32), verifier=NoteVerifier.parse(info["verifier_key"]), origin=ORIGIN
        )


def test_resubmitting_identical_entry_returns_it_again_without_new_leaf(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("oleificio"), ["producer"])
    first = post_entry(client, env)
    assert first.status_code == 201
    size = tree_size(client)
    again = post_entry(client, copy.deepcopy(env))
    assert again.status_code == 200
    assert again.json == first.json
    assert tree_size(client) == size


def test_signatures_in_another_order_are_the_same_entry(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = Member("oleificio")
    assert post_entry(client, register(ledger_env.admin, owner, ["producer"])).status_code == 201
    env = key_add(owner, SigningKey.generate())
    first = post_entry(client, env)
    assert first.status_code == 201
    size = tree_size(client)
    swapped = {"payload": env["payload"], "signatures": list(reversed(env["signatures"]))}
    again = post_entry(client, swapped)
    assert again.status_code == 200
    assert again.json["index"] == first.json["index"]
    assert tree_size(client) == size


def test_same_nonce_with_different_body_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("oleificio"), ["producer"])
    assert post_entry(client, env).status_code == 201
    other = register(ledger_env.admin, Member("frantoio"), ["processor"])
    other["payload"]["nonce"] = env["payload"]["nonce"]
    resigned = sign_payload(other["payload"], [(ledger_env.admin.id, ledger_env.admin.key)])
    size = tree_size(client)
    resp = post_entry(client, resigned)
    assert resp.status_code == 409
    assert resp.json["code"] == "nonce_reused"
    assert tree_size(client) == size


def test_respond_async_queues_then_seals(app: Flask, client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("oleificio"), ["producer"])
    resp = post_entry(client, env, Prefer="respond-async")
    assert resp.status_code == 202
    assert resp.json["status"] == "pending"
    assert resp.headers["Preference-Applied"] == "respond-async"
    entry_id = resp.json["id"]
    assert resp.headers["Location"].endswith(f"/v1/entries/{entry_id}")
    pending = client.get(f"/v1/entries/{entry_id}")
    assert pending.status_code == 202
    assert pending.json == {"id": entry_id, "status": "pending"}
    assert tree_size(client) == 1

    assert len(app.extensions["filiera"].sealer.seal_pending()) == 1

    sealed = client.get(f"/v1/entries/{entry_id}")
    assert sealed.status_code == 200
    assert sealed.json["index"] == 1
    assert tree_size(client) == 2
    # Submitting it again now answers with the receipt.
    again = post_entry(client, env)
    assert again.status_code == 200
    _verify_receipt(client, env, again.json)


def test_async_entry_refused_at_sealing_reports_its_problem(app: Flask, client: FlaskClient, ledger_env: LedgerEnv) -> None:
    member = Member("oleificio")
    a = register(ledger_env.admin, member, ["producer"])
    b = register(ledger_env.admin, member, ["processor"])  # same id: only one can be sealed
    ra = post_entry(client, a, Prefer="respond-async")
    rb = post_entry(client, b, Prefer="respond-async")
    assert (ra.status_code, rb.status_code) == (202, 202)
    app.extensions["filiera"].sealer.seal_pending()
    assert client.get(f"/v1/entries/{ra.json['id']}").status_code == 200
    refused = client.get(f"/v1/entries/{rb.json['id']}")
    assert refused.status_code == 409
    assert refused.json["code"] == "participant_exists"
    assert tree_size(client) == 2


def test_batch_reports_each_entry_in_order_and_seals_valid_ones_contiguously(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    admin = ledger_env.admin
    alpha, beta, gamma = Member("alpha"), Member("beta"), Member("gamma")
    stranger = Member("stranger")
    new_key = SigningKey.generate()
    bad_sig = register(admin, Member("delta"), ["buyer"])
    bad_sig["signatures"][0]["sig"] = register(admin, Member("delta"), ["buyer"])["signatures"][0]["sig"]
    entries: list[Any] = [
        register(admin, alpha, ["producer"]),
        {"payload": {}, "signatures": []},  # malformed
        # depends on alpha, registered by the first entry of this same batch
        key_add(alpha, new_key),
        register(stranger, beta, ["producer"]),  # stranger is not a member
        bad_sig,
        register(admin, gamma, ["carrier"]),
        register(admin, alpha, ["carrier"]),  # alpha exists by now
    ]
    size = tree_size(client)
    resp = post_batch(client, entries)
    assert resp.status_code == 200
    results = resp.json["results"]
    assert [r["status"] for r in results] == [201, 400, 201, 422, 422, 201, 409]
    assert [r.get("problem", {}).get("code") for r in results] == [
        None, "missing_field", None, "unknown_key", "invalid_signature", None, "participant_exists",
    ]
    sealed = [r for r in results if r["status"] == 201]
    assert [r["index"] for r in sealed] == [size, size + 1, size + 2]
    assert tree_size(client) == size + 3
    for env, r in zip([entries[0], entries[2], entries[5]], sealed):
        _verify_receipt(client, env, r)
    for r in results:
        if "problem" in r:
            assert r["problem"]["status"] == r["status"]
    # The key added in the batch is active and signs the next entry.
    follow = key_add(Member("alpha", new_key), SigningKey.generate())
    assert post_entry(client, follow).status_code == 201


def test_batch_repeats_already_sealed_and_in_batch_duplicates(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    first = register(ledger_env.admin, Member("alpha"), ["producer"])
    assert post_entry(client, first).status_code == 201
    second = register(ledger_env.admin, Member("beta"), ["producer"])
    size = tree_size(client)
    resp = post_batch(client, [first, second, second])
    results = resp.json["results"]
    assert [r["status"] for r in results] == [200, 201, 200]
    assert results[1]["index"] == results[2]["index"] == size
    assert tree_size(client) == size + 1


def test_empty_batch_is_empty(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    resp = post_batch(client, [])
    assert resp.status_code == 200
    assert resp.json == {"results": []}


def test_batch_over_the_maximum_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    size = tree_size(client)
    env = register(ledger_env.admin, Member("alpha"), ["producer"])
    resp = post_batch(client, [env] * 1001)
    assert resp.status_code == 413
    assert resp.json["code"] == "batch_too_large"
    assert resp.json["limit"] == 1000
    assert tree_size(client) == size


def test_batch_limit_follows_settings(ledger_env: LedgerEnv) -> None:
    app = create_app(replace(ledger_env.settings, max_batch=2), background_sealing=False)
    try:
        client = app.test_client()
        envs = [register(ledger_env.admin, Member(f"m{i}x"), ["producer"]) for i in range(3)]
        resp = post_batch(client, envs)
        assert resp.status_code == 413
        assert resp.json["code"] == "batch_too_large"
        assert post_batch(client, envs[:2]).status_code == 200
        assert tree_size(client) == 3
    finally:
        app.extensions["filiera"].store.dispose()


def test_batch_body_must_be_an_object_with_entries(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("alpha"), ["producer"])
    for body in ([env], {"entries": env}, {"entries": [env], "atomic": True}, {}, {"items": [env]}, "entries"):
        resp = client.post("/v1/entries/batch", json=body)
        assert resp.status_code == 400, body
        assert resp.json["code"] == "invalid_field"
    assert tree_size(client) == 1
