"""``python -m tests.reliability`` (``make reliability``): TESTPLAN T1 on each backend, a
summary on stdout and the full result as JSON. Exit status 1 if any figure is red (lost, dup,
gaps, forks, phantom, bad proofs, ``filiera verify``) or a backend could not be run.

Settings (environment, all optional): FILIERA_T1_SECONDS (180 per backend), FILIERA_T1_CLIENTS
(8), FILIERA_T1_RATE (20 posts/s per client), FILIERA_T1_WORKERS (2), FILIERA_T1_KILL_EVERY
("6,10" seconds, kill to kill), FILIERA_T1_MIN_KILLS (20: fewer kills fail the run), FILIERA_T1_SEED (random, printed), FILIERA_T1_BACKENDS ("sqlite,postgresql"),
FILIERA_T1_RESEND_FOR (20 s a failed post is resent; 0: never), FILIERA_T1_KINDS (kinds of kill to draw from, default all: worker, group, and on PostgreSQL
pg_backend, pg_backends_all), FILIERA_T1_OUT (bench/out/reliability.json), FILIERA_TEST_PG_URL.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from .hammer import Plan, run_backend
from .target import REPO

FIGURES = ("kills", "lost", "dup", "gaps", "forks", "phantom", "bad_proofs", "verify_ok", "worst_recovery_s", "worst_outage_s")


def _plan(backend: str, seed: int) -> Plan:
    low, high = (float(x) for x in os.environ.get("FILIERA_T1_KILL_EVERY", "6,10").split(","))
    return Plan(
        backend=backend,
        seconds=float(os.environ.get("FILIERA_T1_SECONDS", "180")),
        clients=int(os.environ.get("FILIERA_T1_CLIENTS", "8")),
        rate=float(os.environ.get("FILIERA_T1_RATE", "20")),
        workers=int(os.environ.get("FILIERA_T1_WORKERS", "2")),
        kill_every=(low, high),
        min_kills=int(os.environ.get("FILIERA_T1_MIN_KILLS", "20")),
        resend_for=float(os.environ.get("FILIERA_T1_RESEND_FOR", "20")),
        seed=seed,
        kinds=tuple(k for k in os.environ.get("FILIERA_T1_KINDS", "").split(",") if k),
    )


def _summary(results: list[dict[str, Any]]) -> str:
    rows = [("figure", *(r["backend"] for r in results))]
    for name in (
        *FIGURES, "worst_restart_to_healthy_s", "acknowledged_per_s", "entries_with_unknown_attempt",
        "unknown_then_acknowledged", "unknown_present", "unknown_absent", "server_tracebacks",
    ):
        rows.append((name, *(str(r.get(name)) for r in results)))
    rows.append(("kills by kind", *(json.dumps(r.get("kills_by_kind")) for r in results)))
    rows.append(("verdict", *("PASS" if r.get("ok") else "FAIL" for r in results)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def main() -> int:
    seed = int(os.environ.get("FILIERA_T1_SEED") or secrets.randbelow(2**31))
    backends = [b for b in os.environ.get("FILIERA_T1_BACKENDS", "sqlite,postgresql").split(",") if b]
    out = Path(os.environ.get("FILIERA_T1_OUT", str(REPO / "bench" / "out" / "reliability.json")))
    results: list[dict[str, Any]] = []
    for backend in backends:
        try:
            results.append(run_backend(_plan(backend, seed)))
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails
            results.append({"backend": backend, "seed": seed, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            print(f"T1 {backend}: could not run: {exc}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"test": "T1 crash hammer", "seed": seed, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print()
    print(_summary(results))
    print(f"\nseed {seed}; full result in {out}")
    return 0 if results and all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
