"""T2 edits of blocks and of the log's rows: a block column (with or without its hash
recomputed), a block moved or deleted, entries deleted, renumbered, swapped or replayed, a
forged entry (validly signed by a member, never sealed) appended or inserted, a Merkle node
flipped or deleted, the tail cut off, and a member's key swapped in the derived tables."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, text

from ledger.encoding import format_time, parse_time
from ledger.entries import Envelope, parse_envelope, sign_payload
from ledger.keys import SigningKey

from ..factories import ORIGIN, payload
from .tamper_edits import (
    ENTRY_LEVEL,
    EXPORT_REFUSED,
    Edit,
    Kind,
    Where,
    at,
    at_block,
    block_only,
    both,
    flip_b64_bit,
    flip_char,
    flip_hex,
    insert_entry,
    other_char,
    pick_block,
    pick_entry,
    rehash,
    set_column,
    shift,
)
from .tamper_ledger import Base

__all__ = ["ROW_KINDS"]


def block_field(base: Base, rng: random.Random) -> Edit | None:
    """One column of a block row changed, nothing recomputed."""
    h = pick_block(base, rng)
    b = base.blocks[h]
    name = rng.choice(["prev", "time", "first_index", "tree_size", "root", "hash", "signature", "checkpoint"])
    if name in ("prev", "root", "hash"):
        value: Any = flip_hex(getattr(b, name), rng)
        w = at_block(h, "prev" if name == "prev" else "block_hash")
    elif name == "time":
        digits = [k for k, ch in enumerate(b.time) if ch.isdigit()]
        k = rng.choice(digits)
        value = b.time[:k] + other_char(b.time[k], rng) + b.time[k + 1 :]
        w = at_block(h, "block_hash", "header")  # an impossible date is a malformed header
    elif name == "first_index":
        value = b.first_index + rng.choice([d for d in (-2, -1, 1, 2) if b.first_index + d >= 0])
        w = at_block(h, "header" if value >= b.tree_size else "first_index")
    elif name == "tree_size":
        taken = {x.tree_size for x in base.blocks}
        value = rng.choice([b.tree_size + d for d in (-3, -2, -1, 1, 2, 3) if b.tree_size + d not in taken and b.tree_size + d >= 0] or [b.tree_size + 10_000])
        w = at_block(h, "header" if value <= b.first_index else "block_hash")
    elif name == "signature":
        value = flip_b64_bit(b.signature, rng)
        w = at_block(h, "block_signature")
    else:
        lines = b.checkpoint.split("\n")
        k = rng.randrange(len(lines) - 1)  # the note ends with a newline
        lines[k] = flip_char(lines[k], rng) if lines[k] else "x"
        value = "\n".join(lines)
        w = at_block(h, "checkpoint")
    if value == getattr(b, name):
        return None
    return Edit(f"block-{name.replace('_', '-')}", f"block {h}: {name} {getattr(b, name)!r} -> {value!r}", lambda c: set_column(c, "blocks", "height", h, **{name: value}), w, both(w))


def block_rehashed(base: Base, rng: random.Random) -> Edit | None:
    """A header field changed and the stored hash recomputed to match (the ledger's signature
    then fails, unless a link or the root does first)."""
    h = pick_block(base, rng, first=1)
    b = base.blocks[h]
    name = rng.choice(["time-later", "time-backwards", "root", "prev"])
    if name == "time-later":
        changes = {"time": format_time(parse_time(b.time, field="time") + timedelta(seconds=rng.randint(1, 3600)))}
        w = at_block(h, "block_signature")
    elif name == "time-backwards":
        before = parse_time(base.blocks[h - 1].time, field="time")
        changes = {"time": format_time(before - timedelta(seconds=rng.randint(1, 3600)))}
        w = at_block(h, "time")
    elif name == "root":
        changes = {"root": flip_hex(b.root, rng)}
        w = at_block(h, "root")
    else:
        changes = {"prev": flip_hex(b.prev, rng)}
        w = at_block(h, "prev")
    new_hash = rehash(b, **changes)
    return Edit(f"block-rehashed-{name}", f"block {h}: {changes}, hash recomputed", lambda c: set_column(c, "blocks", "height", h, hash=new_hash, **changes), w, both(w))


def block_moved(base: Base, rng: random.Random) -> Edit | None:
    h = pick_block(base, rng)
    w = at_block(h, "missing_block")
    audit = (EXPORT_REFUSED,) if h == 0 else both(w)
    return Edit("block-height", f"block {h}: height -> {h + 100_000}", lambda c: set_column(c, "blocks", "height", h, height=h + 100_000), w, audit)


def block_deleted(base: Base, rng: random.Random) -> Edit | None:
    h = pick_block(base, rng)

    def sql(c: Connection) -> None:
        c.execute(text("DELETE FROM blocks WHERE height = :h"), {"h": h})

    if h == len(base.blocks) - 1:
        # Without its last block the log is a shorter valid log: verify sees the entries no
        # block seals any more; the audit's bundle ends before them, so only a checkpoint
        # saved before the edit shows what is gone.
        first = base.blocks[h].first_index
        w = Where(None, first, frozenset({"unsealed_entry"}), base.rows[first].id)
        return Edit("block-deleted-last", f"block {h} (the last) deleted", sql, w, both(at_block(h, "truncated")), trusted=True)
    w = at_block(h, "missing_block")
    return Edit("block-deleted", f"block {h} deleted", sql, w, (EXPORT_REFUSED,) if h == 0 else both(w))


def entry_deleted(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    w = Where(base.height_of(i), i, frozenset({"missing_entry"}), None)

    def sql(c: Connection) -> None:
        c.execute(text("DELETE FROM entries WHERE idx = :i"), {"i": i})

    return Edit("entry-deleted", f"entry {i} deleted", sql, w, both(w))


def entry_deleted_renumbered(base: Base, rng: random.Random) -> Edit | None:
    """An entry deleted and the later ones renumbered to close the gap."""
    i = pick_entry(base, rng, first=1)
    if i == base.size - 1:
        return None
    nxt = base.rows[i + 1].id
    w = at(base, i, {"rule", "signature", "merkle_node", "entry_columns"}, entry=nxt)

    def sql(c: Connection) -> None:
        c.execute(text("DELETE FROM entries WHERE idx = :i"), {"i": i})
        shift(c, i + 1, -1)

    audit = block_only(base, i, Where(w.height, i, ENTRY_LEVEL, nxt))
    if w.height == len(base.blocks) - 1:
        # The last block has lost an entry: the audit meets its empty last place.
        audit = (*audit, Where(w.height, base.size - 1, frozenset({"missing_entry"}), None))
    return Edit("entry-deleted-renumbered", f"entry {i} deleted, later entries renumbered", sql, w, audit)


def entries_swapped(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng)
    block = base.block_range(base.height_of(i))
    k = rng.randrange(i + 1, block.stop) if rng.random() < 0.5 and i + 1 < block.stop else rng.randrange(i + 1, base.size) if i + 1 < base.size else None
    if k is None:
        return None
    moved = base.rows[k].id
    w = at(base, i, {"rule", "signature", "merkle_node", "entry_columns"}, entry=moved)

    def sql(c: Connection) -> None:
        c.execute(text("UPDATE entries SET idx = -1 WHERE idx = :a"), {"a": i})
        c.execute(text("UPDATE entries SET idx = :a WHERE idx = :b"), {"a": i, "b": k})
        c.execute(text("UPDATE entries SET idx = :b WHERE idx = -1"), {"b": k})

    return Edit("entries-swapped", f"entries {i} and {k} swapped", sql, w, block_only(base, i, Where(w.height, i, ENTRY_LEVEL, moved)))


def entry_duplicated(base: Base, rng: random.Random) -> Edit | None:
    """A copy of an earlier entry replayed at ``i``: inserted there (later ones renumbered),
    or written over entry ``i``."""
    i = pick_entry(base, rng, first=1)
    j = rng.randrange(0, i)
    src = base.rows[j]
    w = at(base, i, {"rule"}, entry=src.id)  # a second genesis too: genesis_misplaced
    if rng.random() < 0.5:
        def sql(c: Connection) -> None:
            shift(c, i, 1)
            insert_entry(c, i, base.height_of(i), src.leaf_data, src.id, src.leaf_hash)

        return Edit("entry-duplicated", f"entry {j} replayed at {i} (later ones renumbered)", sql, w, both(w), unique_off=True)

    def overwrite(c: Connection) -> None:
        c.execute(
            text("UPDATE entries SET id = :id, leaf_hash = :lh, leaf_data = :d, type = :t, author = :a, nonce = :n WHERE idx = :i"),
            {"id": src.id, "lh": src.leaf_hash, "d": src.leaf_data, "t": src.type, "a": src.author, "n": json.loads(src.leaf_data)["payload"]["nonce"], "i": i},
        )

    return Edit("entry-duplicated-over", f"entry {j} written over entry {i}", overwrite, w, both(w), unique_off=True)


def _forged(base: Base, index: int, rng: random.Random) -> tuple[str, Envelope] | None:
    """A key.add a member could sign at ``index`` (a valid entry there), never sealed."""
    spans = [s for s in base.spans if s.valid_at(index) and s.member != "admin"]
    if not spans:
        return None
    span = rng.choice(spans)
    new = SigningKey.generate()
    # Dated as the block it lands in, as a careful forger would: a later signing time is
    # refused by the rules (time_in_future) and would give the insertion away.
    when = base.blocks[base.height_of(index) if index < base.size else -1].time
    p = payload("key.add", span.member, participant=span.member, public_key=new.public_key.b64)
    p["time"] = when
    env = parse_envelope(sign_payload(p, [(span.member, span.key), (span.member, new)]), origin=ORIGIN)
    return span.member, env


def forged_appended(base: Base, rng: random.Random) -> Edit | None:
    n = base.size
    forged = _forged(base, n, rng)
    if forged is None:
        return None
    member, env = forged
    w = Where(None, n, frozenset({"unsealed_entry"}), env.id)

    def sql(c: Connection) -> None:
        insert_entry(c, n, len(base.blocks), env.leaf_data.decode(), env.id, env.leaf_hash.hex())

    return Edit("forged-appended", f"a key.add signed by {member} stored at {n}, past the last block", sql, w, None)


def forged_inserted(base: Base, rng: random.Random) -> Edit | None:
    i = pick_entry(base, rng, first=1)
    forged = _forged(base, i, rng)
    if forged is None:
        return None
    member, env = forged
    h = base.height_of(i)
    w = at(base, i, {"merkle_node"}, entry=env.id)

    def sql(c: Connection) -> None:
        shift(c, i, 1)
        insert_entry(c, i, h, env.leaf_data.decode(), env.id, env.leaf_hash.hex())

    return Edit("forged-inserted", f"a key.add signed by {member} inserted at {i} (later ones renumbered)", sql, w, (Where(h, None, frozenset({"root"}), None),))


def projection_key(base: Base, rng: random.Random) -> Edit | None:
    """A member's key swapped for another in the participant_keys table (what signed reads
    and intake trust), the log untouched."""
    span = rng.choice(base.spans)
    other = rng.choice([s.key.public_key.b64 for s in base.spans if s is not span] + [SigningKey.generate().public_key.b64])
    w = Where(None, None, frozenset({"projection"}), None)

    def sql(c: Connection) -> None:
        c.execute(text("UPDATE participant_keys SET public_key = :pk WHERE key_id = :k"), {"pk": other, "k": span.key_id})

    return Edit("projection-key-swapped", f"key {span.key_id} of {span.member}: public key swapped in participant_keys", sql, w, None)


def _node_leaf(level: int, idx: int) -> int:
    """The leaf whose append completes node (level, idx): where verify meets it."""
    return ((idx + 1) << level) - 1


def merkle_node(base: Base, rng: random.Random) -> Edit | None:
    level, idx = rng.choice(base.nodes)
    k = _node_leaf(level, idx)
    w = at(base, k, {"merkle_node"})
    if rng.random() < 0.5:
        def flip(c: Connection) -> None:
            old = c.execute(text("SELECT hash FROM merkle_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx}).scalar_one()
            pos = rng.randrange(32)
            new = bytes(old[:pos]) + bytes([old[pos] ^ (1 << rng.randrange(8))]) + bytes(old[pos + 1 :])
            c.execute(text("UPDATE merkle_nodes SET hash = :h WHERE level = :l AND idx = :i"), {"h": new, "l": level, "i": idx})

        return Edit("merkle-node-bit", f"Merkle node ({level}, {idx}): a bit flipped", flip, w, None)

    def delete(c: Connection) -> None:
        c.execute(text("DELETE FROM merkle_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx})

    return Edit("merkle-node-deleted", f"Merkle node ({level}, {idx}) deleted", delete, w, None)


def truncated(base: Base, rng: random.Random) -> Edit | None:
    """The tail cut off from block ``h`` on, with the Merkle nodes those entries completed.
    Only a checkpoint saved before shows it."""
    h = pick_block(base, rng, first=1)
    size = base.blocks[h].first_index
    w = at_block(h, "truncated")

    def sql(c: Connection) -> None:
        c.execute(text("DELETE FROM blocks WHERE height >= :h"), {"h": h})
        c.execute(text("DELETE FROM entries WHERE idx >= :s"), {"s": size})
        for level, idx in base.nodes:
            if (idx + 1) << level > size:
                c.execute(text("DELETE FROM merkle_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx})

    return Edit("truncated", f"blocks {h}.. and entries {size}.. cut off", sql, w, both(w), trusted=True)


ROW_KINDS: dict[str, Kind] = {
    "block-field": block_field,
    "block-rehashed": block_rehashed,
    "block-height": block_moved,
    "block-deleted": block_deleted,
    "entry-deleted": entry_deleted,
    "entry-deleted-renumbered": entry_deleted_renumbered,
    "entries-swapped": entries_swapped,
    "entry-duplicated": entry_duplicated,
    "forged-appended": forged_appended,
    "forged-inserted": forged_inserted,
    "merkle-node": merkle_node,
    "truncated": truncated,
    "projection-key": projection_key,
}
