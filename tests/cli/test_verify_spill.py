"""`filiera verify --memory-budget`: a replayed state that spills to a scratch file gives the
same verdict as one held in memory.

The demo ledger (161 entries in 9 blocks, 48 lots) is verified with the default budget, under
which it never spills before the end, and with a budget of one record, under which the state
is written out and dropped after every block and the rules load every record back from the
scratch file. Both runs must print the same JSON, on the honest ledger and after each edit
below (each undone before the next): the log itself, the projection tables, the lineage edges,
participants and keys (all compared with the replayed records as two sorted streams).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from ledger.spill import SpillSource
from ledger.state import LedgerState

from ..conftest import Db
from ..tampering import tampered
from .conftest import on, run

EDGE = "child || '>' || parent"  # lot_lineage's key, as one value
# name -> (table, key column, how to pick the row, column, new value, expected reason)
EDITS: dict[str, tuple[str, str, str, str, Callable[[Any], Any], str]] = {
    "entry-payload-in-block-4": ("entries", "idx", "(SELECT first_index FROM blocks WHERE height = 4) + 1", "leaf_data", lambda v: v.replace('"nonce":"', '"nonce":"x', 1), "payload"),
    "last-lot-custodian": ("lots", "lot", "(SELECT max(lot) FROM lots)", "custodian", lambda v: "oleificio-sud" if v != "oleificio-sud" else "frantoio-bari", "projection"),
    "first-lot-renamed": ("lots", "lot", "(SELECT min(lot) FROM lots)", "lot", lambda v: "ZZZ-" + v, "projection"),
    "handoff-status": ("handoffs", "id", "(SELECT max(id) FROM handoffs)", "status", lambda v: "rejected" if v != "rejected" else "accepted", "projection"),
    "lineage-parent": ("lot_lineage", EDGE, f"(SELECT max({EDGE}) FROM lot_lineage)", "parent", lambda v: v + "-X", "projection"),
    "participant-name": ("participants", "id", "(SELECT max(id) FROM participants)", "name", lambda v: v + " (edited)", "projection"),
    "key-added-height": ("participant_keys", "key_id", "(SELECT min(key_id) FROM participant_keys)", "added_height", lambda v: v + 1, "projection"),
    # The facts check names the lot: the first one renamed is missing, the last one is wrong.
    "first-trace-renamed": ("fact_lot_traces", "lot", "(SELECT min(lot) FROM fact_lot_traces)", "lot", lambda v: "ZZZ-" + v, "facts"),
    "last-trace-hops": ("fact_lot_traces", "lot", "(SELECT max(lot) FROM fact_lot_traces)", "hops", lambda v: v + 5, "facts"),
}


def _verify(data: Path, url: str, *budget: str) -> tuple[int, dict[str, Any]]:
    result = run([*on(data, url), "verify", "--json", *budget])
    return result.exit_code, json.loads(result.stdout)


def _both(data: Path, url: str, absorbed: list[int]) -> tuple[int, dict[str, Any]]:
    """Verify with the default budget and with one of 1; assert they agree, and that only the
    second spilled before the end (every edit below fails at block 4 or later)."""
    absorbed.clear()
    default = _verify(data, url)
    assert len(absorbed) <= 1, "the default budget should hold the demo in memory until the end"
    absorbed.clear()
    tiny = _verify(data, url, "--memory-budget", "1")
    assert len(absorbed) >= 4, "a budget of 1 should spill after every block"
    assert tiny == default
    return default


def _edit(conn: Connection, table: str, key: str, pick: str, column: str, value: Any) -> Any:
    """Set ``column`` of the row ``pick`` selects to ``value``; return its key afterwards."""
    row = conn.execute(text(f"SELECT {key} FROM {table} WHERE {key} = {pick}")).one()
    conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"), {"v": value, "k": row[0]})
    if column == key:
        return value
    if key == EDGE:
        return f"{row[0].split('>')[0]}>{value}"
    return row[0]


@pytest.fixture
def absorbed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per SpillSource.absorb call in this process (the CLI runs in-process)."""
    calls: list[int] = []
    absorb = SpillSource.absorb

    def counting(self: SpillSource, state: LedgerState) -> None:
        calls.append(1)
        absorb(self, state)

    monkeypatch.setattr(SpillSource, "absorb", counting)
    return calls


def test_spilled_and_in_memory_verify_agree(db: Db, tmp_path: Path, absorbed: list[int]) -> None:
    data = tmp_path / "data"
    assert run([*on(data, db.url), "demo"]).exit_code == 0
    code, report = _both(data, db.url, absorbed)
    assert code == 0 and report["ok"] is True and report["entries"] == 161, report
    checked = 0
    for name, (table, key, pick, column, change, reason) in EDITS.items():
        with tampered(db.url) as conn:
            old = conn.execute(text(f"SELECT {column} FROM {table} WHERE {key} = {pick}")).scalar_one()
            picked = conn.execute(text(f"SELECT {key} FROM {table} WHERE {key} = {pick}")).scalar_one()
            where = _edit(conn, table, key, pick, column, change(old))
        code, report = _both(data, db.url, absorbed)
        assert code == 1 and report["ok"] is False, (name, report)
        assert report["reason"] == reason, (name, report)
        if reason == "facts":
            assert (report["kind"], report["record"]) == (table, picked), (name, report)
        with tampered(db.url) as conn:
            conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"), {"v": old, "k": where})
        checked += 1
    assert checked == len(EDITS) == 9
    # Every edit was undone: the ledger verifies again, spilled or not.
    code, report = _both(data, db.url, absorbed)
    assert code == 0 and report["ok"] is True, report


# (replayed, stored) key streams -> the difference named first
MERGES = {
    "equal": ("ace", "ace", None),
    "both-empty": ("", "", None),
    "replayed-only-first": ("abc", "bc", ("a", "missing")),
    "stored-only-first": ("bc", "abc", ("a", "extra")),
    "replayed-ends-early": ("ab", "abc", ("c", "extra")),
    "stored-ends-early": ("abc", "ab", ("c", "missing")),
    "repeats-count-once": ("aabc", "abbc", None),
    "value-differs": ("ab", "aB", ("b", "wrong")),
}


@pytest.mark.parametrize("case", sorted(MERGES))
def test_first_difference_of_two_sorted_streams(case: str) -> None:
    from api.verify_sources import _first_difference

    replayed, stored, expected = MERGES[case]
    # Values: the letter's case; keys: the letter. "aB" stores b with another value than "ab".
    found = _first_difference(((c.lower(), c) for c in replayed), ((c.lower(), c) for c in stored))
    assert (found[:2] if found else None) == expected


def test_merge_table_is_complete() -> None:
    assert len(MERGES) == 8
