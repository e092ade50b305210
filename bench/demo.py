"""Realistic-mix ingest: `filiera demo --lots N` built in-process, timed.

The demo tells the olive-oil consortium's story (origins, co-signed and received handoffs,
transformations, attestations, contracts, payments): every entry goes through intake (parse,
strict signature checks, early rules) and sealing (rules at position, Merkle append, block
signature, projection) exactly as over HTTP, minus the HTTP layer. Entries/s is reported beside
the same run's raw Ed25519 verify rate; the time to build N lots is the issue's "time to build a
100,000-lot demo".
"""

from __future__ import annotations

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
        summary = build_demo(settings, origin="bench.filiera.example", if_missing=False, lots=lots)
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
        }
