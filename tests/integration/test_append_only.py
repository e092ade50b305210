"""The database itself refuses to rewrite history (PROTOCOL §5, TESTPLAN T2): UPDATE, DELETE
and, on PostgreSQL, TRUNCATE of ``entries``, ``blocks`` and ``merkle_nodes`` fail in the
triggers the migration installs, whoever sends the SQL. The derived tables stay writable.

Raw SQL through SQLAlchemy, on an engine configured as the ledger's own; every refused
statement is followed by a check that the row is still there, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.sealing import Sealer

from ..conftest import BACKENDS, LedgerEnv
from .conftest import check_chain, register_members

# One statement per way of rewriting each log table. Named for what they would break.
REFUSED: list[tuple[str, str, str]] = [
    ("entries", "rewrite-leaf-data", "UPDATE entries SET leaf_data = 'x' WHERE idx = 1"),
    ("entries", "rewrite-leaf-hash", "UPDATE entries SET leaf_hash = :zero WHERE idx = 1"),
    ("entries", "move-entry", "UPDATE entries SET idx = idx + 1000 WHERE idx = 2"),
    ("entries", "delete-one-entry", "DELETE FROM entries WHERE idx = 1"),
    ("entries", "delete-tail", "DELETE FROM entries WHERE idx >= 1"),
    ("entries", "delete-all", "DELETE FROM entries"),
    ("blocks", "rewrite-prev", "UPDATE blocks SET prev = :zero WHERE height = 1"),
    ("blocks", "rewrite-root", "UPDATE blocks SET root = :zero WHERE height = 1"),
    ("blocks", "rewrite-signature", "UPDATE blocks SET signature = 'AAAA' WHERE height = 1"),
    ("blocks", "delete-head", "DELETE FROM blocks WHERE height = 1"),
    ("blocks", "delete-all", "DELETE FROM blocks"),
    ("merkle_nodes", "rewrite-node", "UPDATE merkle_nodes SET hash = :zero_bytes WHERE level = 0 AND idx = 0"),
    ("merkle_nodes", "delete-node", "DELETE FROM merkle_nodes WHERE level = 0 AND idx = 0"),
    ("merkle_nodes", "delete-all", "DELETE FROM merkle_nodes"),
]
PARAMS = {"zero": "0" * 64, "zero_bytes": b"\x00" * 32}
KEY_COLUMNS = {"entries": "idx", "blocks": "height", "merkle_nodes": "level, idx"}


def _snapshot(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {KEY_COLUMNS[table]}"))]


def _assert_refused_by_trigger(exc: DBAPIError, backend: str) -> None:
    """The refusal comes from the append-only trigger, not from some other failure."""
    if backend == "sqlite":
        assert exc.orig.sqlite_errorname == "SQLITE_CONSTRAINT_TRIGGER"  # type: ignore[union-attr]
    else:
        assert exc.orig.sqlstate == "23000"  # type: ignore[union-attr]  # integrity_constraint_violation


@pytest.fixture
def sealed(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> LedgerEnv:
    """A ledger of three blocks: genesis, one member, then two members in one block."""
    sealer = open_sealer()
    register_members(sealer, ledger_env.admin, ["alpha"])
    register_members(sealer, ledger_env.admin, ["beta", "gamma"])
    return ledger_env


def test_loaded_cases() -> None:
    assert len(REFUSED) == 14
    assert {table for table, _, _ in REFUSED} == set(KEY_COLUMNS)


@pytest.mark.parametrize(("table", "case", "sql"), REFUSED, ids=[f"{t}-{c}" for t, c, _ in REFUSED])
def test_log_tables_refuse_update_and_delete(sealed: LedgerEnv, raw_engine: Engine, table: str, case: str, sql: str) -> None:
    before = _snapshot(raw_engine, table)
    assert len(before) >= 3
    with pytest.raises(DBAPIError) as info:
        with raw_engine.begin() as conn:
            conn.execute(text(sql), PARAMS)
    _assert_refused_by_trigger(info.value, sealed.backend)
    assert _snapshot(raw_engine, table) == before
    check_chain(sealed.settings)


@pytest.mark.parametrize("table", sorted(KEY_COLUMNS))
def test_log_tables_refuse_replace_and_upsert(sealed: LedgerEnv, raw_engine: Engine, table: str) -> None:
    """Rewriting a row by re-inserting it over its key (SQLite ``INSERT OR REPLACE``, which
    deletes the old row without firing DELETE triggers; or an upsert's DO UPDATE) fails too."""
    before = _snapshot(raw_engine, table)
    columns = {
        "entries": ("idx", "id, height, type, author, nonce, leaf_hash, leaf_data"),
        "blocks": ("height", "hash, prev, time, first_index, tree_size, root, signature, checkpoint"),
        "merkle_nodes": ("level, idx", "hash"),
    }[table]
    key, rest = columns
    cols = f"{key}, {rest}"
    # Copy row 1 over itself with its last column changed.
    last = rest.split(", ")[-1]
    changed = "X'00'" if table == "merkle_nodes" and sealed.backend == "sqlite" else (
        "'\\x00'::bytea" if table == "merkle_nodes" else "'tampered'"
    )
    select_cols = cols.replace(last, f"{changed} AS {last}") if last != key else cols
    first = "level = 0 AND idx = 1" if table == "merkle_nodes" else f"{key} = 1"
    if sealed.backend == "sqlite":
        statements = [
            f"INSERT OR REPLACE INTO {table} ({cols}) SELECT {select_cols} FROM {table} WHERE {first}",
            f"REPLACE INTO {table} ({cols}) SELECT {select_cols} FROM {table} WHERE {first}",
        ]
    else:
        statements = []
    statements.append(
        f"INSERT INTO {table} ({cols}) SELECT {select_cols} FROM {table} WHERE {first} "
        f"ON CONFLICT ({key}) DO UPDATE SET {last} = excluded.{last}"
    )
    for sql in statements:
        with pytest.raises(DBAPIError) as info:
            with raw_engine.begin() as conn:
                conn.execute(text(sql))
        _assert_refused_by_trigger(info.value, sealed.backend)
        assert _snapshot(raw_engine, table) == before, sql
    check_chain(sealed.settings)


# SQLite has no TRUNCATE: its equivalent, DELETE FROM without WHERE, is covered above.
@pytest.mark.parametrize("db", [b for b in BACKENDS if b == "postgresql"], indirect=True)
@pytest.mark.parametrize("table", sorted(KEY_COLUMNS))
@pytest.mark.parametrize("statement", ["TRUNCATE {table}", "TRUNCATE {table} CASCADE", "TRUNCATE {table} RESTART IDENTITY"])
def test_postgres_refuses_truncate(sealed: LedgerEnv, raw_engine: Engine, table: str, statement: str) -> None:
    before = _snapshot(raw_engine, table)
    with pytest.raises(DBAPIError) as info:
        with raw_engine.begin() as conn:
            conn.execute(text(statement.format(table=table)))
    _assert_refused_by_trigger(info.value, sealed.backend)
    assert _snapshot(raw_engine, table) == before
    check_chain(sealed.settings)


def test_appending_still_works_after_refusals(sealed: LedgerEnv, raw_engine: Engine, open_sealer: Callable[..., Sealer]) -> None:
    """The triggers refuse rewrites, not appends: sealing goes on after a refused DELETE."""
    with pytest.raises(DBAPIError):
        with raw_engine.begin() as conn:
            conn.execute(text("DELETE FROM entries WHERE idx = 3"))
    register_members(open_sealer(), sealed.admin, ["delta"])
    facts = check_chain(sealed.settings)
    assert facts.indices == list(range(5))
    assert facts.heights == list(range(4))


# The derived and transient tables: a rebuild of the projection and the intake queue's
# bookkeeping must be able to change them.
WRITABLE: list[tuple[str, str, str]] = [
    ("participants", "update", "UPDATE participants SET name = 'Renamed' WHERE id = 'alpha'"),
    ("participants", "delete", "DELETE FROM participants WHERE id = 'gamma'"),
    ("participant_keys", "update", "UPDATE participant_keys SET reason = 'test' WHERE participant = 'alpha'"),
    ("participant_keys", "delete", "DELETE FROM participant_keys WHERE participant = 'gamma'"),
    ("pending", "insert", "INSERT INTO pending (id, leaf_data, verified, received_at, status) VALUES (:zero, '{}', '[]', '2026-01-01T00:00:00Z', 'rejected')"),
    ("pending", "update", "UPDATE pending SET code = 'x', detail = 'y' WHERE id = :zero"),
    ("pending", "delete", "DELETE FROM pending WHERE id = :zero"),
]


def test_loaded_writable_cases() -> None:
    assert len(WRITABLE) == 7


def test_projection_and_queue_stay_writable(sealed: LedgerEnv, raw_engine: Engine) -> None:
    for table, action, sql in WRITABLE:
        with raw_engine.begin() as conn:
            result = conn.execute(text(sql), PARAMS)
        assert result.rowcount == 1, f"{table} {action} touched {result.rowcount} rows"
    if sealed.backend == "postgresql":
        with raw_engine.begin() as conn:
            conn.execute(text("TRUNCATE pending"))
    # The log itself is untouched and still verifies.
    check_chain(sealed.settings)
