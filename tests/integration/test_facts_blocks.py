"""Facts do not depend on how entries were cut into blocks (docs/analytics.md): replaying a
demo log through ``ledger.facts.derive_block`` in blocks cut at random places gives the facts
the sealer stored, position for position, only the tree sizes following the cut."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from ledger.config import Settings
from ledger.entries import envelope_from_leaf
from ledger.facts import KINDS, Fact, derive_block
from ledger.facts_state import FactsState
from ledger.rules import Position, apply_entry
from ledger.state import LedgerState
from ledger.storage.facts import facts_in_range
from ledger.storage.store import Store


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[Fact]]:
    """The envelopes of a 12-lot demo ledger on SQLite, and the facts its sealer stored."""
    from api.demo import build_demo

    data: Path = tmp_path_factory.mktemp("facts-blocks")
    s = Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=f"sqlite:///{data / 'demo.db'}")
    build_demo(s, origin="demo.filiera.example", if_missing=False, lots=12)
    store = Store.open(s)
    try:
        with store.read() as conn:
            head = store.head(conn)
            assert head is not None
            rows = store.entries_range(conn, 0, head.tree_size)
            stored = sorted((f for k in KINDS for f in facts_in_range(conn, k, 0, head.tree_size)), key=lambda f: (f.index, f.seq))
    finally:
        store.dispose()
    origin = json.loads(rows[0].leaf_data)["payload"]["ledger"]
    envs = [envelope_from_leaf(r.leaf_data.encode("utf-8"), origin=origin) for r in rows]
    return envs, stored


def _without_tree_size(f: Fact) -> tuple[Any, ...]:
    return (f.kind, f.index, f.seq, f.entries, f.day, dict(f.values))


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_block_boundaries_do_not_change_the_facts(demo_log: tuple[list[Any], list[Fact]], data: st.DataObject) -> None:
    envs, stored = demo_log
    cuts = sorted(data.draw(st.sets(st.integers(min_value=2, max_value=len(envs) - 1), max_size=40)))
    bounds = [0, 1, *cuts, len(envs)]
    state, facts = LedgerState(), FactsState()
    derived: list[Fact] = []
    later = datetime.now(timezone.utc) + timedelta(days=1)
    for height, (start, end) in enumerate(zip(bounds, bounds[1:])):
        if start == end:
            continue
        block = [(i, envs[i]) for i in range(start, end)]
        for i, env in block:
            apply_entry(state, env, Position(i, height, later))
        made = derive_block(state, facts, block, tree_size=end)
        assert all(start <= f.index < end and f.tree_size == end for f in made)
        derived.extend(made)
    assert [_without_tree_size(f) for f in derived] == [_without_tree_size(f) for f in stored]
