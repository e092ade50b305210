"""The facts projection from the log alone: compared with the stored one (``filiera verify``)
or written afresh (``filiera facts rebuild``).

Both replay the log through :func:`ledger.verify.verify_chain`, whose ``on_block`` hook hands
each verified block and the state after it to :func:`ledger.facts.derive_block`, the function
sealing uses, with a :class:`~ledger.facts_state.FactsState` that starts empty. The stored
facts are read back a range of log positions at a time, so memory holds a page of facts (and,
as the replayed ledger state does, one trace per lot).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection, select

from ..entries import Envelope
from ..errors import ChainBroken
from ..facts import KINDS, Fact, derive_block
from ..facts_state import FactsState
from ..state import LedgerState
from . import facts as fs
from . import schema as t
from .store import Store

__all__ = ["FactsCheck", "FactsRebuild"]

# Facts derived before they are compared with (or written to) the store.
_PAGE = 5000


def _broken(detail: str, **facts: object) -> ChainBroken:
    return ChainBroken(detail, reason="facts", height=None, index=None, entry=None, **facts)


class FactsCheck:
    """Compare the stored facts with those the replayed log makes. Raises ChainBroken with
    ``reason`` ``facts`` naming the first fact (kind, cursor) or record that differs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.state = FactsState()
        self.pending: list[Fact] = []
        self.start = 0  # facts at positions below this were compared
        self.end = 0  # the tree size of the last block replayed
        self.used = False

    def on_block(self, height: int, tree_size: int, sealed: Sequence[tuple[int, Envelope]], state: LedgerState) -> None:
        self.used = True
        self.pending.extend(derive_block(state, self.state, sealed, tree_size=tree_size))
        self.end = tree_size
        if len(self.pending) >= _PAGE:
            self._compare()

    def _compare(self) -> None:
        with self.store.read() as conn:
            stored = sorted(
                (f for kind in KINDS for f in fs.facts_in_range(conn, kind, self.start, self.end)),
                key=lambda f: (f.index, f.seq),
            )
        derived = sorted(self.pending, key=lambda f: (f.index, f.seq))
        by_pos = {(f.index, f.seq): f for f in stored}
        for f in derived:
            got = by_pos.pop((f.index, f.seq), None)
            if got is None:
                raise _broken(
                    f"the {f.kind} fact at {f.cursor} (log index {f.index}) is missing from "
                    f"{t.FACT_TABLES[f.kind]}; run `filiera facts rebuild`",
                    kind=f.kind, cursor=f.cursor,
                )
            if got != f:
                fields = sorted(k for k in f.values if f.values[k] != got.values.get(k))
                if got.kind != f.kind:
                    fields = ["kind"]
                elif (got.tree_size, got.entries, got.day) != (f.tree_size, f.entries, f.day):
                    fields = [n for n, a, b in (("tree_size", got.tree_size, f.tree_size), ("entries", got.entries, f.entries), ("day", got.day, f.day)) if a != b] + fields
                raise _broken(
                    f"the {f.kind} fact at {f.cursor} says {', '.join(fields)} other than the log",
                    kind=f.kind, cursor=f.cursor, field=fields[0] if fields else None,
                )
        if by_pos:
            extra = min(by_pos.values(), key=lambda f: (f.index, f.seq))
            raise _broken(
                f"{t.FACT_TABLES[extra.kind]} holds a fact at {extra.cursor} that the log does not make",
                kind=extra.kind, cursor=extra.cursor,
            )
        self.pending.clear()
        self.start = self.end

    def finish(self) -> None:
        """Compare what is left, facts past the log's end, and the derivation's memory.
        Does nothing if no block was replayed through :meth:`on_block`."""
        if not self.used:
            return
        self._compare()
        with self.store.read() as conn:
            for kind in KINDS:
                table = t.fact_tables[kind]
                stray = conn.execute(select(table.c.idx, table.c.seq).where(table.c.idx >= self.end).limit(1)).first()
                if stray is not None:
                    raise _broken(
                        f"{table.name} holds a fact at {stray.idx}.{stray.seq}, past the log's end at {self.end}",
                        kind=kind, cursor=f"{stray.idx}.{stray.seq}",
                    )
            # The stored side streams in key order: memory holds the replayed records only.
            with contextlib.closing(fs.stored_traces(conn)) as traces:
                _compare_records("lot trace", self.state.all_traces(), ((x.lot, x) for x in traces), "fact_lot_traces")
            with contextlib.closing(fs.stored_progress(conn)) as progress:
                _compare_records(
                    "contract progress", self.state.all_progress(), ((x.contract, x) for x in progress), "fact_contract_progress"
                )


def _compare_records(what: str, replayed: Mapping[str, object], stored: Iterable[tuple[str, object]], table: str) -> None:
    """Raise at the first key, in sorted order, whose record differs; ``stored`` comes sorted
    by key (a key repeated counts once)."""
    mine, theirs = iter(sorted(replayed)), iter(stored)
    a, b = next(mine, None), next(theirs, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a < b[0]):
            assert a is not None
            raise _broken(f"{what} {a} is missing from {table}", kind=table, record=a)
        if a is None or b[0] < a:
            raise _broken(f"{what} {b[0]} is not in the log but in {table}", kind=table, record=b[0])
        if replayed[a] != b[1]:
            raise _broken(f"{what} {a} is wrong in {table}", kind=table, record=a)
        key = a
        a = next(mine, None)
        while b is not None and b[0] == key:
            b = next(theirs, None)


class FactsRebuild:
    """Write the facts the replayed log makes into ``conn`` (a transaction holding the append
    lock, whose projection tables were emptied), a page at a time; :meth:`finish` writes the
    traces and contract progress."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.state = FactsState()
        self.pending: list[Fact] = []
        self.written = 0

    def on_block(self, height: int, tree_size: int, sealed: Sequence[tuple[int, Envelope]], state: LedgerState) -> None:
        self.pending.extend(derive_block(state, self.state, sealed, tree_size=tree_size))
        if len(self.pending) >= _PAGE:
            self._flush()

    def _flush(self) -> None:
        fs.write_facts(self.conn, self.pending)
        self.written += len(self.pending)
        self.pending.clear()

    def finish(self) -> int:
        """Write what is left. Returns the number of facts written."""
        self._flush()
        fs.write_state(self.conn, self.state.all_traces().values(), self.state.all_progress().values())
        return self.written
