"""What the T2 tamper suite's edits are made of: an edit (SQL and the answers each check
must give), where a failure is named, SQL on a copy, and small changes of values.

An edit is SQL run on a copy whose append-only triggers are gone, as by someone with write
access to the database. Each kind (tamper_entry_edits.py, tamper_row_edits.py) makes one edit
of one row, or one move of rows (a swap, an insertion or deletion that renumbers the rest).
What a check must report is worked out from the ledger's layout alone (which block holds which
entry, which key may sign where), never by running the code under test.

``verify`` reads the database: the Merkle nodes stored with the leaves name a moved entry
exactly. The audit reads a bundle exported from the database, which carries blocks and
entries but no Merkle nodes: a valid entry moved or inserted inside a block shows only as that
block's root, unless the move breaks a rule first; those kinds list the block-level answers
the audit may give (``block_only``). Edits of what no bundle carries (Merkle nodes, rows no
block seals, the derived tables) leave the bundle unchanged: the audit must then pass.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from ledger import jcs
from ledger.blocks import BlockHeader

from ..factories import ORIGIN
from .tamper_ledger import Base

__all__ = [
    "ANY", "EXPORT_REFUSED", "ENTRY_LEVEL", "GENESIS", "Where", "Edit", "Kind",
    "set_leaf", "set_column", "shift", "insert_entry", "drop_unique",
    "other_char", "flip_char", "flip_hex", "flip_b64_bit", "strings", "sort_signatures", "rehash",
    "at", "at_block", "both", "block_only", "pick_entry", "pick_block",
]

ANY: Any = object()  # any entry id (or none) is right
EXPORT_REFUSED = "export_refused"  # the exporter cannot write a bundle at all
ENTRY_LEVEL = frozenset({"rule", "signature"})  # what an entry that breaks the rules is named for
_SHIFT = 1_000_000_000  # moves rows out of the way while renumbering (primary keys stay unique)


@dataclass(frozen=True)
class Where:
    """A failure: block ``height``, entry ``index`` (a range: any index in it), one of
    ``reasons``, naming entry id ``entry``."""

    height: int | None
    index: int | None | range
    reasons: frozenset[str]
    entry: Any = ANY

    def matches(self, failure: Mapping[str, Any]) -> bool:
        if failure.get("reason") not in self.reasons or failure.get("height") != self.height:
            return False
        index = failure.get("index")
        if isinstance(self.index, range):
            if index not in self.index:
                return False
        elif index != self.index:
            return False
        return self.entry is ANY or failure.get("entry") == self.entry

    def __str__(self) -> str:
        entry = "" if self.entry is ANY else f" entry={self.entry}"
        return f"block {self.height} index {self.index} reason {'|'.join(sorted(self.reasons))}{entry}"


Sql = Callable[[Connection], None]


@dataclass(frozen=True)
class Edit:
    """One edit: its SQL and what each check must report.

    ``audit``: the answers the audit may give, the exact one first (EXPORT_REFUSED: the
    exporter may refuse, with a clean error); None when the bundle is unchanged (the audit
    must pass).
    ``trusted``: check against the head's checkpoint saved before the edit (truncation).
    ``unique_off``: the unique constraints of ``entries`` are dropped first (a duplicate).
    """

    kind: str
    what: str
    sql: Sql
    verify: Where
    audit: tuple[Where | str, ...] | None
    trusted: bool = False
    unique_off: bool = False


# --- SQL on a tampered copy --------------------------------------------------------------


def set_leaf(conn: Connection, index: int, obj: Mapping[str, Any], **columns: Any) -> None:
    values = {"leaf_data": jcs.canonicalize(obj).decode("utf-8"), **columns}
    sets = ", ".join(f"{k} = :{k}" for k in values)
    conn.execute(text(f"UPDATE entries SET {sets} WHERE idx = :idx"), {**values, "idx": index})


def set_column(conn: Connection, table: str, key: str, value: int, **columns: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in columns)
    conn.execute(text(f"UPDATE {table} SET {sets} WHERE {key} = :key_"), {**columns, "key_": value})


def shift(conn: Connection, start: int, by: int) -> None:
    """Renumber entries from ``start`` on by ``by``, in two steps so that no two rows ever
    share an index."""
    conn.execute(text("UPDATE entries SET idx = idx + :s WHERE idx >= :start"), {"s": _SHIFT, "start": start})
    conn.execute(text("UPDATE entries SET idx = idx - :s + :by WHERE idx >= :s"), {"s": _SHIFT, "by": by})


def insert_entry(conn: Connection, index: int, height: int, leaf: str, entry_id: str, leaf_hash: str) -> None:
    env = json.loads(leaf)["payload"]
    conn.execute(
        text(
            "INSERT INTO entries (idx, id, height, type, author, nonce, leaf_hash, leaf_data) "
            "VALUES (:idx, :id, :height, :type, :author, :nonce, :lh, :ld)"
        ),
        {"idx": index, "id": entry_id, "height": height, "type": env["type"], "author": env["author"], "nonce": env["nonce"], "lh": leaf_hash, "ld": leaf},
    )


def drop_unique(conn: Connection) -> None:
    """Drop the unique constraints on entry ids and (author, nonce), as an attacker replaying
    a row would: PostgreSQL by name, SQLite by rebuilding the table without them."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE entries DROP CONSTRAINT uq_entries_id")
        conn.exec_driver_sql("ALTER TABLE entries DROP CONSTRAINT uq_entries_author_nonce")
        return
    conn.exec_driver_sql("ALTER TABLE entries RENAME TO entries_old")
    conn.exec_driver_sql(
        "CREATE TABLE entries (idx BIGINT NOT NULL PRIMARY KEY, id VARCHAR(64) NOT NULL, "
        "height BIGINT NOT NULL, type VARCHAR(64) NOT NULL, author VARCHAR(128) NOT NULL, "
        "nonce VARCHAR(64) NOT NULL, leaf_hash VARCHAR(64) NOT NULL, leaf_data TEXT NOT NULL)"
    )
    conn.exec_driver_sql("INSERT INTO entries SELECT * FROM entries_old")
    conn.exec_driver_sql("DROP TABLE entries_old")


