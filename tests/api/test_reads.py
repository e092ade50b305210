"""Public reads as an auditor uses them (PROTOCOL §5, §6): identity, checkpoints, blocks,
inclusion and consistency proofs, members. Every signature and proof is checked with the
library's verifiers against the key the ledger publishes, never taken on trust.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from ledger.blocks import BlockHeader, verify_block_signature
from ledger.entries import parse_envelope
from ledger.errors import ChainBroken, IntegrityFailure, InvalidProof
from ledger.keys import SigningKey
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.notes import Checkpoint, NoteVerifier, verifier_for, verify_checkpoint

from ..conftest import LedgerEnv
from ..factories import ORIGIN, Member, key_add, key_revoke, post_entry, register


def _grow(client: FlaskClient, ledger_env: LedgerEnv, n: int) -> list[dict[str, Any]]:
    """Seal ``n`` registrations, one block each; returns their envelopes in log order."""
    envs = []
    for i in range(n):
        env = register(ledger_env.admin, Member(f"member-{i:02d}"), ["producer"])
        assert post_entry(client, env).status_code == 201
        envs.append(env)
    return envs


def _verifier(client: FlaskClient) -> NoteVerifier:
    return NoteVerifier.parse(client.get("/v1/ledger").json["verifier_key"])


def _block(client: FlaskClient, height: int) -> dict[str, Any]:
    resp = client.get(f"/v1/blocks/{height}")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json
    return body


def _checkpoints_by_size(client: FlaskClient) -> dict[int, Checkpoint]:
    """Every block's checkpoint, verified, by tree size."""
    verifier = _verifier(client)
    blocks = client.get("/v1/blocks?limit=1000").json["blocks"]
    out = {}
    for b in blocks:
        cp = verify_checkpoint(b["checkpoint"], verifier=verifier, origin=ORIGIN)
        assert (cp.tree_size, cp.root.hex()) == (b["header"]["tree_size"], b["header"]["root"])
        out[cp.tree_size] = cp
    return out


def test_health(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    resp = client.get("/v1/health")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "database": "ok", "height": 0, "tree_size": 1}


