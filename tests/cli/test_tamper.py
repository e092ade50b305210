"""`filiera verify` against a stored log edited by SQL (TESTPLAN T2, one copy per edit).

A ledger of 31 entries in 7 blocks is built once per backend. Each case copies it, removes
the append-only triggers (as an attacker with database access would), makes one logical edit
and runs `filiera verify --json`, which must exit 1 naming the reason, the block and (where an
entry is involved) the entry's index and stored id exactly. Untouched copies must verify.

Cutting off the tail, or cutting it off and re-sealing other entries with the ledger key,
leaves a chain that verifies on its own: only a checkpoint saved earlier shows it
(`--trusted-checkpoint`), and the report says so.

Layout (index: entry; block height in brackets):
  0 genesis [0] | 1-8 register m01..m08 [1] | 9-12 key.add m01..m04 [2]
  13-16 participant.update m05..m08 [3] | 17-20 key.revoke m01..m04's first keys [4]
  21-26 register m09..m14 [5] | 27-30 register m15..m18 [6]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from api.cli import init_ledger
from ledger import jcs
from ledger.blocks import BlockHeader
from ledger.encoding import format_time, parse_time
from ledger.entries import parse_envelope, sign_payload
from ledger.errors import InvalidProof
from ledger.keys import SigningKey, read_key_file
from ledger.merkle import verify_consistency
from ledger.notes import verify_checkpoint, verifier_for
from ledger.sealing import Sealer
from ledger.storage.store import Store
from ledger.verify import REASONS

from ..factories import ORIGIN, Member, envelope, key_add, key_revoke, payload, register
from ..tampering import allow_null, clone, connect, copy_sqlite, ledger_settings, sqlite_path, tampered
from .conftest import ModuleDbs, error_code, on, run

TABLES = ("entries", "blocks", "merkle_nodes", "participants", "participant_keys", "pending")
BLOCKS = [(0, 1), (1, 9), (9, 13), (13, 17), (17, 21), (21, 27), (27, 31)]  # [first, end) per height


@dataclass
class Row:
    id: str
    leaf_data: str
    height: int


@dataclass
class Ledger:
    """The ledger every case copies, with what the cases need to know about it."""

    dbs: ModuleDbs
    url: str
    data: Path
    ledger_key: SigningKey
    admin: Member
    members: dict[str, Member]
    first_keys: dict[str, str]  # member -> key id of the key revoked in block 4
    rows: dict[int, Row] = field(default_factory=dict)
    checkpoints: dict[int, str] = field(default_factory=dict)  # height -> signed checkpoint
    copies: int = 0

    def copy(self) -> str:
        """A new database holding the same rows (schema from the migrations, triggers on)."""
        self.copies += 1
        return clone(self.dbs, self.url, f"copy{self.copies}", TABLES)

    def checkpoint_file(self, height: int, path: Path) -> Path:
        path.write_text(self.checkpoints[height], encoding="utf-8")
        return path


def _seal(sealer: Sealer, envelopes: list[dict[str, Any]]) -> None:
    outcomes = sealer.submit_batch(envelopes)
    assert [o.status for o in outcomes] == ["created"] * len(envelopes), [o.error for o in outcomes]


@pytest.fixture(scope="module")
def ledger(module_dbs: ModuleDbs, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    data = tmp_path_factory.mktemp("tamper") / "data"
    url = module_dbs.new("source")
    settings = ledger_settings(data, url)
    init_ledger(settings, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    admin = Member("admin", read_key_file(data / "admin.key").signing_key)
    ledger_key = read_key_file(data / "ledger.key").signing_key
    members = {f"m{i:02d}": Member(f"m{i:02d}") for i in range(1, 19)}
    first_keys = {m: members[m].key_id for m in ("m01", "m02", "m03", "m04")}
    store = Store.open(settings)
    try:
        sealer = Sealer(store, signing_key=ledger_key)
        _seal(sealer, [register(admin, members[f"m{i:02d}"], ["producer"]) for i in range(1, 9)])
        second = {m: SigningKey.generate() for m in first_keys}
        _seal(sealer, [key_add(members[m], second[m]) for m in first_keys])
        _seal(sealer, [envelope(payload("participant.update", "admin", participant=f"m{i:02d}", name=f"m{i:02d} Oleifici S.p.A."), admin) for i in range(5, 9)])
        _seal(sealer, [key_revoke(Member(m, second[m]), first_keys[m], reason="rotated") for m in first_keys])
        _seal(sealer, [register(admin, members[f"m{i:02d}"], ["producer"]) for i in range(9, 15)])
        _seal(sealer, [register(admin, members[f"m{i:02d}"], ["retailer"]) for i in range(15, 19)])
    finally:
        store.dispose()
    led = Ledger(module_dbs, url, data, ledger_key, admin, members, first_keys)
    with connect(url) as conn:
        for r in conn.execute(text("SELECT idx, id, leaf_data, height FROM entries")):
            led.rows[r.idx] = Row(r.id, r.leaf_data, r.height)
        for b in conn.execute(text("SELECT height, first_index, tree_size, checkpoint FROM blocks ORDER BY height")):
            assert (b.first_index, b.tree_size) == BLOCKS[b.height]
            led.checkpoints[b.height] = b.checkpoint
    assert sorted(led.rows) == list(range(31))
    assert sorted(led.checkpoints) == list(range(7))
    return led


def verify(led: Ledger, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = run([*on(led.data, url), "verify", "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


# --- edits ---------------------------------------------------------------------------------


def flip_hex(s: str, pos: int = 0) -> str:
    return s[:pos] + ("1" if s[pos] != "1" else "2") + s[pos + 1 :]


def flip_b64(s: str, pos: int = 10) -> str:
    return s[:pos] + ("A" if s[pos] != "A" else "B") + s[pos + 1 :]


def leaf(conn: Connection, idx: int) -> dict[str, Any]:
    return json.loads(conn.execute(text("SELECT leaf_data FROM entries WHERE idx = :i"), {"i": idx}).scalar_one())  # type: ignore[no-any-return]


def set_leaf(conn: Connection, idx: int, obj: dict[str, Any], **columns: str) -> None:
    values = {"leaf_data": jcs.canonicalize(obj).decode("utf-8"), **columns}
    sets = ", ".join(f"{k} = :{k}" for k in values)
    conn.execute(text(f"UPDATE entries SET {sets} WHERE idx = :idx"), {**values, "idx": idx})


def set_block(conn: Connection, height: int, **columns: object) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in columns)
    conn.execute(text(f"UPDATE blocks SET {sets} WHERE height = :h"), {**columns, "h": height})


def block(conn: Connection, height: int) -> Any:
    return conn.execute(text("SELECT * FROM blocks WHERE height = :h"), {"h": height}).one()


def rehash(b: Any, **changes: Any) -> str:
    fields = {"ledger": ORIGIN, "height": b.height, "prev": b.prev, "time": b.time, "first_index": b.first_index, "tree_size": b.tree_size, "root": b.root}
    return BlockHeader(**{**fields, **changes}).hash()


def later(t: str) -> str:
    return format_time(parse_time(t, field="time") + timedelta(seconds=1))


def payload_id(obj: dict[str, Any]) -> str:
    return hashlib.sha256(jcs.canonicalize(obj["payload"])).hexdigest()


def delete_tail(conn: Connection, led: Ledger, *, nodes: bool, projection: bool) -> None:
    """Remove block 6 and its entries; a careful attacker also removes the Merkle nodes they
    completed and the members they registered."""
    size = BLOCKS[6][0]
    conn.execute(text("DELETE FROM blocks WHERE height = 6"))
    conn.execute(text("DELETE FROM entries WHERE idx >= :s"), {"s": size})
    if nodes:
        for level, idx in list(conn.execute(text("SELECT level, idx FROM merkle_nodes"))):
            if (idx + 1) << level > size:
                conn.execute(text("DELETE FROM merkle_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx})
    if projection:
        gone = [f"m{i:02d}" for i in range(15, 19)]
        conn.execute(text("DELETE FROM entry_parties WHERE idx >= :s"), {"s": size})
        for pid in gone:
            conn.execute(text("DELETE FROM participant_keys WHERE participant = :p"), {"p": pid})
            conn.execute(text("DELETE FROM participants WHERE id = :p"), {"p": pid})


# Each case edits a copy and returns what `verify --json` must report (the facts it names).
Expected = dict[str, Any]
Edit = Callable[[Connection, Ledger], Expected]


def at(led: Ledger, index: int, reason: str, **facts: Any) -> Expected:
    """A failure at one entry: its block, index and stored id."""
    height = next(h for h, (a, b) in enumerate(BLOCKS) if a <= index < b)
    return {"reason": reason, "height": height, "index": index, "entry": led.rows[index].id, **facts}


def at_block(height: int, reason: str, **facts: Any) -> Expected:
    return {"reason": reason, "height": height, "index": None, "entry": None, **facts}


def payload_letter(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 5)
    name = obj["payload"]["participant"]["name"]
    obj["payload"]["participant"]["name"] = "n" + name[1:]
    set_leaf(conn, 5, obj)
    return at(led, 5, "payload", cause="invalid_signature")


def genesis_payload(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 0)
    obj["payload"]["admins"][0]["name"] = "Consortium admiN"
    set_leaf(conn, 0, obj)
    return at(led, 0, "payload", cause="invalid_signature")


def payload_and_id(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 6)
    obj["payload"]["participant"]["roles"] = ["admin"]
    new_id = payload_id(obj)
    set_leaf(conn, 6, obj, id=new_id)
    return {**at(led, 6, "signature", cause="invalid_signature"), "entry": new_id}


def resigned_by_member(conn: Connection, led: Ledger) -> Expected:
    # An update of m06 (admin's) edited and re-signed with a member's valid key, the stored
    # id and leaf hash recomputed to match: the signature verifies, the authority does not.
    obj = leaf(conn, 14)
    obj["payload"]["name"] = "m06 Rebranded S.p.A."
    env = parse_envelope(sign_payload(obj["payload"], [("m02", led.members["m02"].key)]), origin=ORIGIN)
    set_leaf(conn, 14, json.loads(env.leaf_data), id=env.id, leaf_hash=env.leaf_hash.hex())
    return {**at(led, 14, "rule", cause="missing_signature"), "entry": env.id}


def signature_byte(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 9)
    obj["signatures"][0]["sig"] = flip_b64(obj["signatures"][0]["sig"])
    set_leaf(conn, 9, obj)
    return at(led, 9, "signature", cause="invalid_signature")


def signer_renamed(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 7)
    obj["signatures"][0]["signer"] = "m01"  # admin's key, now claimed to be m01's
    set_leaf(conn, 7, obj)
    return at(led, 7, "signature", cause="unknown_key")


def key_reference(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 13)
    obj["signatures"][0]["key_id"] = led.members["m01"].key_id
    set_leaf(conn, 13, obj)
    return at(led, 13, "signature", cause="unknown_key")


def key_owner_changed(conn: Connection, led: Ledger) -> Expected:
    obj = leaf(conn, 11)  # key.add for m03
    obj["payload"]["participant"] = "m04"
    set_leaf(conn, 11, obj)
    return at(led, 11, "payload")


def leaf_hash_column(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("UPDATE entries SET leaf_hash = :h WHERE idx = 15"), {"h": "0" * 64})
    return at(led, 15, "leaf_hash")


def id_column(conn: Connection, led: Ledger) -> Expected:
    new_id = flip_hex(led.rows[16].id)
    conn.execute(text("UPDATE entries SET id = :i WHERE idx = 16"), {"i": new_id})
    return {**at(led, 16, "entry_id"), "entry": new_id}


def leaf_not_canonical(conn: Connection, led: Ledger) -> Expected:
    text_ = json.dumps(leaf(conn, 8), indent=1)  # the same JSON value, other bytes
    conn.execute(text("UPDATE entries SET leaf_data = :d WHERE idx = 8"), {"d": text_})
    return at(led, 8, "leaf_data")


def leaf_not_json(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("UPDATE entries SET leaf_data = :d WHERE idx = 10"), {"d": led.rows[10].leaf_data[:-1]})
    return at(led, 10, "leaf_data", cause="malformed_json")


def height_column(conn: Connection, led: Ledger) -> Expected:
    # The API serves an entry's block from this column: a copy of a fact the log holds.
    conn.execute(text("UPDATE entries SET height = 3 WHERE idx = 10"))
    return at(led, 10, "entry_columns", field="height")


def genesis_swapped(conn: Connection, led: Ledger) -> Expected:
    # The headers' origin then comes from block 0's checkpoint, so entry 0 is named.
    _swap(conn, 0, 1)
    return {**at(led, 0, "rule", cause="genesis_misplaced"), "entry": led.rows[1].id}


def last_block_gap_closed(conn: Connection, led: Ledger) -> Expected:
    # Entry 28 deleted and 29, 30 moved down: 28 is wrong before 30 is missing.
    conn.execute(text("DELETE FROM entries WHERE idx = 28"))
    conn.execute(text("UPDATE entries SET idx = idx - 1 WHERE idx = 29"))
    conn.execute(text("UPDATE entries SET idx = idx - 1 WHERE idx = 30"))
    return {**at(led, 28, "merkle_node", node=[0, 28]), "entry": led.rows[29].id}


def block_first_index(conn: Connection, led: Ledger) -> Expected:
    set_block(conn, 3, first_index=12)
    return at_block(3, "first_index")


def block_time_backwards_rehashed(conn: Connection, led: Ledger) -> Expected:
    b = block(conn, 3)
    time = format_time(parse_time(block(conn, 2).time, field="time") - timedelta(seconds=1))
    set_block(conn, 3, time=time, hash=rehash(b, time=time))
    return at_block(3, "time")


def block_time(conn: Connection, led: Ledger) -> Expected:
    set_block(conn, 2, time=later(block(conn, 2).time))
    return at_block(2, "block_hash")


def block_root(conn: Connection, led: Ledger) -> Expected:
    set_block(conn, 4, root=flip_hex(block(conn, 4).root))
    return at_block(4, "block_hash")


def block_prev(conn: Connection, led: Ledger) -> Expected:
    set_block(conn, 5, prev=flip_hex(block(conn, 5).prev))
    return at_block(5, "prev")


def block_hash_column(conn: Connection, led: Ledger) -> Expected:
    set_block(conn, 3, hash=flip_hex(block(conn, 3).hash))
    return at_block(3, "block_hash")


def block_root_rehashed(conn: Connection, led: Ledger) -> Expected:
    b = block(conn, 4)
    root = flip_hex(b.root)
    set_block(conn, 4, root=root, hash=rehash(b, root=root))
    return at_block(4, "root")


def block_time_rehashed(conn: Connection, led: Ledger) -> Expected:
    b = block(conn, 2)
    time = later(b.time)
    set_block(conn, 2, time=time, hash=rehash(b, time=time))
    return at_block(2, "block_signature")


def block_signature(conn: Connection, led: Ledger) -> Expected:
    set_block(conn, 1, signature=flip_b64(block(conn, 1).signature))
    return at_block(1, "block_signature")


def block_checkpoint(conn: Connection, led: Ledger) -> Expected:
    origin, size, root, rest = block(conn, 3).checkpoint.split("\n", 3)
    set_block(conn, 3, checkpoint="\n".join([origin, size, flip_b64(root, 5), rest]))
    return at_block(3, "checkpoint")


def entry_deleted(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("DELETE FROM entries WHERE idx = 19"))
    return {**at(led, 19, "missing_entry"), "entry": None}


def last_entry_of_block_deleted(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("DELETE FROM entries WHERE idx = 20"))
    return {**at(led, 20, "missing_entry"), "entry": None}


def _swap(conn: Connection, a: int, b: int) -> None:
    conn.execute(text("UPDATE entries SET idx = -1 WHERE idx = :a"), {"a": a})
    conn.execute(text("UPDATE entries SET idx = :a WHERE idx = :b"), {"a": a, "b": b})
    conn.execute(text("UPDATE entries SET idx = :b WHERE idx = -1"), {"b": b})


def entries_swapped(conn: Connection, led: Ledger) -> Expected:
    # Two registrations in one block: either order obeys the rules; the tree does not.
    _swap(conn, 22, 24)
    return {**at(led, 22, "merkle_node", node=[0, 22]), "entry": led.rows[24].id}


def entries_swapped_across_blocks(conn: Connection, led: Ledger) -> Expected:
    _swap(conn, 3, 23)
    return {**at(led, 3, "merkle_node", node=[0, 3]), "entry": led.rows[23].id}


def forged_unsealed_entry(conn: Connection, led: Ledger) -> Expected:
    # Validly signed by the admin, but appended without a block (no ledger signature).
    env = parse_envelope(register(led.admin, Member("m99"), ["producer"]), origin=ORIGIN)
    conn.execute(
        text(
            "INSERT INTO entries (idx, id, height, type, author, nonce, leaf_hash, leaf_data) "
            "VALUES (31, :id, 7, :type, :author, :nonce, :lh, :ld)"
        ),
        {"id": env.id, "type": str(env.type), "author": env.author, "nonce": env.nonce, "lh": env.leaf_hash.hex(), "ld": env.leaf_data.decode()},
    )
    return {"reason": "unsealed_entry", "height": None, "index": 31, "entry": env.id}


def _set_node(conn: Connection, level: int, idx: int) -> None:
    old = conn.execute(text("SELECT hash FROM merkle_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx}).scalar_one()
    conn.execute(text("UPDATE merkle_nodes SET hash = :h WHERE level = :l AND idx = :i"), {"h": bytes([old[0] ^ 1]) + bytes(old[1:]), "l": level, "i": idx})


def merkle_leaf_node(conn: Connection, led: Ledger) -> Expected:
    _set_node(conn, 0, 7)
    return at(led, 7, "merkle_node", node=[0, 7])


def merkle_inner_node(conn: Connection, led: Ledger) -> Expected:
    _set_node(conn, 3, 1)  # leaves 8..15: completed by entry 15
    return at(led, 15, "merkle_node", node=[3, 1])


def merkle_node_deleted(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("DELETE FROM merkle_nodes WHERE level = 1 AND idx = 9"))  # leaves 18, 19
    return at(led, 19, "merkle_node", node=[1, 9])


def merkle_extra_node(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("INSERT INTO merkle_nodes (level, idx, hash) VALUES (0, 31, :h)"), {"h": b"\x01" * 32})
    return {"reason": "merkle_node", "height": None, "index": None, "entry": None, "node": [0, 31]}


def block_deleted(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("DELETE FROM blocks WHERE height = 3"))
    return at_block(3, "missing_block")


def tail_cut_carelessly(conn: Connection, led: Ledger) -> Expected:
    # Block 6 and its entries gone, but the Merkle nodes they completed left behind.
    delete_tail(conn, led, nodes=False, projection=False)
    return {"reason": "merkle_node", "height": None, "index": None, "entry": None, "node": [0, 27]}


def tail_cut_without_projection(conn: Connection, led: Ledger) -> Expected:
    # The log cut cleanly, but the members block 6 registered still listed.
    delete_tail(conn, led, nodes=True, projection=False)
    return {"reason": "projection", "height": None, "index": None, "entry": None, "participant": "m15"}


def projection_key_added(conn: Connection, led: Ledger) -> Expected:
    key = SigningKey.generate().public_key
    conn.execute(
        text("INSERT INTO participant_keys (key_id, participant, public_key, added_index, added_height) VALUES (:k, 'm05', :pk, 5, 1)"),
        {"k": key.key_id, "pk": key.b64},
    )
    return {"reason": "projection", "height": None, "index": None, "entry": None, "key_id": key.key_id}


def projection_role_escalated(conn: Connection, led: Ledger) -> Expected:
    conn.execute(text("""UPDATE participants SET roles = '["admin", "producer"]' WHERE id = 'm09'"""))
    return {"reason": "projection", "height": None, "index": None, "entry": None, "participant": "m09", "field": "roles"}


def projection_key_unrevoked(conn: Connection, led: Ledger) -> Expected:
    kid = led.first_keys["m02"]
    conn.execute(text("UPDATE participant_keys SET revoked_index = NULL, revoked_height = NULL, reason = NULL WHERE key_id = :k"), {"k": kid})
    return {"reason": "projection", "height": None, "index": None, "entry": None, "key_id": kid, "field": "reason"}


CASES: dict[str, Edit] = {
    "payload-letter": payload_letter,
    "genesis-payload": genesis_payload,
    "payload-and-id-rewritten": payload_and_id,
    "resigned-by-another-member": resigned_by_member,
    "signature-byte": signature_byte,
    "signer-renamed": signer_renamed,
    "key-reference": key_reference,
    "key-owner-changed": key_owner_changed,
    "leaf-hash-column": leaf_hash_column,
    "entry-id-column": id_column,
    "leaf-not-canonical": leaf_not_canonical,
    "leaf-not-json": leaf_not_json,
    "height-column": height_column,
    "genesis-swapped": genesis_swapped,
    "last-block-gap-closed": last_block_gap_closed,
    "block-first-index": block_first_index,
    "block-time-backwards-rehashed": block_time_backwards_rehashed,
    "block-time": block_time,
    "block-root": block_root,
    "block-prev": block_prev,
    "block-hash-column": block_hash_column,
    "block-root-rehashed": block_root_rehashed,
    "block-time-rehashed": block_time_rehashed,
    "block-signature": block_signature,
    "block-checkpoint": block_checkpoint,
    "entry-deleted": entry_deleted,
    "last-entry-of-block-deleted": last_entry_of_block_deleted,
    "entries-swapped": entries_swapped,
    "entries-swapped-across-blocks": entries_swapped_across_blocks,
    "forged-unsealed-entry": forged_unsealed_entry,
    "merkle-leaf-node": merkle_leaf_node,
    "merkle-inner-node": merkle_inner_node,
    "merkle-node-deleted": merkle_node_deleted,
    "merkle-extra-node": merkle_extra_node,
    "block-deleted": block_deleted,
    "tail-cut-carelessly": tail_cut_carelessly,
    "tail-cut-members-left": tail_cut_without_projection,
    "projection-key-added": projection_key_added,
    "projection-role-escalated": projection_role_escalated,
    "projection-key-unrevoked": projection_key_unrevoked,
}


def test_case_count() -> None:
    assert len(CASES) == 40


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_verify_names_the_tampered_place(ledger: Ledger, case: str) -> None:
    url = ledger.copy()
    with tampered(url) as conn:
        expected = CASES[case](conn, ledger)
    code, out = verify(ledger, url)
    assert code == 1, out
    assert (out["ok"], out["code"]) == (False, "chain_broken")
    assert {"reason", "height", "index", "entry", "detail"} <= set(out)
    assert out["reason"] in REASONS
    assert {k: out.get(k) for k in expected} == expected, out["detail"]


# --- a log value of another storage class, or none --------------------------------------------
# SQLite stores any value in any column: a byte flip in the file or an SQL edit can leave a
# hash NULL, a BLOB where text is kept, TEXT where a BLOB is kept, or a value one byte short.
# Each must be named like any other edit of that column, never crash verify.

# case -> (table, column, the row, what verify must report)
ColumnCase = tuple[str, str, str, Callable[[Ledger], Expected]]
COLUMN_CASES: dict[str, ColumnCase] = {
    "merkle-leaf-node-hash": ("merkle_nodes", "hash", "level = 0 AND idx = 7", lambda led: at(led, 7, "merkle_node", node=[0, 7])),
    "merkle-inner-node-hash": ("merkle_nodes", "hash", "level = 3 AND idx = 1", lambda led: at(led, 15, "merkle_node", node=[3, 1])),
    "entry-leaf-hash": ("entries", "leaf_hash", "idx = 15", lambda led: at(led, 15, "leaf_hash")),
    "block-hash": ("blocks", "hash", "height = 3", lambda led: at_block(3, "block_hash")),
    "block-prev": ("blocks", "prev", "height = 5", lambda led: at_block(5, "header")),
    "block-root": ("blocks", "root", "height = 4", lambda led: at_block(4, "header")),
    "block-signature": ("blocks", "signature", "height = 1", lambda led: at_block(1, "block_signature")),
    "block-checkpoint": ("blocks", "checkpoint", "height = 3", lambda led: at_block(3, "checkpoint")),
    "genesis-block-checkpoint": ("blocks", "checkpoint", "height = 0", lambda led: at_block(0, "checkpoint")),
    "member-public-key": (
        "participant_keys", "public_key", "participant = 'm05'",
        lambda led: {"reason": "projection", "height": None, "index": None, "entry": None, "key_id": led.members["m05"].key_id, "field": "public_key"},
    ),
}
BINARY = {("merkle_nodes", "hash")}


def _bad_value(dialect: str, table: str, column: str, variant: str) -> str | None:
    """The SQL expression that replaces ``column``; None where the backend cannot store it."""
    binary = (table, column) in BINARY
    if variant == "null":
        return "NULL"
    if variant == "other-type":
        # The same content in the other storage class: the hash as hex text, the text as a
        # BLOB of its bytes. PostgreSQL's typed columns cannot hold either.
        if dialect != "sqlite":
            return None
        return f"lower(hex({column}))" if binary else f"CAST({column} AS BLOB)"
    assert variant == "one-byte-short"
    if binary:
        return f"substr({column}, 1, 31)" if dialect == "sqlite" else f"substring({column} from 1 for 31)"
    return f"substr({column}, 1, length({column}) - 1)"


@pytest.mark.parametrize("variant", ["null", "other-type", "one-byte-short"])
@pytest.mark.parametrize("case", list(COLUMN_CASES), ids=list(COLUMN_CASES))
def test_a_log_value_of_another_type_is_named(ledger: Ledger, case: str, variant: str) -> None:
    table, column, where, expect = COLUMN_CASES[case]
    url = ledger.copy()
    value = _bad_value(ledger.dbs.backend, table, column, variant)
    if value is None:
        pytest.skip(f"{ledger.dbs.backend} cannot store a value of another type in {table}.{column}")
    if variant == "null":
        allow_null(url, table, column)
    with tampered(url) as conn:
        assert conn.exec_driver_sql(f"UPDATE {table} SET {column} = {value} WHERE {where}").rowcount == 1
    code, out = verify(ledger, url)
    assert code == 1, out
    assert (out["ok"], out["code"]) == (False, "chain_broken")
    assert out["reason"] in REASONS
    expected = expect(ledger)
    assert {k: out.get(k) for k in expected} == expected, out["detail"]


def test_untouched_copies_verify(ledger: Ledger, tmp_path: Path) -> None:
    for _ in range(2):
        url = ledger.copy()
        code, out = verify(ledger, url)
        assert (code, out["ok"], out["entries"], out["blocks"], out["trusted_checkpoint_size"]) == (0, True, 31, 7, None)
        for height in (0, 3, 6):
            cp = ledger.checkpoint_file(height, tmp_path / f"cp{height}.txt")
            code, out = verify(ledger, url, "--trusted-checkpoint", str(cp))
            assert (code, out["ok"], out["trusted_checkpoint_size"]) == (0, True, BLOCKS[height][1])
    # Dropping the triggers alone changes nothing that verify reads.
    with tampered(url):
        pass
    assert verify(ledger, url)[0] == 0


def _cut_tail(ledger: Ledger) -> str:
    url = ledger.copy()
    with tampered(url) as conn:
        delete_tail(conn, ledger, nodes=True, projection=True)
    return url


def test_truncated_tail_is_found_only_against_a_saved_checkpoint(ledger: Ledger, tmp_path: Path) -> None:
    saved = ledger.checkpoint_file(6, tmp_path / "saved.txt")
    url = _cut_tail(ledger)

    # Alone, the shorter chain is a valid chain: nothing in it shows what is missing.
    code, alone = verify(ledger, url)
    assert (code, alone["ok"], alone["tree_size"], alone["blocks"]) == (0, True, 27, 6)

    code, out = verify(ledger, url, "--trusted-checkpoint", str(saved))
    assert code == 1
    assert {k: out.get(k) for k in ("reason", "height", "index", "tree_size", "checkpoint_size")} == {
        "reason": "truncated", "height": 6, "index": None, "tree_size": 27, "checkpoint_size": 31,
    }
    # No consistency proof can lead from the saved tree to the shorter one.
    cp = verify_checkpoint(saved.read_text(), verifier=verifier_for(ORIGIN, ledger.ledger_key.public_key.raw), origin=ORIGIN)
    with pytest.raises(InvalidProof):
        verify_consistency(old_size=cp.tree_size, new_size=alone["tree_size"], proof=[], old_root=cp.root, new_root=bytes.fromhex(alone["root"]))
    # An older checkpoint, still inside the remaining log, agrees with it.
    older = ledger.checkpoint_file(5, tmp_path / "older.txt")
    assert verify(ledger, url, "--trusted-checkpoint", str(older))[0] == 0


def test_rewritten_tail_is_a_fork_against_a_saved_checkpoint(ledger: Ledger, tmp_path: Path) -> None:
    saved = ledger.checkpoint_file(6, tmp_path / "saved.txt")
    url = _cut_tail(ledger)
    # Whoever holds the ledger key seals other entries in place of block 6, and more.
    store = Store.open(ledger_settings(ledger.data, url))
    try:
        _seal(Sealer(store, signing_key=ledger.ledger_key), [register(ledger.admin, Member(f"x{i}"), ["buyer"]) for i in range(6)])
    finally:
        store.dispose()

    code, out = verify(ledger, url)
    assert (code, out["ok"], out["tree_size"], out["blocks"]) == (0, True, 33, 7)
    code, out = verify(ledger, url, "--trusted-checkpoint", str(saved))
    assert code == 1
    assert {k: out.get(k) for k in ("reason", "height", "index", "tree_size")} == {"reason": "fork", "height": 6, "index": None, "tree_size": 31}


def test_trusted_checkpoint_of_another_ledger_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    other = tmp_path / "other"
    url = ledger.dbs.new("other")
    init_ledger(ledger_settings(other, url), origin=ORIGIN, admin="admin", admin_name="Other admin")
    code, out = verify(ledger, url, "--save-checkpoint", str(tmp_path / "other.txt"))
    assert code == 0
    code, out = verify(ledger, ledger.url, "--trusted-checkpoint", str(tmp_path / "other.txt"))
    assert code == 1
    assert (out["reason"], out["height"], out["cause"]) == ("trusted_checkpoint", 0, "no_trusted_signature")


@pytest.mark.parametrize(
    "content",
    ["", "not a checkpoint\n", f"{ORIGIN}\n31\nAAAA\n\n— x y\n", f"{ORIGIN}\n31\n" + "A" * 43 + "=\n"],
    ids=["empty", "one-line", "short-root", "unsigned"],
)
def test_malformed_trusted_checkpoint_is_a_usage_error(ledger: Ledger, tmp_path: Path, content: str) -> None:
    path = tmp_path / "cp.txt"
    path.write_text(content, encoding="utf-8")
    code, out = verify(ledger, ledger.url, "--trusted-checkpoint", str(path))
    assert code == 2
    assert out["code"] in ("malformed_note", "configuration_error")


def test_saved_checkpoint_advances_as_the_ledger_grows(ledger: Ledger, tmp_path: Path) -> None:
    url = ledger.copy()
    state = tmp_path / "seen.txt"
    ledger.checkpoint_file(3, state)
    code, out = verify(ledger, url, "--trusted-checkpoint", str(state), "--save-checkpoint", str(state))
    assert (code, out["trusted_checkpoint_size"]) == (0, 17)
    assert state.read_text() == ledger.checkpoints[6]
    code, out = verify(ledger, url, "--trusted-checkpoint", str(state), "--save-checkpoint", str(state))
    assert (code, out["trusted_checkpoint_size"]) == (0, 31)


def test_damaged_sqlite_file_is_a_failed_verification(tmp_path: Path) -> None:
    data, url = tmp_path / "data", f"sqlite:///{tmp_path / 'f.db'}"
    assert run([*on(data, url), "demo"]).exit_code == 0
    damaged = tmp_path / "damaged.db"
    copy_sqlite(tmp_path / "f.db", damaged)
    raw = bytearray(damaged.read_bytes())
    page = 4096
    assert len(raw) > 3 * page
    for start in range(page, len(raw), page):  # every b-tree page but the schema's
        raw[start] = 0xFF
    damaged.write_bytes(bytes(raw))

    result = run([*on(data, f"sqlite:///{damaged}"), "verify", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["code"], out["reason"], out["height"]) == ("chain_broken", "storage", None)


# --- `filiera export` of a damaged database ----------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["intact", "null", "empty", "blob"])
def test_export_refuses_when_neither_the_genesis_entry_nor_block_0_names_the_ledger(ledger: Ledger, tmp_path: Path, checkpoint: str) -> None:
    """The bundle's header needs the ledger's origin: from the genesis entry or, when that is
    unreadable, from block 0's checkpoint. With both damaged the export refuses, as it does for
    a missing block (exit 2, a stable code, nothing written), instead of crashing."""
    url = ledger.copy()
    if checkpoint == "null":
        allow_null(url, "blocks", "checkpoint")
    value = {"intact": None, "null": "NULL", "empty": "''", "blob": "CAST(checkpoint AS BLOB)"}[checkpoint]
    if checkpoint == "blob" and ledger.dbs.backend != "sqlite":
        pytest.skip("PostgreSQL's text column cannot hold a blob")
    with tampered(url) as conn:
        assert conn.exec_driver_sql("UPDATE entries SET leaf_data = '{\"not\": \"a genesis\"' WHERE idx = 0").rowcount == 1
        if value is not None:
            assert conn.exec_driver_sql(f"UPDATE blocks SET checkpoint = {value} WHERE height = 0").rowcount == 1
    out = tmp_path / "bundle.jsonl"
    result = run([*on(ledger.data, url), "export", "--out", str(out), "--json"])
    if checkpoint == "intact":
        # One damage alone: the checkpoint names the ledger, and the audit will name entry 0.
        assert result.exit_code == 0, result.stdout + result.stderr
        assert out.is_file()
        return
    assert result.exit_code == 2, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert (answer["ok"], answer["code"], answer["height"]) == (False, "storage_damaged", 0)
    assert "filiera verify" in answer["detail"]
    assert error_code(result.stderr) == "storage_damaged"
    assert "Traceback" not in result.stderr and str(tmp_path) not in result.stderr + result.stdout
    assert not out.exists()