# --- small value edits -------------------------------------------------------------------


def other_char(c: str, rng: random.Random) -> str:
    for alphabet in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
        if c in alphabet:
            return rng.choice(alphabet.replace(c, ""))
    return rng.choice(string.ascii_lowercase)


def flip_char(s: str, rng: random.Random) -> str:
    pos = rng.randrange(len(s))
    return s[:pos] + other_char(s[pos], rng) + s[pos + 1 :]


def flip_hex(s: str, rng: random.Random) -> str:
    pos = rng.randrange(len(s))
    return s[:pos] + rng.choice("0123456789abcdef".replace(s[pos], "")) + s[pos + 1 :]


def flip_b64_bit(s: str, rng: random.Random) -> str:
    raw = bytearray(base64.b64decode(s))
    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    return base64.b64encode(bytes(raw)).decode()


def strings(obj: Any, path: str = "") -> list[tuple[Any, Any, str]]:
    """(container, key, path) of every string in a JSON value."""
    found: list[tuple[Any, Any, str]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        if isinstance(v, str) and v:
            found.append((obj, k, f"{path}.{k}"))
        elif isinstance(v, (dict, list)):
            found.extend(strings(v, f"{path}.{k}"))
    return found


def sort_signatures(obj: dict[str, Any]) -> None:
    """Keep the leaf canonical (signatures in (signer, key_id) order), as a careful forger would."""
    obj["signatures"].sort(key=lambda s: (s["signer"], s["key_id"]))


def rehash(b: Any, **changes: Any) -> str:
    fields = {"ledger": ORIGIN, "height": b.height, "prev": b.prev, "time": b.time, "first_index": b.first_index, "tree_size": b.tree_size, "root": b.root}
    return BlockHeader(**{**fields, **changes}).hash()


# --- where a failure must be named -------------------------------------------------------


def at(base: Base, index: int, reasons: set[str] | frozenset[str], entry: Any = None) -> Where:
    return Where(base.height_of(index), index, frozenset(reasons), base.rows[index].id if entry is None else entry)


def at_block(height: int, *reasons: str) -> Where:
    return Where(height, None, frozenset(reasons), None)


# The exporter writes the bundle's header and every block header's ``ledger`` from the stored
# genesis entry: when that entry is edited it may refuse to export (a clean error, never a
# crash), or write headers that fail at block 0 before the audit reaches entry 0.
GENESIS = (Where(0, None, frozenset({"block_hash"}), None), EXPORT_REFUSED)


def both(w: Where) -> tuple[Where | str, ...]:
    """The audit names the same place as verify."""
    return (w, *GENESIS) if w.index == 0 else (w,)


def block_only(base: Base, index: int, exact: Where) -> tuple[Where | str, ...]:
    """The audit's answers for a valid entry moved to ``index``: the exact one if a rule breaks
    there, else the block's root, or a rule that breaks later in the same block."""
    h = base.height_of(index)
    end = base.block_range(h).stop
    answers = (exact, Where(h, None, frozenset({"root"}), None), Where(h, range(index + 1, end), ENTRY_LEVEL))
    return (*answers, *GENESIS) if index == 0 else answers


# --- what to edit ------------------------------------------------------------------------

Kind = Callable[[Base, random.Random], Edit | None]
"""Draws one edit of a kind from the ledger's layout; None if the kind cannot apply there."""


def pick_entry(base: Base, rng: random.Random, *, first: int = 0) -> int:
    """An entry index; one draw in five is an edge: genesis, the last entry, or the first or
    last entry of a block."""
    if rng.random() < 0.2:
        b = rng.choice(base.blocks)
        edges = [i for i in (0, base.size - 1, b.first_index, b.tree_size - 1) if i >= first]
        if edges:
            return rng.choice(edges)
    return rng.randrange(first, base.size)


def pick_block(base: Base, rng: random.Random, first: int = 0) -> int:
    """A block height; one draw in five is the first or the last block."""
    if rng.random() < 0.2:
        return rng.choice([h for h in (0, len(base.blocks) - 1) if h >= first] or [first])
    return rng.randrange(first, len(base.blocks))
