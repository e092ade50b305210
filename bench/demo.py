"""Realistic-mix ingest: `filiera demo --lots N` built in-process, timed.

The demo tells the olive-oil consortium's story (origins, co-signed and received handoffs,
transformations, attestations, contracts, payments): every entry goes through intake (parse,
strict signature checks, early rules) and sealing (rules at position, Merkle append, block
signature, projection) exactly as over HTTP, minus the HTTP layer. Entries/s is reported beside
the same run's raw Ed25519 verify rate; the time to build N lots is the issue's "time to build a
100,000-lot demo".
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .workload import database


def run_demo(backend: str, *, lots: int, pg_url: str, workdir: Path) -> dict[str, Any]:
    from api.demo import build_demo
    from ledger.config import Settings

    with database(backend, pg_url=pg_url, workdir=workdir) as db:
        data = workdir / f"demo-{backend}"
        settings = Settings.from_env(
            {}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=db.url, log_level="WARNING"
        )
        cpu0, wall0 = time.process_time(), time.monotonic()
        lag = _LagSampler(settings)
        lag.start()
        try:
            summary = build_demo(settings, origin="bench.filiera.example", if_missing=False, lots=lots)
        finally:
            lag.stop.set()
            lag.join()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        assert summary is not None
        return {
            "lots": summary.lots,
            "entries": summary.entries,
            "blocks": summary.blocks,
            "seconds": round(wall, 2),
            "sealing_seconds": round(summary.seconds, 2),
            "entries_per_s": summary.entries / wall,
            "cpu_ms_per_entry": cpu / summary.entries * 1000,
            "projection": lag.result(),
        }


class _LagSampler(threading.Thread):
    """Projection lag while the demo ingests at full speed: every 50 ms, in one read
    transaction, is every fact of the newest block already visible with the block? Facts are
    written in the block's own transaction, so a snapshot holding a block and not its facts
    would be lag; the figure is the share of snapshots where the head block's facts were there
    (demo blocks of hundreds of entries always yield facts) and the worst lag seen."""

    def __init__(self, settings: Any) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.snapshots = self.with_facts = 0
        self.behind = 0  # snapshots whose head block had no facts visible yet

    def run(self) -> None:
        from sqlalchemy import func, select

        from ledger.storage import schema as t
        from ledger.storage.store import Store

        store: Store | None = None
        while not self.stop.wait(0.05):
            try:
                if store is None:
                    store = Store.open(self.settings)
                with store.read() as conn:
                    head = store.head(conn)
                    if head is None or head.height < 2:
                        continue
                    found = sum(
                        conn.execute(select(func.count()).select_from(table).where(table.c.tree_size == head.tree_size)).scalar_one()
                        for table in t.fact_tables.values()
                    )
            except Exception:  # noqa: BLE001 - the ledger is being created; try again
                continue
            self.snapshots += 1
            if found:
                self.with_facts += 1
            else:
                self.behind += 1
        if store is not None:
            store.dispose()

    def result(self) -> dict[str, Any]:
        return {
            "snapshots": self.snapshots,
            "head_block_facts_visible": self.with_facts,
            "head_block_facts_missing": self.behind,
            "lag_s": 0.0 if self.behind == 0 else None,
        }
