"""Governance rules through HTTP (PROTOCOL §3, §4 governance rows; TESTPLAN T5).

One accepted and one refused case per rule, each refusal asserted by its ``code`` and checked
to have written nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import create_app
from api.verify_sources import db_blocks
from ledger.config import Settings
from ledger.encoding import format_time
from ledger.entries import sign_payload
from ledger.keys import SigningKey, write_key_file
from ledger.merkle import verify_inclusion
from ledger.notes import NoteVerifier, TlogProof, verify_checkpoint
from ledger.sealing import Sealer
from ledger.storage.migrate import upgrade
from ledger.storage.store import Store
from ledger.verify import verify_chain

from ..conftest import Db, LedgerEnv
from ..factories import (
    ORIGIN,
    Member,
    envelope,
    key_add,
    key_revoke,
    nonce,
    participant_object,
    payload,
    post_entry,
    register,
    tree_size,
    update,
    with_key,
)


def _ok(client: FlaskClient, env: dict[str, Any]) -> dict[str, Any]:
    resp = post_entry(client, env)
    assert resp.status_code == 201, resp.json
    body: dict[str, Any] = resp.json
    return body


def _refused(client: FlaskClient, env: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    size = tree_size(client)
    resp = post_entry(client, env)
    assert (resp.status_code, resp.json["code"]) == (status, code), resp.json
    assert resp.mimetype == "application/problem+json"
    assert tree_size(client) == size
    body: dict[str, Any] = resp.json
    return body


def _member(client: FlaskClient, admin: Member, pid: str, roles: list[str] | None = None) -> Member:
    m = Member(pid)
    _ok(client, register(admin, m, roles or ["producer"]))
    return m


# --- participant.register ---------------------------------------------------------------


def test_admin_registers_a_participant(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    m = Member("oleificio")
    _ok(client, register(ledger_env.admin, m, ["producer", "processor"], name="Oleificio Rossi S.r.l."))
    got = client.get("/v1/participants/oleificio").json
    assert got["roles"] == ["producer", "processor"]
    assert got["name"] == "Oleificio Rossi S.r.l."
    assert [k["key_id"] for k in got["keys"]] == [m.key_id]


def test_non_admin_cannot_register(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    producer = _member(client, ledger_env.admin, "oleificio")
    _refused(client, register(producer, Member("frantoio"), ["processor"]), 403, "role_not_allowed")


def test_duplicate_participant_id_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _member(client, ledger_env.admin, "oleificio")
    _refused(client, register(ledger_env.admin, Member("oleificio"), ["buyer"]), 409, "participant_exists")


def test_reserved_participant_id_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _refused(client, register(ledger_env.admin, Member("ledger"), ["auditor"]), 422, "participant_reserved")


def test_key_registered_to_someone_else_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    first = _member(client, ledger_env.admin, "oleificio")
    _refused(client, register(ledger_env.admin, Member("frantoio", first.key), ["processor"]), 409, "key_in_use")


def test_genesis_admin_key_cannot_be_registered_again(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _refused(
        client, register(ledger_env.admin, Member("frantoio", ledger_env.admin.key), ["buyer"]), 409, "key_in_use"
    )


# --- participant.update -----------------------------------------------------------------


def test_admin_updates_roles_and_name(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _member(client, ledger_env.admin, "oleificio")
    _ok(client, update(ledger_env.admin, "oleificio", name="Oleificio Bianchi", roles=["producer", "buyer"]))
    got = client.get("/v1/participants/oleificio").json
    assert (got["name"], got["roles"]) == ("Oleificio Bianchi", ["producer", "buyer"])
    _ok(client, update(ledger_env.admin, "oleificio", roles=["retailer"]))
    got = client.get("/v1/participants/oleificio").json
    assert (got["name"], got["roles"]) == ("Oleificio Bianchi", ["retailer"])


def test_non_admin_cannot_update(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    producer = _member(client, ledger_env.admin, "oleificio")
    _refused(client, update(producer, "oleificio", roles=["admin"]), 403, "role_not_allowed")
    assert client.get("/v1/participants/oleificio").json["roles"] == ["producer"]


def test_update_of_unknown_participant_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _refused(client, update(ledger_env.admin, "nobody", name="Nobody S.p.A."), 404, "participant_not_found")


def test_promoted_admin_can_register(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    second = _member(client, ledger_env.admin, "consorzio")
    _refused(client, register(second, Member("frantoio"), ["processor"]), 403, "role_not_allowed")
    _ok(client, update(ledger_env.admin, "consorzio", roles=["admin"]))
    _ok(client, register(second, Member("frantoio"), ["processor"]))


# --- key.add ----------------------------------------------------------------------------


def test_owner_adds_a_key_signed_by_active_key_and_new_key(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    new = SigningKey.generate()
    _ok(client, key_add(owner, new))
    keys = client.get("/v1/participants/oleificio").json["keys"]
    assert {k["key_id"]: k["status"] for k in keys} == {owner.key_id: "active", new.public_key.key_id: "active"}
    # The new key signs on its own now.
    _ok(client, key_add(with_key(owner, new), SigningKey.generate()))


def test_key_add_without_new_key_signature_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    new = SigningKey.generate()
    p = payload("key.add", owner.id, participant=owner.id, public_key=new.public_key.b64)
    _refused(client, envelope(p, owner), 403, "missing_signature")


def test_key_add_by_unrelated_member_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    other = _member(client, ledger_env.admin, "frantoio")
    _refused(client, key_add(owner, SigningKey.generate(), signer=other), 403, "role_not_allowed")


def test_admin_adds_a_key_for_a_member_who_lost_theirs(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    new = SigningKey.generate()
    _ok(client, key_add(owner, new, signer=ledger_env.admin))
    assert new.public_key.key_id in {k["key_id"] for k in client.get("/v1/participants/oleificio").json["keys"]}


def test_key_add_of_a_key_in_use_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    other = _member(client, ledger_env.admin, "frantoio")
    _refused(client, key_add(owner, other.key), 409, "key_in_use")


# --- key.revoke -------------------------------------------------------------------------


def test_revoked_key_signs_nothing_new_but_earlier_entries_still_verify(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    spare = SigningKey.generate()
    old_receipt = _ok(client, key_add(owner, spare))  # signed by the key about to be revoked
    revoked = _ok(client, key_revoke(owner, owner.key_id, reason="laptop stolen"))

    # The revoked key can no longer sign anything.
    _refused(client, key_add(owner, SigningKey.generate()), 403, "key_revoked")
    _refused(client, key_revoke(owner, spare.public_key.key_id), 403, "key_revoked")
    # Revoking it again, with the key still active, is refused too.
    _refused(client, key_revoke(with_key(owner, spare), owner.key_id), 403, "key_revoked")

    keys = {k["key_id"]: k for k in client.get("/v1/participants/oleificio").json["keys"]}
    assert keys[owner.key_id]["status"] == "revoked"
    assert keys[owner.key_id]["revoked_index"] == revoked["index"]
    assert keys[owner.key_id]["revoked_height"] == revoked["height"]
    assert keys[owner.key_id]["reason"] == "laptop stolen"
    assert keys[spare.public_key.key_id]["status"] == "active"

    # The entry the key signed before its revocation still verifies: its receipt offline ...
    info = client.get("/v1/ledger").json
    verifier = NoteVerifier.parse(info["verifier_key"])
    TlogProof.parse(old_receipt["tlog_proof"]).verify(
        leaf_hash=bytes.fromhex(old_receipt["leaf_hash"]), verifier=verifier, origin=ORIGIN
    )
    # ... a fresh inclusion proof against today's signed checkpoint ...
    head = verify_checkpoint(client.get("/v1/checkpoint").data, verifier=verifier, origin=ORIGIN)
    proof = client.get(f"/v1/proofs/inclusion?id={old_receipt['id']}&tree_size={head.tree_size}").json
    verify_inclusion(
        leaf_hash=bytes.fromhex(old_receipt["leaf_hash"]),
        index=old_receipt["index"],
        tree_size=head.tree_size,
        proof=[bytes.fromhex(h) for h in proof["hashes"]],
        root=head.root,
    )
    # ... and the whole chain replays with the rules that sealed it (`filiera verify`).
    blocks, total, node_check = db_blocks(ledger_env.settings)
    report = verify_chain(blocks, ledger_key=bytes(verifier.public_key), node_check=node_check)
    assert (report.tree_size, report.entries) == (total, total) == (head.tree_size, head.tree_size)
    assert report.root == head.root.hex()

    # The spare key carries on.
    _ok(client, key_add(with_key(owner, spare), SigningKey.generate()))


def test_admin_revokes_a_member_key(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    _ok(client, key_revoke(owner, owner.key_id, signer=ledger_env.admin, reason="member left"))
    _refused(client, key_add(owner, SigningKey.generate()), 403, "key_revoked")


def test_revoke_by_another_member_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    other = _member(client, ledger_env.admin, "frantoio")
    _refused(client, key_revoke(owner, owner.key_id, signer=other), 403, "role_not_allowed")


def test_revoke_of_a_key_the_participant_does_not_have_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    owner = _member(client, ledger_env.admin, "oleificio")
    other = _member(client, ledger_env.admin, "frantoio")
    _refused(client, key_revoke(owner, other.key_id), 422, "unknown_key")


# --- signatures -------------------------------------------------------------------------


def test_unknown_key_id_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    impostor = Member(ledger_env.admin.id)  # the admin's id with a key nobody registered
    _refused(client, register(impostor, Member("oleificio"), ["producer"]), 422, "unknown_key")


def test_wrong_signature_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    env = register(ledger_env.admin, Member("oleificio"), ["producer"])
    other = register(ledger_env.admin, Member("oleificio"), ["producer"])
    env["signatures"][0]["sig"] = other["signatures"][0]["sig"]  # valid base64, 64 bytes, wrong
    _refused(client, env, 422, "invalid_signature")


def test_author_must_sign(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    producer = _member(client, ledger_env.admin, "oleificio")
    p = payload(
        "participant.register",
        producer.id,
        participant=participant_object(Member("frantoio"), ["processor"]),
    )
    _refused(client, envelope(p, ledger_env.admin), 403, "missing_signature")


def test_entry_time_more_than_five_minutes_ahead_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    def at(delta: timedelta) -> dict[str, Any]:
        p = payload("participant.register", "admin", participant=participant_object(Member("oleificio"), ["producer"]))
        p["time"] = format_time(datetime.now(timezone.utc) + delta)
        return envelope(p, ledger_env.admin)

    _refused(client, at(timedelta(minutes=10)), 422, "time_in_future")
    _ok(client, at(timedelta(minutes=2)))


def test_second_genesis_is_refused(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    admin = Member("admin2")
    p = {
        "ledger": ORIGIN,
        "type": "ledger.genesis",
        "author": "ledger",
        "time": format_time(datetime.now(timezone.utc)),
        "nonce": nonce(),
        "ledger_key": ledger_env.ledger_key.public_key.b64,
        "admins": [participant_object(admin, ["admin"])],
        "policy": {"admin_quorum": 1},
    }
    _refused(client, sign_payload(p, [("ledger", ledger_env.ledger_key)]), 422, "genesis_misplaced")


@pytest.mark.parametrize(
    "where",
    ["email-in-name", "email-in-attribute", "italian-phone-in-attribute", "phone-in-name"],
)
def test_personal_data_is_refused(client: FlaskClient, ledger_env: LedgerEnv, where: str) -> None:
    obj = participant_object(Member("oleificio"), ["producer"])
    if where == "email-in-name":
        obj["name"] = "Oleificio (mario.rossi@example.it)"
    elif where == "email-in-attribute":
        obj["attributes"] = {"contact": "mario.rossi@example.it"}
    elif where == "italian-phone-in-attribute":
        obj["attributes"] = {"contact": "+39 347 123 4567"}
    else:
        obj["name"] = "Oleificio Rossi, tel. +393471234567"
    env = envelope(payload("participant.register", "admin", participant=obj), ledger_env.admin)
    body = _refused(client, env, 400, "personal_data")
    assert body["field"].startswith("payload.participant.")


def test_business_attributes_without_personal_data_are_accepted(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    obj = participant_object(Member("oleificio"), ["producer"])
    obj["attributes"] = {"vat": "IT01234567890", "gln": "8001234000005", "region": "Puglia"}
    _ok(client, envelope(payload("participant.register", "admin", participant=obj), ledger_env.admin))
    assert client.get("/v1/participants/oleificio").json["attributes"]["vat"] == "IT01234567890"


# --- admin quorum -----------------------------------------------------------------------


@dataclass
class QuorumLedger:
    client: FlaskClient
    first: Member
    second: Member


@pytest.fixture
def quorum_ledger(db: Db, tmp_path: Path) -> Iterator[QuorumLedger]:
    """A ledger whose genesis names two admins and an admin quorum of 2."""
    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "q",
        ledger_key_file=tmp_path / "q" / "ledger.key",
        database_url=db.url,
        seal_interval=0.0,
    )
    settings.data_dir.mkdir(parents=True)
    ledger_key = SigningKey.generate()
    write_key_file(settings.ledger_key_file, participant="ledger", signing_key=ledger_key)
    first, second = Member("admin-a"), Member("admin-b")
    store = Store.open(settings, check=False)
    try:
        upgrade(store.engine)
        Sealer(store, signing_key=ledger_key).genesis(
            origin=ORIGIN,
            admins=[participant_object(first, ["admin"]), participant_object(second, ["admin"])],
            admin_quorum=2,
            nonce=nonce(),
        )
    finally:
        store.dispose()
    app = create_app(replace(settings), background_sealing=False)
    yield QuorumLedger(app.test_client(), first, second)
    app.extensions["filiera"].store.dispose()


def test_quorum_of_two_needs_two_admin_signatures(quorum_ledger: QuorumLedger) -> None:
    client, a, b = quorum_ledger.client, quorum_ledger.first, quorum_ledger.second
    m = Member("oleificio")
    body = _refused(client, register(a, m, ["producer"]), 403, "quorum_not_met")
    assert (body["required"], body["got"]) == (2, 1)
    _ok(client, register(a, m, ["producer"], extra_admins=(b,)))
    # Updates need the quorum too.
    _refused(client, update(b, "oleificio", roles=["buyer"]), 403, "quorum_not_met")
    _ok(client, update(b, "oleificio", roles=["buyer"], extra_admins=(a,)))
    # A member signing alongside one admin does not make a quorum.
    _refused(client, register(a, Member("frantoio"), ["processor"], extra_admins=(m,)), 403, "role_not_allowed")


def test_quorum_for_key_recovery(quorum_ledger: QuorumLedger) -> None:
    client, a, b = quorum_ledger.client, quorum_ledger.first, quorum_ledger.second
    m = Member("oleificio")
    _ok(client, register(a, m, ["producer"], extra_admins=(b,)))
    new = SigningKey.generate()
    one = key_add(m, new, signer=a)
    _refused(client, one, 403, "missing_signature")
    p = payload("key.add", m.id, participant=m.id, public_key=new.public_key.b64)
    both = sign_payload(p, [(a.id, a.key), (b.id, b.key), (m.id, new)])
    _ok(client, both)
