"""Schemas come from Alembic ``upgrade head``, never ``create_all`` (STYLE.md), and the models
in ``ledger/storage/schema.py`` stay in step with ``migrations/``.

``compare_metadata`` runs with type and server-default comparison on, on both dialects, and
reports nothing: no difference has to be excused as a dialect artefact. It cannot see
triggers, so a separate test checks that the append-only triggers exist for every log table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, String, inspect, select, text

from ledger.config import Settings
from ledger.errors import NotInitialised
from ledger.storage import schema as t
from ledger.storage.migrate import alembic_config, head_revision, is_current, upgrade
from ledger.storage.store import Store, make_engine

from ..conftest import Db, LedgerEnv
from .conftest import check_chain

COMPARE_OPTS = {"compare_type": True, "compare_server_default": True}
LEDGER_TABLES = {
    "entries", "blocks", "merkle_nodes", "pending", "participants", "participant_keys",
    "lots", "lot_lineage", "lot_handoffs", "handoffs", "contracts", "payments", "attestations", "entry_parties", "request_nonces",
    "cosignatures", "cosignature_renewals",
    "engagement_daily",
    "fact_shipments", "fact_dwell", "fact_deliveries", "fact_contracts", "fact_payments",
    "fact_lot_traces", "fact_contract_progress",
    "webhook_subscriptions", "webhook_deliveries",
}


@pytest.fixture
def engine(db: Db) -> Iterator[Engine]:
    """An engine on an empty database, configured as the ledger's own."""
    e = make_engine(Settings.from_env({}, database_url=db.url))
    yield e
    e.dispose()


def _diff(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=COMPARE_OPTS), metadata))


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _triggers(engine: Engine) -> set[tuple[str, str]]:
    """(table, trigger name) of every trigger in the ledger's schema."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(
                text(
                    "SELECT c.relname, tg.tgname FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid "
                    "WHERE NOT tg.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
                )
            )
        return {(r[0], r[1]) for r in rows}


def test_the_test_starts_from_an_empty_database(engine: Engine) -> None:
    assert not (set(inspect(engine).get_table_names()) & LEDGER_TABLES)
    assert _revision(engine) is None


def test_upgrade_head_creates_the_schema(engine: Engine) -> None:
    upgrade(engine)
    assert _revision(engine) == head_revision()
    assert is_current(engine)
    assert set(inspect(engine).get_table_names()) == LEDGER_TABLES | {"alembic_version"}
    assert set(t.metadata.tables) == LEDGER_TABLES


def test_models_and_migrations_are_in_step(engine: Engine) -> None:
    upgrade(engine)
    assert _diff(engine, t.metadata) == []


@pytest.mark.parametrize(
    "change",
    ["extra-column", "extra-table", "dropped-index", "wider-string"],
)
def test_step_check_can_fail(engine: Engine, change: str) -> None:
    """Negative control: a model that drifts from the migrations is reported."""
    upgrade(engine)
    drifted = MetaData(naming_convention=t.metadata.naming_convention)
    for table in t.metadata.tables.values():
        table.to_metadata(drifted)
    if change == "extra-column":
        drifted.tables["entries"].append_column(Column("extra", Integer, nullable=True))
    elif change == "extra-table":
        from sqlalchemy import Table

        Table("extra", drifted, Column("id", Integer, primary_key=True))
    elif change == "dropped-index":
        idx = next(iter(drifted.tables["pending"].indexes))
        drifted.tables["pending"].indexes.discard(idx)
    else:
        # A new type object: the copy shares the original's, which must stay as it is.
        drifted.tables["participants"].c.name.type = String(400)
    diffs = _diff(engine, drifted)
    assert len(diffs) == 1, diffs


def test_append_only_triggers_cover_every_log_table(engine: Engine) -> None:
    upgrade(engine)
    triggers = _triggers(engine)
    assert {table for table, _ in triggers} == set(t.APPEND_ONLY_TABLES)
    if engine.dialect.name == "sqlite":
        expected = {(tb, f"{tb}_no_{what}") for tb in t.APPEND_ONLY_TABLES for what in ("update", "delete", "replace")}
    else:
        expected = {(tb, f"{tb}_{what}") for tb in t.APPEND_ONLY_TABLES for what in ("append_only", "no_truncate")}
    assert triggers == expected


def test_upgrade_is_idempotent_on_an_empty_schema(engine: Engine) -> None:
    upgrade(engine)
    before = _triggers(engine)
    upgrade(engine)
    upgrade(engine)
    assert _revision(engine) == head_revision()
    assert _triggers(engine) == before
    assert _diff(engine, t.metadata) == []


def test_upgrade_is_idempotent_on_a_ledger(ledger_env: LedgerEnv) -> None:
    before = check_chain(ledger_env.settings)
    e = make_engine(ledger_env.settings)
    try:
        upgrade(e)
        assert _revision(e) == head_revision()
        with e.connect() as conn:
            assert conn.execute(select(t.entries.c.id)).scalars().all() != []
    finally:
        e.dispose()
    after = check_chain(ledger_env.settings)
    assert after.report == before.report


def test_downgrade_is_refused(engine: Engine) -> None:
    """The log is permanent: there is no revision to go back to, and nothing is dropped."""
    upgrade(engine)
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        with pytest.raises(RuntimeError):
            command.downgrade(cfg, "base")
        conn.rollback()
    assert _revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= LEDGER_TABLES


def test_store_open_on_an_empty_database_is_refused(db: Db) -> None:
    with pytest.raises(NotInitialised) as info:
        Store.open(Settings.from_env({}, database_url=db.url))
    assert info.value.code == "not_initialised"


def test_store_open_after_upgrade_succeeds(db: Db, engine: Engine) -> None:
    upgrade(engine)
    store = Store.open(Settings.from_env({}, database_url=db.url))
    try:
        with store.read() as conn:
            assert store.head(conn) is None  # a schema, but no ledger yet: `filiera init` seals one
    finally:
        store.dispose()


def test_0004_fills_lot_handoffs_from_the_handoffs_already_sealed(engine: Engine) -> None:
    """A ledger from before provenance: its handoffs' lots are copied into lot_handoffs."""
    upgrade(engine, "0002")
    rows = [("h1", '["A", "B"]', 7), ("h2", '["A"]', 9), ("h3", '["C"]', 12)]
    with engine.begin() as conn:
        for hid, lots, idx in rows:
            conn.execute(
                text(
                    "INSERT INTO handoffs (id, sender, recipient, lots, status, dispatched_at, idx) "
                    "VALUES (:id, 'farm', 'mill', :lots, 'accepted', '2026-10-16T08:00:00Z', :idx)"
                ),
                {"id": hid, "lots": lots, "idx": idx},
            )
    upgrade(engine)
    with engine.connect() as conn:
        found = {tuple(r) for r in conn.execute(select(t.lot_handoffs.c.lot, t.lot_handoffs.c.idx, t.lot_handoffs.c.handoff))}
    assert found == {("A", 7, "h1"), ("B", 7, "h1"), ("A", 9, "h2"), ("C", 12, "h3")}
