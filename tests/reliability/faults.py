"""Deliberately broken servers for TESTPLAN T1's negative controls ("a checker that never
fires proves nothing"): each fault breaks one promise the crash hammer checks, and a control
run against it must turn a figure red (controls.py).

Injected from test code only: ``inject/sitecustomize.py`` is put on the PYTHONPATH of the
server under test with ``FILIERA_T1_FAULT`` naming the faults (comma-separated), and
:func:`install` patches methods of the library in that process. Nothing here is importable by,
or switchable in, production code.

- ``ack_before_commit``: a sealing round tells its waiting submitters (all of them, the
  leader's own included) that their entries are sealed, then keeps the block's transaction open
  for ``FILIERA_T1_FAULT_DELAY`` seconds (0.5) before it commits. A kill in that window loses acknowledged entries.
- ``no_append_lock``: ``Store.append`` takes neither the SQLite writer lock nor ``BEGIN
  IMMEDIATE`` (a plain deferred transaction) nor the PostgreSQL advisory lock, so two workers
  may read the same head and append after it.
- ``no_unique_constraints`` (PostgreSQL; a fault of the database, made by the harness after
  ``filiera init``): the log's tables lose their primary keys and unique constraints, the last
  line of defence once the append lock is gone.
- ``unsafe_durability_allowed``: the start-up refusal of unsafe PostgreSQL settings (TESTPLAN
  T12) is skipped, so the server runs on ``synchronous_commit=off``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

__all__ = ["ENV", "FAULTS", "install"]

ENV = "FILIERA_T1_FAULT"
MARK = "T1 negative control: fault installed:"


def _ack_before_commit() -> None:
    from ledger.sealing import Sealer
    from ledger.storage.store import Store

    delay = float(os.environ.get("FILIERA_T1_FAULT_DELAY", "0.5"))
    real_append = Store.append
    real_seal_batch = Sealer._seal_batch
    local = threading.local()

    @contextmanager
    def append(self: Store, **kwargs: Any) -> Iterator[Any]:
        deferred: list[AbstractContextManager[Any]] | None = getattr(local, "deferred", None)
        if deferred is None:  # not a round with waiting submitters: as it was
            with real_append(self, **kwargs) as conn:
                yield conn
            return
        cm = real_append(self, **kwargs)
        conn = cm.__enter__()
        try:
            yield conn
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
            return
        deferred.append(cm)  # the COMMIT, left for after the answers

    def seal_batch(self: Sealer, batch: Any) -> None:
        # The round runs in a thread of its own, which holds the append lock and the open
        # transaction through the delay; the leader returns, and so answers its own submitter
        # too, as soon as every job of the batch is settled.
        failed: list[BaseException] = []

        def round_then_commit() -> None:
            local.deferred = []
            try:
                real_seal_batch(self, batch)  # sets every job done: the submitters are answered
            except BaseException as exc:  # noqa: BLE001 - handed to the leader
                failed.append(exc)
            finally:
                commits, local.deferred = local.deferred, None
                if commits:
                    time.sleep(delay)
                for cm in commits:
                    cm.__exit__(None, None, None)

        worker = threading.Thread(target=round_then_commit, name="t1-fault-round", daemon=True)
        worker.start()
        while worker.is_alive() and not all(job.done.is_set() for job in batch):
            worker.join(0.005)
        if failed:
            raise failed[0]

    setattr(Store, "append", append)
    setattr(Sealer, "_seal_batch", seal_batch)


def _no_append_lock() -> None:
    from ledger.storage.store import Store

    @contextmanager
    def append(self: Store, *, lock_timeout_s: float = 30.0) -> Iterator[Any]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    setattr(Store, "append", append)


def _unsafe_durability_allowed() -> None:
    from ledger.storage import store

    def accept(settings: Any) -> None:
        return None

    setattr(store, "check_postgres_settings", accept)


FAULTS: dict[str, Callable[[], None]] = {
    "ack_before_commit": _ack_before_commit,
    "no_append_lock": _no_append_lock,
    "unsafe_durability_allowed": _unsafe_durability_allowed,
}


def install(names: str) -> None:
    """Install the faults named (comma-separated); an unknown name stops the process."""
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name in DB_FAULTS:  # made by the harness (drop_unique_constraints)
            continue
        if name not in FAULTS:
            raise SystemExit(f"{ENV}: unknown fault {name!r}; known: {sorted(FAULTS)}")
        FAULTS[name]()
        # On stderr, which the harness keeps in the server's log: the proof that the control
        # ran against the broken server.
        print(f"{MARK} {name} (pid {os.getpid()})", file=sys.stderr, flush=True)


# --- a fault of the database, made by the harness before the server starts ------------------

# The tables a sealing round writes: their primary keys and unique constraints are what stop
# two rounds appended after the same head from both committing.
LOG_TABLES = (
    "entries", "blocks", "merkle_nodes", "entry_parties", "participants", "participant_keys", "lots",
    "lot_lineage", "lot_handoffs", "handoffs", "contracts", "payments", "attestations",
    "fact_lot_traces", "fact_contract_progress",
)
DB_FAULTS = ("no_unique_constraints",)


def drop_unique_constraints(admin_url: str, schema: str) -> list[str]:
    """``no_unique_constraints`` (PostgreSQL): drop every primary key and unique constraint
    of the log's tables in ``schema`` (foreign keys on them go too). Returns what was
    dropped."""
    from sqlalchemy import create_engine, text

    from ledger.config import normalise_database_url

    engine = create_engine(normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND k.contype IN ('p', 'u') AND c.relname = ANY(:t) ORDER BY 1, 2"
                ),
                {"s": schema, "t": list(LOG_TABLES)},
            ).all()
            for table, name in rows:
                conn.exec_driver_sql(f'ALTER TABLE "{schema}"."{table}" DROP CONSTRAINT IF EXISTS "{name}" CASCADE')
            return [f"{table}.{name}" for table, name in rows]
    finally:
        engine.dispose()
