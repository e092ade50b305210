"""``python -m tests.reliability`` (``make reliability``): TESTPLAN T1 on each backend, a
summary on stdout and the full result as JSON. Exit status 1 if any figure is red (lost, dup,
gaps, forks, phantom, bad proofs, ``filiera verify``) or a backend could not be run.

Settings (environment, all optional): FILIERA_T1_SECONDS (180 per backend), FILIERA_T1_CLIENTS
(8), FILIERA_T1_RATE (20 posts/s per client), FILIERA_T1_WORKERS (2), FILIERA_T1_KILL_EVERY
("6,10" seconds, kill to kill), FILIERA_T1_MIN_KILLS (20: fewer kills fail the run), FILIERA_T1_SEED (random, printed), FILIERA_T1_BACKENDS ("sqlite,postgresql"),
FILIERA_T1_RESEND_FOR (20 s a failed post is resent; 0: never), FILIERA_T1_KINDS (kinds of kill to draw from, default all: worker, group, and on PostgreSQL
pg_backend, pg_backends_all, and on a private cluster pg_cluster), FILIERA_T1_PG ("auto": the
PostgreSQL run uses a private cluster of its own when the server programs are installed, else
the shared server; "private"; "shared"), FILIERA_T1_CONTROLS (the negative controls run after
the main runs, controls.py: "auto", those of the backends run; "all"; "none"; or names,
comma-separated; a control that does not turn red fails the run), FILIERA_T1_OUT
(bench/out/reliability.json), FILIERA_TEST_PG_URL.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from .. import pg_cluster
from .controls import CONTROLS, Control, judge
from .hammer import Plan, run_backend
from .target import REPO

FIGURES = ("kills", "lost", "dup", "gaps", "forks", "phantom", "bad_proofs", "verify_ok", "worst_recovery_s", "worst_outage_s")


def _private_pg(backend: str) -> bool:
    """Run the PostgreSQL T1 in a private cluster (so that pg_cluster can kill all of it)?"""
    choice = os.environ.get("FILIERA_T1_PG", "auto")
    if backend != "postgresql" or choice == "shared":
        return False
    if choice == "private" or pg_cluster.required():
        return True
    try:
        pg_cluster.bin_dir(("initdb", "pg_ctl"))
    except pg_cluster.Unavailable as exc:
        print(f"T1 postgresql: {exc}; running on the shared server, without pg_cluster kills", file=sys.stderr)
        return False
    return True


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
        private_pg=() if _private_pg(backend) else None,
    )


def _controls(backends: list[str]) -> list[Control]:
    choice = os.environ.get("FILIERA_T1_CONTROLS", "auto")
    if choice == "none":
        return []
    if choice == "auto":
        return [c for c in CONTROLS if c.plan.backend in backends]
    if choice == "all":
        return list(CONTROLS)
    names = {n for n in choice.split(",") if n}
    unknown = names - {c.name for c in CONTROLS}
    if unknown:
        raise SystemExit(f"FILIERA_T1_CONTROLS: unknown {sorted(unknown)}; known: {[c.name for c in CONTROLS]}")
    return [c for c in CONTROLS if c.name in names]


def _run_controls(controls: list[Control]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for control in controls:
        print(f"\nnegative control {control.name}: {control.expect}", flush=True)
        try:
            results.append(judge(control, run_backend(control.plan)))
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails
            results.append({"control": control.name, "backend": control.plan.backend, "control_ok": False, "error": f"{type(exc).__name__}: {exc}"})
            print(f"T1 control {control.name}: could not run: {exc}", file=sys.stderr)
    return results


CONTROL_FIGURES = ("kills", "lost", "dup", "gaps", "forks", "errors_5xx", "verify_ok")


def _control_summary(results: list[dict[str, Any]]) -> str:
    rows = [("control", "backend", *CONTROL_FIGURES, "verdict")]
    for r in results:
        verdict = ("passes, as it must" if r.get("positive") else "red, as it must") if r.get("control_ok") else "FAIL"
        if r.get("error"):
            verdict = "FAIL: could not run"
        rows.append((r["control"], r["backend"], *(str(r.get(k)) for k in CONTROL_FIGURES), verdict))
    return _aligned(rows)


def _summary(results: list[dict[str, Any]]) -> str:
    rows = [("figure", *(r["backend"] for r in results)), ("database", *(str(r.get("database")) for r in results))]
    for name in (
        *FIGURES, "worst_restart_to_healthy_s", "acknowledged_per_s", "entries_with_unknown_attempt",
        "unknown_then_acknowledged", "unknown_present", "unknown_absent", "server_tracebacks",
    ):
        rows.append((name, *(str(r.get(name)) for r in results)))
    rows.append(("kills by kind", *(json.dumps(r.get("kills_by_kind")) for r in results)))
    rows.append(("verdict", *("PASS" if r.get("ok") else "FAIL" for r in results)))
    return _aligned(rows)


def _aligned(rows: list[tuple[str, ...]]) -> str:
    """Rows of cells as text columns, each as wide as its widest cell."""
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
    controls = _run_controls(_controls(backends))
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "test": "T1 crash hammer", "seed": seed, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results, "controls": controls,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print()
    if results:
        print(_summary(results))
    if controls:
        print("\nnegative controls (faulty servers, controls.py):")
        print(_control_summary(controls))
    print(f"\nseed {seed}; full result in {out}")
    ran = bool(results or controls)
    return 0 if ran and all(r.get("ok") for r in results) and all(c.get("control_ok") for c in controls) else 1


if __name__ == "__main__":
    sys.exit(main())
