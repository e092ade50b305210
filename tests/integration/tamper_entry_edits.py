"""T2 edits of one entry's row: its payload, its leaf's bytes, a signature, a key reference,
a signer, the stored leaf hash and id, a public key it registers, the whole entry re-signed by
another member, and the columns the entries table keeps beside the leaf."""

from __future__ import annotations

import random
import secrets
import string
from typing import Any

from sqlalchemy import Connection, text

from ledger.entries import parse_envelope, sign_payload
from ledger.keys import SigningKey

from ..factories import ORIGIN
from .tamper_edits import (
    Edit,
    Kind,
    at,
    both,
    flip_b64_bit,
    flip_char,
    flip_hex,
    pick_entry,
    set_column,
    set_leaf,
    sort_signatures,
    strings,
)
from .tamper_ledger import Base

__all__ = ["ENTRY_KINDS"]


def payload_char(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    obj = base.rows[i].leaf()
    container, key, path = rng.choice(strings(obj["payload"]))
    old = container[key]
    container[key] = new = flip_char(old, rng)
    w = at(base, i, {"payload", "leaf_data"})
    return Edit("payload-char", f"entry {i}: payload{path} {old!r} -> {new!r}", lambda c: set_leaf(c, i, obj), w, both(w))


def leaf_byte(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    leaf = base.rows[i].leaf_data
    pos = rng.randrange(len(leaf))
    new = leaf[:pos] + rng.choice((string.ascii_letters + string.digits + '"{}[],: \\').replace(leaf[pos], "")) + leaf[pos + 1 :]
    w = at(base, i, {"leaf_data", "payload", "signature", "rule"})

    def sql(c: Connection) -> None:
        c.execute(text("UPDATE entries SET leaf_data = :d WHERE idx = :i"), {"d": new, "i": i})

    return Edit("leaf-byte", f"entry {i}: leaf byte {pos} {leaf[pos]!r} -> {new[pos]!r}", sql, w, both(w))


def signature_bit(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    obj = base.rows[i].leaf()
    sig = rng.choice(obj["signatures"])
    sig["sig"] = flip_b64_bit(sig["sig"], rng)
    w = at(base, i, {"signature"})
    return Edit("signature-bit", f"entry {i}: a bit of {sig['signer']}'s signature", lambda c: set_leaf(c, i, obj), w, both(w))


def key_reference(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    obj = base.rows[i].leaf()
    sig = rng.choice(obj["signatures"])
    used = {s["key_id"] for s in obj["signatures"]}
    choices = [s.key_id for s in base.spans if s.key_id not in used] + [SigningKey.generate().public_key.key_id]
    old, sig["key_id"] = sig["key_id"], rng.choice(choices)
    sort_signatures(obj)
    w = at(base, i, {"signature", "rule"})
    return Edit("key-reference", f"entry {i}: {sig['signer']}'s key_id {old} -> {sig['key_id']}", lambda c: set_leaf(c, i, obj), w, both(w))


def signer_renamed(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    obj = base.rows[i].leaf()
    sig = rng.choice(obj["signatures"])
    pairs = {(s["signer"], s["key_id"]) for s in obj["signatures"]}
    choices = [m for m in {s.member for s in base.spans} | {"ghost"} if m != sig["signer"] and (m, sig["key_id"]) not in pairs]
    old, sig["signer"] = sig["signer"], rng.choice(sorted(choices))
    sort_signatures(obj)
    w = at(base, i, {"signature", "rule"})
    return Edit("signer-renamed", f"entry {i}: signer {old} -> {sig['signer']}", lambda c: set_leaf(c, i, obj), w, both(w))


def leaf_hash(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    new = flip_hex(base.rows[i].leaf_hash, rng)
    w = at(base, i, {"leaf_hash"})
    return Edit("leaf-hash", f"entry {i}: leaf_hash column", lambda c: set_column(c, "entries", "idx", i, leaf_hash=new), w, both(w))


def entry_id(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    new = flip_hex(base.rows[i].id, rng)
    w = at(base, i, {"entry_id"}, entry=new)
    return Edit("entry-id", f"entry {i}: id column", lambda c: set_column(c, "entries", "idx", i, id=new), w, both(w))


def _key_fields(obj: dict[str, Any]) -> list[tuple[Any, Any, str]]:
    """Every public key an entry's payload carries."""
    return [(c, k, p) for c, k, p in strings(obj["payload"]) if k in ("public_key", "ledger_key")]


def key_swapped(base: Base, rng: random.Random) -> Edit | None:
    """A public key in a registration, key.add or genesis replaced by the forger's; with
    ``rehashed``, the stored id and leaf hash made to match (the signatures then fail)."""
    carriers = [r.idx for r in base.rows if _key_fields(r.leaf())]
    i = rng.choice(carriers)
    obj = base.rows[i].leaf()
    container, key, path = rng.choice(_key_fields(obj))
    container[key] = SigningKey.generate().public_key.b64
    if rng.random() < 0.5:
        w = at(base, i, {"payload"})
        return Edit("key-swapped", f"entry {i}: payload{path} replaced", lambda c: set_leaf(c, i, obj), w, both(w))
    env = parse_envelope(obj, origin=None)
    w = at(base, i, {"signature", "rule"}, entry=env.id)

    def sql(c: Connection) -> None:
        set_leaf(c, i, obj, id=env.id, leaf_hash=env.leaf_hash.hex())

    return Edit("key-swapped-rehashed", f"entry {i}: payload{path} replaced, id and leaf hash recomputed", sql, w, both(w))


def resigned(base: Base, rng: random.Random) -> Edit | None:
    """A modified entry re-signed by another member, with a valid key of its own where it
    has one at that position; id and leaf hash recomputed."""
    i = pick_entry(base, rng, first=1)
    obj = base.rows[i].leaf()
    signers = {s["signer"] for s in obj["signatures"]}
    others = [s for s in base.spans if s.member not in signers]
    valid = [s for s in others if s.valid_at(i)]
    span = rng.choice(valid or others)
    obj["payload"]["nonce"] = secrets.token_urlsafe(18)
    env = parse_envelope(sign_payload(obj["payload"], [(span.member, span.key)]), origin=ORIGIN)
    w = at(base, i, {"rule", "signature"}, entry=env.id)

    def sql(c: Connection) -> None:
        c.execute(
            text("UPDATE entries SET leaf_data = :d, id = :id, leaf_hash = :lh, nonce = :n WHERE idx = :i"),
            {"d": env.leaf_data.decode(), "id": env.id, "lh": env.leaf_hash.hex(), "n": env.nonce, "i": i},
        )

    return Edit("resigned-by-another-member", f"entry {i}: new nonce, signed by {span.member} only", sql, w, both(w))


def entry_column(base: Base, rng: random.Random) -> Edit | None:
    """A column the entries table keeps beside the leaf (its block, type, author, nonce):
    the API serves the height from it and intake looks nonces up in it."""
    i = pick_entry(base, rng)
    row = base.rows[i]
    name = rng.choice(["height", "type", "author", "nonce"])
    if name == "height":
        value: Any = rng.choice([h for h in range(len(base.blocks)) if h != row.height])
    elif name == "type":
        value = rng.choice(sorted({r.type for r in base.rows} - {row.type}))
    elif name == "author":
        value = rng.choice(sorted({s.member for s in base.spans} - {row.author}))
    else:
        value = secrets.token_urlsafe(18)
    w = at(base, i, {"entry_columns"})
    return Edit(f"entry-column-{name}", f"entry {i}: {name} column -> {value!r}", lambda c: set_column(c, "entries", "idx", i, **{name: value}), w, None)


ENTRY_KINDS: dict[str, Kind] = {
    "payload-char": payload_char,
    "leaf-byte": leaf_byte,
    "signature-bit": signature_bit,
    "key-reference": key_reference,
    "signer-renamed": signer_renamed,
    "leaf-hash": leaf_hash,
    "entry-id": entry_id,
    "key-swapped": key_swapped,
    "resigned": resigned,
    "entry-column": entry_column,
}
