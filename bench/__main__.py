"""``python -m bench``: run every benchmark once, write bench/out/results.json, print a summary.

Sections (all in one run, so every ratio has its baseline from the same minutes):

1. baseline  raw PyNaCl Ed25519 verify rate, 1 process and 2 processes, 300-byte message
2. single    POST /v1/entries from concurrent client processes to ``filiera serve``
3. batch     POST /v1/entries/batch, 1,000 entries a request
4. proofs    ledgers of 10k, 100k and 1M entries (built once, cached in bench/out/cache/): at each
             size, inclusion and consistency proof latency, append cost (batch and single-entry
             submit_batch) and the provenance of a 10-step lineage (bench/scale.py)
5. demo      realistic mix: `filiera demo --lots N` built in-process (100,000 lots by default)
6. provenance  GET /v1/lots/{lot}/provenance of a 10-step lineage added to the audit section's
             million-entry demo (SQLite) and to a fresh demo on PostgreSQL, p50/p95/p99
7. audit     `filiera audit` of a demo export (392,000 lots: about a million entries), entries/s
             beside the raw verify rate of all cores, and the peak memory of its process tree
8. load      TESTPLAN T14: ramps of public GETs and of signed POSTs against `filiera serve` with
             2 and 3 workers on each backend: requests/s, p50/p99, CPU of app, database and
             clients, and the saturation point (bench/load.py)

Sections 2-5 run on SQLite and on PostgreSQL (the 100k demo on SQLite only, unless --demo-pg).
Besides results.json, a run rewrites the generated part of bench/results.md (--results-md).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import baseline, machine
from .report import render
from .results_md import carry_over, write_results_md

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_PG = os.environ.get("FILIERA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

TARGETS = {
    "single_entries_per_s": 1000.0,
    "batch_ratio_to_2core_verify": 0.25,
    "proof_ms_at_100k": 2.0,
    "proof_ms_at_1m": 2.0,
    "append_ratio_1m_to_10k": 1.0,
    "audit_ratio_to_all_core_verify": 0.70,
    "audit_peak_mb": 300.0,
    "provenance_p95_ms": 20.0,
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql", help="comma-separated (default: both)")
    ap.add_argument("--only", default="baseline,single,batch,proofs,demo,audit,provenance,load", help="sections to run")
    ap.add_argument("--provenance-pg-lots", type=int, default=20_000, help="lots of the PostgreSQL demo for provenance")
    ap.add_argument("--provenance-samples", type=int, default=300)
    ap.add_argument("--audit-lots", type=int, default=392_000, help="lots of the audited demo (about 2.6 entries each)")
    ap.add_argument("--audit-workers", type=int, default=None, help="filiera audit --workers (default: every core)")
    ap.add_argument("--demo-lots", type=int, default=100_000, help="lots of the realistic-mix demo")
    ap.add_argument("--demo-pg-lots", type=int, default=5_000, help="lots of the demo on PostgreSQL")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server (a fresh schema is used)")
    ap.add_argument("--clients", type=int, default=12, help="concurrent single-entry client processes")
    ap.add_argument("--members", type=int, default=96, help="members registered before the single run")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of the single-entry run")
    ap.add_argument("--per-client", type=int, default=2500, help="entries prepared per client (upper bound)")
    ap.add_argument("--batch-clients", type=int, default=2, help="concurrent batch clients")
    ap.add_argument("--batches", type=int, default=3, help="batch requests per batch client")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="ledger sizes for proofs, append cost and provenance")
    ap.add_argument("--samples", type=int, default=400, help="proofs timed per kind and size")
    ap.add_argument("--cache", type=Path, default=OUT / "cache", help="where built ledgers are kept (by size and code version)")
    ap.add_argument("--build-only", action="store_true", help="only build the cached ledgers of --sizes, then exit")
    ap.add_argument("--append-rounds", type=int, default=7, help="rounds of the append-cost measurement, alternating between the sizes (the median is reported)")
    ap.add_argument("--append-batches", type=int, default=20, help="submit_batch calls per append round")
    ap.add_argument("--append-batch-size", type=int, default=100, help="fresh entries per append submit_batch call")
    ap.add_argument("--append-singles", type=int, default=100, help="single-entry appends per round")
    ap.add_argument("--results-md", type=Path, default=Path(__file__).resolve().parent / "results.md",
                    help="markdown report whose generated part this run rewrites (not with --quick unless given)")
    ap.add_argument("--no-results-md", action="store_true", help="do not touch the markdown report")
    ap.add_argument("--load-workers", default="2,3", help="gunicorn worker counts of the load section")
    ap.add_argument("--load-clients", default="1,2,4,8,16", help="client processes per GET step")
    ap.add_argument("--load-post-clients", default="1,2,4,8", help="client processes per POST step")
    ap.add_argument("--load-seconds", type=float, default=5.0, help="length of each load step")
    ap.add_argument("--load-demo-lots", type=int, default=200, help="lots of the demo the load section reads")
    ap.add_argument("--verify-seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers of the server")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (small sizes, short runs)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    if a.quick and "--results-md" not in (argv if argv is not None else sys.argv[1:]):
        a.no_results_md = True
    if a.quick:
        a.seconds, a.per_client, a.batches, a.sizes, a.samples, a.verify_seconds = 4.0, 400, 1, "2000,5000", 100, 1.0
        a.demo_lots, a.demo_pg_lots, a.audit_lots, a.provenance_pg_lots, a.provenance_samples = 1_000, 500, 2_000, 500, 50
        a.append_rounds, a.append_batches, a.append_singles = 2, 5, 20
        a.load_workers, a.load_clients, a.load_post_clients, a.load_seconds, a.load_demo_lots = "2", "1,2", "1,2", 2.0, 30
    return a


def main(argv: list[str] | None = None) -> int:
    from .ingest import register_members, run_batch, run_single
    from .scale import run_scale
    from .server import serve
    from .workload import database, init_ledger_cli

    a = _args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.build_only:
        from .scale import build_ledgers

        t0 = time.monotonic()
        for meta in build_ledgers([int(s) for s in a.sizes.split(",")], cache=a.cache,
                                  log=lambda msg: print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)):
            print(json.dumps(meta))
        return 0
    sections = set(a.only.split(","))
    backends = [b for b in a.backends.split(",") if b]
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.describe(a.pg_url if "postgresql" in backends else None),
        "targets": TARGETS,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "baseline": {},
        "backends": {},
        "errors": [],
    }
    m = results["machine"]
    log(f"machine: {m['cpu_model']}, {m['cores']} cores, Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'unreachable'}")

    if "baseline" in sections or sections & {"single", "batch", "demo", "audit"}:
        log("baseline: raw Ed25519 verify, 1 process")
        results["baseline"]["verify_1"] = baseline.verify_rate(processes=1, seconds=a.verify_seconds)
        log("baseline: raw Ed25519 verify, 2 processes")
        results["baseline"]["verify_2"] = baseline.verify_rate(processes=2, seconds=a.verify_seconds)
        log(f"  {results['baseline']['verify_1']['per_s']:.0f}/s on 1 core, "
            f"{results['baseline']['verify_2']['per_s']:.0f}/s on 2")

    with tempfile.TemporaryDirectory(prefix="filiera-bench-") as tmp:
        work = Path(tmp)
        for backend in backends:
            res: dict[str, Any] = {}
            results["backends"][backend] = res
            if backend == "postgresql" and m["postgresql"] is None:
                msg = f"PostgreSQL at {a.pg_url} is unreachable; its figures are missing"
                results["errors"].append(msg)
                log(f"ERROR: {msg}")
                continue
            if sections & {"single", "batch"}:
                try:
                    with database(backend, pg_url=a.pg_url, workdir=work) as db:
                        log(f"{backend}: filiera init, serve --workers {a.workers}")
                        admin = init_ledger_cli(db)
                        with serve(db, workers=a.workers, log=a.out / f"server-{backend}.log") as server:
                            members = register_members(server.port, admin.seed, a.members)
                            if "single" in sections:
                                log(f"{backend}: single-entry posts, {a.clients} clients, "
                                    f"<= {a.seconds:.0f} s")
                                res["single"] = run_single(
                                    server, backend, members, clients=a.clients,
                                    per_client=a.per_client, seconds=a.seconds,
                                )
                                log(f"  {res['single']['entries_per_s']:.0f} entries/s, "
                                    f"p50 {res['single']['p50_ms']:.1f} ms, p99 {res['single']['p99_ms']:.1f} ms")
                            if "batch" in sections:
                                log(f"{backend}: batches of {a.batch_size}, {a.batch_clients} clients "
                                    f"x {a.batches} requests")
                                res["batch"] = run_batch(
                                    server, backend, members, clients=a.batch_clients,
                                    batches=a.batches, size=a.batch_size,
                                )
                                log(f"  {res['batch']['entries_per_s']:.0f} entries/s")
                except Exception as exc:  # noqa: BLE001 - one failed section must not hide the rest
                    results["errors"].append(f"{backend} ingest: {exc!r}")
                    log(f"ERROR {backend} ingest: {exc!r}")
                    traceback.print_exc()
        if "proofs" in sections:
            proof_backends = [b for b in backends if b in results["backends"] and not (b == "postgresql" and m["postgresql"] is None)]
            if proof_backends:
                try:
                    log(f"proofs, append cost, provenance: ledgers of {a.sizes} entries on {', '.join(proof_backends)}")
                    opts = {
                        "samples": a.samples, "append_rounds": a.append_rounds, "append_batches": a.append_batches,
                        "append_batch_size": a.append_batch_size, "append_singles": a.append_singles,
                        "provenance_samples": a.provenance_samples,
                    }
                    results["scale"] = run_scale(
                        proof_backends, sizes=[int(s) for s in a.sizes.split(",")], pg_url=a.pg_url,
                        workdir=work, cache=a.cache, opts=opts, seed=1, log=log,
                    )
                except Exception as exc:  # noqa: BLE001
                    results["errors"].append(f"proofs: {exc!r}")
                    log(f"ERROR proofs: {exc!r}")
                    traceback.print_exc()

        if "demo" in sections:
            from .demo import run_demo

            for backend in backends:
                if backend not in results["backends"] or (backend == "postgresql" and m["postgresql"] is None):
                    continue
                lots = a.demo_lots if backend == "sqlite" else a.demo_pg_lots
                log(f"demo: {backend}, {lots:,} lots (realistic mix, in-process)")
                try:
                    d = run_demo(backend, lots=lots, pg_url=a.pg_url, workdir=work)
                    results["backends"][backend]["demo"] = d
                    log(f"  {d['entries']:,} entries in {d['seconds']:.0f} s: {d['entries_per_s']:.0f} entries/s")
                except Exception as exc:  # noqa: BLE001
                    results["errors"].append(f"{backend} demo: {exc!r}")
                    log(f"ERROR {backend} demo: {exc!r}")
                    traceback.print_exc()

    if "audit" in sections:
        from .audit import run_audit

        log(f"audit: filiera audit of a {a.audit_lots:,}-lot demo export")
        try:
            r = run_audit(lots=a.audit_lots, cache=a.out, workers=a.audit_workers, log=log)
            results["audit"] = r
            log(f"  {r['entries']:,} entries, {r['signatures']:,} signatures in {r['seconds']:.1f} s: "
                f"{r['entries_per_s']:,.0f} entries/s, peak {r['peak_pss_mb']:.0f} MB (PSS of the process tree)")
        except Exception as exc:  # noqa: BLE001
            results["errors"].append(f"audit: {exc!r}")
            log(f"ERROR audit: {exc!r}")
            traceback.print_exc()

    if "provenance" in sections:
        from ledger.config import Settings

        from .audit import prepare
        from .provenance import run_provenance

        results["provenance"] = {}
        for backend in backends:
            try:
                if backend == "sqlite":
                    data, _, origin = prepare(a.audit_lots, a.out, log)
                    settings = Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=f"sqlite:///{data / 'filiera.db'}", log_level="WARNING")
                    log(f"provenance: sqlite, 10-step lineage added to the {a.audit_lots:,}-lot demo")
                    r = run_provenance(backend, settings=settings, lots=0, pg_url=a.pg_url, workdir=a.out, samples=a.provenance_samples, origin=origin)
                else:
                    if m["postgresql"] is None:
                        continue
                    log(f"provenance: postgresql, 10-step lineage added to a {a.provenance_pg_lots:,}-lot demo")
                    with tempfile.TemporaryDirectory(prefix="filiera-bench-") as tmp:
                        r = run_provenance(backend, settings=None, lots=a.provenance_pg_lots, pg_url=a.pg_url, workdir=Path(tmp), samples=a.provenance_samples, origin="bench.filiera.example")
                results["provenance"][backend] = r
                log(f"  {r['entries']} entries with proofs at tree size {r['tree_size']:,}: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
            except Exception as exc:  # noqa: BLE001
                results["errors"].append(f"{backend} provenance: {exc!r}")
                log(f"ERROR {backend} provenance: {exc!r}")
                traceback.print_exc()

    if "load" in sections:
        from .load import run_load

        load_backends = [b for b in backends if not (b == "postgresql" and m["postgresql"] is None)]
        try:
            results["load"] = run_load(
                load_backends, pg_url=a.pg_url, workers=[int(w) for w in a.load_workers.split(",")],
                clients=[int(c) for c in a.load_clients.split(",")],
                post_clients=[int(c) for c in a.load_post_clients.split(",")],
                seconds=a.load_seconds, demo_lots=a.load_demo_lots, out=a.out, log=log,
            )
        except Exception as exc:  # noqa: BLE001
            results["errors"].append(f"load: {exc!r}")
            log(f"ERROR load: {exc!r}")
            traceback.print_exc()

    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    _ratios(results)
    path = a.out / "results.json"
    if path.exists() and not a.quick:
        try:  # a partial run keeps the previous run's other sections, marked as carried over
            carry_over(results, json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            log(f"previous {path} not carried over: {exc!r}")
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print()
    print(render(results))
    print(f"\nresults: {path}  ({results['seconds']:.0f} s in all)")
    if not a.no_results_md:
        write_results_md(results, a.results_md, reliability=a.out / "reliability.json")
        print(f"markdown: {a.results_md} (generated part rewritten)")
    return 1 if results["errors"] else 0


def _ratios(results: dict[str, Any]) -> None:
    """Add each ingest figure's ratio to the 2-process verify rate of this run."""
    v2 = results["baseline"].get("verify_2", {}).get("per_s")
    if not v2:
        return
    for res in results["backends"].values():
        for name in ("single", "batch"):
            if name in res:
                r = res[name]
                r["ratio_to_2core_verify"] = r["entries_per_s"] / v2
                r["signature_ratio_to_2core_verify"] = r["entries_per_s"] * r["signatures_per_entry"] / v2
        if "demo" in res:
            res["demo"]["ratio_to_2core_verify"] = res["demo"]["entries_per_s"] / v2
    if "audit" in results:
        r = results["audit"]
        r["ratio_to_all_core_verify"] = r["entries_per_s"] / v2
        r["signature_ratio_to_all_core_verify"] = r["signatures_per_s"] / v2


if __name__ == "__main__":
    sys.exit(main())
