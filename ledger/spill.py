"""A scratch store for the replayed state of a long log, so that memory stays bounded.

The offline audit and ``filiera verify`` replay the whole log into a :class:`~ledger.state.LedgerState`. For a few thousand
entries that fits in memory; for millions it does not (about a kilobyte per entry: lots,
handoffs, contracts, used nonces). :class:`SpillSource` is a ``StateSource`` over a private,
temporary SQLite file (the standard library's sqlite3: scratch data, written without fsync and
deleted at the end): whenever the state in memory grows past a budget, what changed is written
to it and memory is cleared; the rules then load records back on first use, exactly as sealing
loads them from the ledger's database. The audit keeps participants and keys, used by every
entry, in memory; ``filiera verify`` spills them too (``keep=()``): a ledger of many members
holds as many of them as of lots. After a last :meth:`SpillSource.absorb`, :meth:`SpillSource.records` gives every
record the replay changed, in code-point order of its key (what ``filiera verify`` compares
with the stored projection).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .state import KINDS, LedgerState, Policy

__all__ = ["SpillSource", "DEFAULT_BUDGET"]

# Records, nonces and entry ids held in memory before spilling: about 100 MB of Python objects.
DEFAULT_BUDGET = 100_000

_SCHEMA = """
CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE nonces (digest BLOB PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE entries (digest BLOB PRIMARY KEY);
"""
_CHUNK = 500


def _digest(text: str) -> bytes:
    # The same 16-byte digests LedgerState keys its nonce and entry maps with.
    return hashlib.sha256(text.encode()).digest()[:16]


class SpillSource:
    """A LedgerState source on a scratch SQLite file in ``directory`` (default: the system's
    temporary directory). Call :meth:`close` to delete it."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        budget: int = DEFAULT_BUDGET,
        prefix: str = "filiera-audit-",
        keep: Sequence[str] = ("participant", "key"),
    ) -> None:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".sqlite", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self.budget = budget
        # Kinds left in memory when the rest spills (the audit's signature workers read the keys).
        self.keep = tuple(keep)
        self.policy: Policy | None = None
        self.spills = 0
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=MEMORY;" + _SCHEMA)

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    # --- StateSource ------------------------------------------------------------------------

    def load_policy(self) -> Policy | None:
        return self.policy

    def load(self, kind: str, key: str) -> Any | None:
        row = self._db.execute("SELECT data FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return pickle.loads(row[0]) if row else None

    def load_many(self, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for i in range(0, len(keys), _CHUNK):
            part = list(keys[i : i + _CHUNK])
            marks = ",".join("?" * len(part))
            for key, data in self._db.execute(
                f"SELECT key, data FROM records WHERE kind = ? AND key IN ({marks})", (kind, *part)
            ):
                found[key] = pickle.loads(data)
        return found

    def load_nonce(self, author: str, nonce: str) -> str | None:
        row = self._db.execute("SELECT entry FROM nonces WHERE digest = ?", (_digest(f"{author}\x00{nonce}"),)).fetchone()
        return str(row[0]) if row else None

    def load_nonces(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {p: e for p in pairs if (e := self.load_nonce(*p)) is not None}

    def load_entry_exists(self, entry_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE digest = ?", (_digest(entry_id),)).fetchone() is not None

    # --- spilling -------------------------------------------------------------------------------

    def absorb(self, state: LedgerState) -> None:
        """Write what ``state`` changed, then clear its memory (but the kinds in ``keep``)."""
        self.policy = state.get_policy()
        db = self._db
        db.execute("BEGIN")
        for kind in KINDS:
            db.executemany(
                "INSERT OR REPLACE INTO records (kind, key, data) VALUES (?, ?, ?)",
                [(kind, rec.ident, pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)) for rec in state.changed(kind)],
            )
        nonces, entries = state.fresh_used()
        db.executemany("INSERT OR IGNORE INTO nonces (digest, entry) VALUES (?, ?)", nonces)
        db.executemany("INSERT OR IGNORE INTO entries (digest) VALUES (?)", [(e,) for e in entries])
        db.execute("COMMIT")
        state.evict(keep=self.keep)
        self.spills += 1

    def maybe_absorb(self, state: LedgerState) -> None:
        if state.in_memory() > self.budget:
            self.absorb(state)

    # --- whole-state reads and writes, for snapshots -------------------------------------------

    def records(self, kind: str) -> Iterator[Any]:
        for (data,) in self._db.execute("SELECT data FROM records WHERE kind = ? ORDER BY key", (kind,)):
            yield pickle.loads(data)

    def nonces(self) -> Iterator[tuple[bytes, str]]:
        yield from self._db.execute("SELECT digest, entry FROM nonces ORDER BY digest")

    def entry_digests(self) -> Iterator[bytes]:
        for (digest,) in self._db.execute("SELECT digest FROM entries ORDER BY digest"):
            yield digest

    def put_records(self, kind: str, records: Sequence[Any]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO records (kind, key, data) VALUES (?, ?, ?)",
            [(kind, rec.ident, pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)) for rec in records],
        )

    def put_nonces(self, pairs: Sequence[tuple[bytes, str]]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO nonces (digest, entry) VALUES (?, ?)", pairs)

    def put_entries(self, digests: Sequence[bytes]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO entries (digest) VALUES (?)", [(d,) for d in digests])
