"""TESTPLAN T14, performance context: load on the public GETs and on signed POSTs through a real
``filiera serve`` with 2 and 3 gunicorn workers, on SQLite and PostgreSQL.

For each backend and worker count, one server runs on a small demo ledger (its lots give the
public reads something real to answer) with one 10-step lineage added. Then, with 1, 2, 4, ...
client processes (keep-alive ``http.client``, one connection each, ``seconds`` per step):

- ``get``: a round-robin of the public reads a shopper's phone and an auditor's script make:
  ``/p/{lot}`` (the product page), ``/v1/lots/{lot}/provenance`` (public view, with proofs),
  ``/v1/checkpoint`` and ``/v1/proofs/inclusion?index=`` at random indices;
- ``post``: signed ``key.add`` entries (two signatures each) posted one per request, as in the
  single-ingest section.

Every step reports requests/s, p50/p99 latency, non-2xx answers, and the CPU seconds of the
gunicorn processes, of PostgreSQL and of the clients, so the split between app and database is
visible. The **saturation point** is the smallest client count that reaches 90% of the best
throughput of the ramp (more clients only queue). POSTs are also put beside the raw 2-core Ed25519 verify rate of
the same run. Rate limits are off (bench/server.py): this measures Filiera, not the limiter.
"""

from __future__ import annotations

import http.client
import itertools
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .ingest import _run_clients, _single_client, percentile, register_members, timed_requests
from .server import HOST, Server, serve
from .workload import ORIGIN, Database, database

__all__ = ["run_load", "saturation"]


def _get_client(port: int, paths: list[str], seconds: float, seed: int, barrier: Any, out: Any) -> None:
    rng = random.Random(seed)
    order = paths[:]
    rng.shuffle(order)
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    for path in order[:8]:  # warm-up: connections, caches, the first template render
        conn.request("GET", path)
        conn.getresponse().read()
    barrier.wait()
    requests = (("GET", path, None) for path in itertools.cycle(order))
    out.put(timed_requests(conn, port, requests, seconds=seconds, timeout=60))


def _summarise(reports: list[dict[str, Any]], t0: float, cpu: dict[str, float], ok: set[int]) -> dict[str, Any]:
    records = [r for rep in reports for r in rep["records"]]
    good = [r for r in records if r[2] in ok]
    end = max((t + lat for t, lat, _ in records), default=t0)
    wall = max(end - t0, 1e-9)
    latencies = [lat * 1000 for _, lat, _ in good]
    return {
        "requests": len(records),
        "ok": len(good),
        "errors": len(records) - len(good),
        "seconds": round(wall, 3),
        "per_s": round(len(good) / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
        "cpu": {k: round(v, 2) for k, v in cpu.items()},
    }


def saturation(steps: list[dict[str, Any]], *, within: float = 0.10) -> int | None:
    """The smallest client count whose throughput is within ``within`` of the best step's: more
    clients than that only queue. None when only the last step gets there (still growing)."""
    if not steps:
        return None
    best = max(s["per_s"] for s in steps)
    first = next(s for s in steps if s["per_s"] >= best * (1 - within))
    return None if first is steps[-1] and len(steps) > 1 else int(first["clients"])


def _public_paths(server: Server, lots: list[str], tree_size: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        lot = lots[i % len(lots)]
        paths += [
            f"/p/{lot}",
            f"/v1/lots/{lot}/provenance",
            "/v1/checkpoint",
            f"/v1/proofs/inclusion?index={rng.randrange(tree_size)}&tree_size={tree_size}",
        ]
    # Fail early, not after minutes of load, if a path is wrong.
    conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
    for path in paths[:4]:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
    conn.close()
    return paths


def _prepare(db: Database, demo_lots: int) -> tuple[list[str], int]:
    """A demo ledger with a 10-step lineage; returns lots to read and the tree size."""
    from api.demo import build_demo
    from ledger.config import Settings
    from ledger.storage.store import Store
    from sqlalchemy import text

    from .provenance import add_lineage

    settings = Settings.from_env(
        {}, data_dir=db.data_dir, ledger_key_file=db.data_dir / "ledger.key", database_url=db.url, log_level="WARNING"
    )
    build_demo(settings, origin=ORIGIN, if_missing=False, lots=demo_lots)
    final = add_lineage(settings, origin=ORIGIN)
    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
            assert head is not None
            others = [str(r[0]) for r in conn.execute(text("SELECT lot FROM lots ORDER BY lot LIMIT 40"))]
    finally:
        store.dispose()
    return [final, *others], head.tree_size


def run_load(
    backends: list[str],
    *,
    pg_url: str,
    workers: list[int],
    clients: list[int],
    post_clients: list[int],
    seconds: float,
    demo_lots: int,
    out: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every backend x worker count: a GET ramp and a POST ramp. Returns results by backend."""
    results: dict[str, Any] = {}
    for backend in backends:
        results[backend] = {}
        for w in workers:
            with tempfile.TemporaryDirectory(prefix="filiera-load-") as tmp, database(backend, pg_url=pg_url, workdir=Path(tmp)) as db:
                log(f"load: {backend}, {w} workers: demo of {demo_lots} lots + a 10-step lineage")
                lots, tree_size = _prepare(db, demo_lots)
                from ledger.keys import read_key_file

                admin = read_key_file(db.data_dir / "admin.key").signing_key
                with serve(db, workers=w, log=out / f"server-load-{backend}-{w}.log") as server:
                    paths = _public_paths(server, lots, tree_size, 64, seed=w)
                    gets = []
                    for n in clients:
                        reports, t0, cpu = _run_clients(
                            server, backend, _get_client,
                            [(server.port, paths, seconds, 1000 * n + i) for i in range(n)],
                            timeout=seconds + 120,
                        )
                        step = {"clients": n, **_summarise(reports, t0, cpu, {200})}
                        gets.append(step)
                        log(f"  GET  x{n:<2}: {step['per_s']:8.1f} req/s, p50 {step['p50_ms']} ms, "
                            f"p99 {step['p99_ms']} ms, errors {step['errors']}, cpu {step['cpu']}")
                    members = register_members(server.port, admin.seed, 4 * max(post_clients), prefix="load")
                    posts = []
                    for n in post_clients:
                        shares = [members[i::n] for i in range(n)]
                        reports, t0, cpu = _run_clients(
                            server, backend, _single_client,
                            [(server.port, share, 4000, 5, seconds) for share in shares],
                            timeout=seconds + 300,
                        )
                        step = {"clients": n, **_summarise(reports, t0, cpu, {201})}
                        posts.append(step)
                        log(f"  POST x{n:<2}: {step['per_s']:8.1f} entries/s, p50 {step['p50_ms']} ms, "
                            f"p99 {step['p99_ms']} ms, errors {step['errors']}, cpu {step['cpu']}")
                results[backend][str(w)] = {
                    "tree_size": tree_size,
                    "get": gets,
                    "get_saturation_clients": saturation(gets),
                    "post": posts,
                    "post_saturation_clients": saturation(posts),
                }
    return results