def test_ledger_identity_and_checkpoint_verify(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _grow(client, ledger_env, 2)
    info = client.get("/v1/ledger").json
    assert set(info) >= {"origin", "public_key", "verifier_key", "genesis", "height", "tree_size", "root"}
    assert info["origin"] == ORIGIN
    assert info["public_key"] == ledger_env.ledger_key.public_key.b64
    assert (info["height"], info["tree_size"]) == (2, 3)
    verifier = NoteVerifier.parse(info["verifier_key"])
    assert verifier.name == ORIGIN
    assert verifier.public_key == base64.b64decode(info["public_key"])
    resp = client.get("/v1/checkpoint")
    assert resp.mimetype == "text/plain"
    cp = verify_checkpoint(resp.data, verifier=verifier, origin=ORIGIN)
    assert (cp.tree_size, cp.root.hex()) == (info["tree_size"], info["root"])
    assert info["genesis"] == _block(client, 0)["hash"]


def test_checkpoint_is_not_signed_by_another_key(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    stranger = verifier_for(ORIGIN, SigningKey.generate().public_key.raw)
    with pytest.raises(IntegrityFailure):
        verify_checkpoint(client.get("/v1/checkpoint").data, verifier=stranger, origin=ORIGIN)


def test_blocks_hash_chain_and_signatures(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    envs = _grow(client, ledger_env, 3)
    public_key = ledger_env.ledger_key.public_key.raw
    prev = "0" * 64
    for height in range(4):
        block = _block(client, height)
        header = BlockHeader.from_json(block["header"])
        assert header.height == height
        assert header.hash() == block["hash"]
        assert header.prev == prev
        verify_block_signature(header, block["signature"], public_key)
        assert len(block["entries"]) == header.tree_size - header.first_index == 1
        prev = block["hash"]
    assert _block(client, 2)["entries"] == [parse_envelope(envs[1], origin=ORIGIN).id]


def test_block_signature_fails_for_another_header(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _grow(client, ledger_env, 1)
    block = _block(client, 1)
    forged = BlockHeader.from_json({**block["header"], "time": "2000-01-01T00:00:00Z"})
    with pytest.raises(ChainBroken):
        verify_block_signature(forged, block["signature"], ledger_env.ledger_key.public_key.raw)


def test_blocks_paging(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _grow(client, ledger_env, 4)
    page = client.get("/v1/blocks?from=1&limit=2").json["blocks"]
    assert [b["header"]["height"] for b in page] == [1, 2]
    everything = client.get("/v1/blocks").json["blocks"]
    assert [b["header"]["height"] for b in everything] == [0, 1, 2, 3, 4]
    assert everything[1:3] == page
    assert client.get("/v1/blocks?from=5").json["blocks"] == []
    missing = client.get("/v1/blocks/5")
    assert (missing.status_code, missing.json["code"]) == (404, "block_not_found")


def test_inclusion_proofs_by_id_and_index_verify_at_every_size(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    envs = _grow(client, ledger_env, 5)
    checkpoints = _checkpoints_by_size(client)
    assert sorted(checkpoints) == [1, 2, 3, 4, 5, 6]
    for i, env in enumerate(envs, start=1):
        parsed = parse_envelope(env, origin=ORIGIN)
        for size in range(i + 1, 7):
            by_index = client.get(f"/v1/proofs/inclusion?index={i}&tree_size={size}").json
            by_id = client.get(f"/v1/proofs/inclusion?id={parsed.id}&tree_size={size}").json
            assert by_id == by_index
            assert (by_index["index"], by_index["tree_size"]) == (i, size)
            assert by_index["leaf_hash"] == parsed.leaf_hash.hex()
            verify_inclusion(
                leaf_hash=parsed.leaf_hash,
                index=i,
                tree_size=size,
                proof=[bytes.fromhex(h) for h in by_index["hashes"]],
                root=checkpoints[size].root,
            )
    # Without tree_size the proof is against the current head.
    latest = client.get("/v1/proofs/inclusion?index=2").json
    assert latest["tree_size"] == 6
    assert latest["root"] == checkpoints[6].root.hex()


def test_inclusion_proof_fails_against_another_root(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    envs = _grow(client, ledger_env, 3)
    checkpoints = _checkpoints_by_size(client)
    proof = client.get("/v1/proofs/inclusion?index=1&tree_size=4").json
    leaf = parse_envelope(envs[0], origin=ORIGIN).leaf_hash
    with pytest.raises(InvalidProof):
        verify_inclusion(
            leaf_hash=leaf, index=1, tree_size=4,
            proof=[bytes.fromhex(h) for h in proof["hashes"]], root=checkpoints[3].root,
        )


def test_consistency_proofs_between_every_pair_of_sizes(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _grow(client, ledger_env, 11)
    checkpoints = _checkpoints_by_size(client)
    assert sorted(checkpoints) == list(range(1, 13))
    pairs = 0
    for old in range(1, 13):
        for new in range(old, 13):
            resp = client.get(f"/v1/proofs/consistency?from={old}&to={new}")
            assert resp.status_code == 200
            body = resp.json
            assert (body["from"], body["to"]) == (old, new)
            verify_consistency(
                old_size=old,
                new_size=new,
                proof=[bytes.fromhex(h) for h in body["hashes"]],
                old_root=checkpoints[old].root,
                new_root=checkpoints[new].root,
            )
            pairs += 1
    assert pairs == 78
    # Without `to`, the proof reaches the current head.
    assert client.get("/v1/proofs/consistency?from=3").json["to"] == 12


def test_proofs_on_postgresql_read_without_a_transaction(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    # A proof reads the head, then what it covers, which was committed with or before it and
    # is never changed: on PostgreSQL it needs no snapshot, and autocommit saves the BEGIN and
    # COMMIT round trips (Store.read_committed). On SQLite it reads in one snapshot, as before.
    _grow(client, ledger_env, 3)
    engine = client.application.extensions["filiera"].store.engine
    postgresql = engine.dialect.name == "postgresql"
    seen: list[bool] = []

    def record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if postgresql:
            seen.append(bool(conn.connection.dbapi_connection.autocommit))
        elif not statement.startswith("BEGIN"):  # SQLite's BEGIN DEFERRED opens the snapshot
            seen.append(conn.in_transaction())

    event.listen(engine, "before_cursor_execute", record)
    try:
        for url in ("/v1/proofs/inclusion?index=2", "/v1/proofs/inclusion?index=1&tree_size=3", "/v1/proofs/consistency?from=2"):
            assert client.get(url).status_code == 200, url
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) >= 3 * 2 and all(seen), seen


def test_participants_paging_follows_next(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _grow(client, ledger_env, 5)
    # Ids whose order differs between collations: paging must still visit each exactly once.
    odd = ["a.b", "a-b", "a:b", "a_b", "ab", "a0"]
    for pid in odd:
        assert post_entry(client, register(ledger_env.admin, Member(pid), ["buyer"])).status_code == 201
    seen: list[str] = []
    url = "/v1/participants?limit=2"
    pages = 0
    while True:
        body = client.get(url).json
        pages += 1
        seen.extend(p["id"] for p in body["participants"])
        if body["next"] is None:
            break
        assert len(body["participants"]) == 2
        url = f"/v1/participants?limit=2&after={body['next']}"
    assert sorted(seen) == sorted(["admin", *odd, *[f"member-{i:02d}" for i in range(5)]])
    assert len(seen) == len(set(seen)) == 12
    assert pages in (6, 7)  # the last full page may be followed by an empty one
    assert client.get("/v1/participants/member-03").json["registered_index"] == 4


def test_participant_keys_show_status_and_heights_after_revoke(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = Member("oleificio")
    reg = post_entry(client, register(ledger_env.admin, owner, ["producer"])).json
    spare = SigningKey.generate()
    added = post_entry(client, key_add(owner, spare)).json
    revoked = post_entry(client, key_revoke(owner, owner.key_id, reason="rotated")).json
    got = client.get("/v1/participants/oleificio").json
    assert (got["registered_index"], got["registered_height"]) == (reg["index"], reg["height"])
    keys = {k["key_id"]: k for k in got["keys"]}
    assert keys[owner.key_id] == {
        "key_id": owner.key_id,
        "public_key": owner.public_key,
        "status": "revoked",
        "added_index": reg["index"],
        "added_height": reg["height"],
        "revoked_index": revoked["index"],
        "revoked_height": revoked["height"],
        "reason": "rotated",
    }
    new = keys[spare.public_key.key_id]
    assert (new["status"], new["added_index"], new["added_height"]) == ("active", added["index"], added["height"])
    assert new["revoked_index"] is None and new["revoked_height"] is None
    listed = {p["id"]: p for p in client.get("/v1/participants").json["participants"]}
    assert listed["oleificio"] == got


def test_entry_read_back_matches_what_was_signed(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("oleificio"), ["producer"])
    receipt = post_entry(client, env).json
    got = client.get(f"/v1/entries/{receipt['id']}").json
    assert {k: got[k] for k in ("id", "index", "height", "leaf_hash")} == {
        k: receipt[k] for k in ("id", "index", "height", "leaf_hash")
    }
    again = parse_envelope({"payload": got["payload"], "signatures": got["signatures"]}, origin=ORIGIN)
    assert again.leaf_hash.hex() == receipt["leaf_hash"]
