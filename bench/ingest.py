"""Ingest over HTTP: single-entry posts from concurrent clients, and 1,000-entry batches.

Clients are separate processes (spawned), one keep-alive ``http.client`` connection each. They
build and sign all their entries first, then wait at a barrier; only then does the clock start.
Each run is bounded both by the number of prepared entries and by a deadline.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterable
from typing import Any

from .server import HOST, TICK, Server, cpu_ticks, postgres_pids

__all__ = ["run_single", "run_batch", "register_members", "percentile", "timed_requests"]

JSON = {"Content-Type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers=JSON)
    resp = conn.getresponse()
    return resp.status, resp.read()


def register_members(port: int, admin_seed: bytes, count: int, prefix: str = "m") -> list[tuple[str, bytes]]:
    """Register ``count`` members through the batch endpoint; returns (id, key seed) pairs."""
    from ledger.keys import SigningKey

    from .workload import member_ids, register_envelope

    admin = SigningKey(admin_seed)
    members = [(m, SigningKey.generate()) for m in member_ids(count, prefix)]
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    for i in range(0, count, 1000):
        chunk = [register_envelope(admin, m, k) for m, k in members[i : i + 1000]]
        status, body = _post(conn, "/v1/entries/batch", json.dumps({"entries": chunk}).encode())
        results = json.loads(body)["results"] if status == 200 else []
        if status != 200 or any(r["status"] != 201 for r in results):
            raise RuntimeError(f"registering members failed: {status} {body[:500]!r}")
    conn.close()
    return [(m, k.seed) for m, k in members]


# --- client processes -------------------------------------------------------------------


def _single_client(
    port: int,
    members: list[tuple[str, bytes]],
    count: int,
    warmup: int,
    seconds: float,
    barrier: Any,
    out: Any,
) -> None:
    from .workload import key_add_bodies

    bodies = key_add_bodies(members, count + warmup)
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    for body in bodies[:warmup]:
        _post(conn, "/v1/entries", body)
    barrier.wait()
    requests = (("POST", "/v1/entries", body) for body in bodies[warmup:])
    out.put(timed_requests(conn, port, requests, seconds=seconds, timeout=120))


def timed_requests(
    conn: http.client.HTTPConnection, port: int, requests: Iterable[tuple[str, str, bytes | None]], *, seconds: float, timeout: float
) -> dict[str, Any]:
    """Send ``requests`` (method, path, JSON body or None) one at a time on ``conn`` until they
    run out or ``seconds`` pass; a broken connection is reopened and counts as status -1.
    Returns ``{"records": [(start, latency, status)], "cpu_s": ...}`` and closes ``conn``."""
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    records: list[tuple[float, float, int]] = []
    for method, path, body in requests:
        t = time.monotonic()
        if t >= deadline:
            break
        try:
            conn.request(method, path, body=body, headers=JSON if body is not None else {})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
            status = -1
        records.append((t, time.monotonic() - t, status))
    cpu = time.process_time() - cpu0
    conn.close()
    return {"records": records, "cpu_s": cpu}


def _batch_client(
    port: int,
    members: list[tuple[str, bytes]],
    batches: int,
    size: int,
    barrier: Any,
    out: Any,
) -> None:
    from .workload import key_add_bodies

    bodies = [
        b'{"entries":[' + b",".join(key_add_bodies(members, size)) + b"]}" for _ in range(batches)
    ]
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    barrier.wait()
    cpu0 = time.process_time()
    records = []
    for body in bodies:
        t = time.monotonic()
        status, raw = _post(conn, "/v1/entries/batch", body)
        elapsed = time.monotonic() - t
        statuses: dict[str, int] = {}
        if status == 200:
            for r in json.loads(raw)["results"]:
                statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        records.append({"t": t, "latency": elapsed, "http": status, "results": statuses, "bytes": len(body)})
    cpu = time.process_time() - cpu0
    conn.close()
    out.put({"records": records, "cpu_s": cpu})


def _head(port: int) -> tuple[int, int]:
    """(height, tree_size) from GET /v1/health."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/v1/health")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return int(body["height"]), int(body["tree_size"])


def _blocks(before: tuple[int, int], after: tuple[int, int]) -> dict[str, float]:
    blocks, entries = after[0] - before[0], after[1] - before[1]
    return {"blocks": blocks, "entries_per_block": round(entries / blocks, 2) if blocks else 0.0}


def _run_clients(
    server: Server, backend: str, target: Any, args_for: list[tuple[Any, ...]], timeout: float
) -> tuple[list[dict[str, Any]], float, dict[str, float]]:
    """Start the clients, release them together, collect what they report and CPU used."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(args_for) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in args_for]
    for p in procs:
        p.start()
    barrier.wait(timeout=timeout)
    server_pids = server.pids()
    pg = postgres_pids() if backend == "postgresql" else []
    before = cpu_ticks(server_pids + pg)
    t0 = time.monotonic()
    reports = [out.get(timeout=timeout) for _ in procs]
    wall = time.monotonic() - t0
    after = cpu_ticks(server_pids + (postgres_pids() if backend == "postgresql" else []))
    for p in procs:
        p.join(timeout=30)

    def used(pids: list[int]) -> float:
        return sum(after.get(p, 0) - before.get(p, 0) for p in pids if p in after) / TICK

    cpu = {
        "server_s": used(server_pids),
        "postgres_s": used([p for p in after if p not in server_pids]) if backend == "postgresql" else 0.0,
        "clients_s": sum(r["cpu_s"] for r in reports),
    }
    return reports, t0, cpu | {"wall_s": wall}


def run_single(
    server: Server,
    backend: str,
    members: list[tuple[str, bytes]],
    *,
    clients: int,
    per_client: int,
    seconds: float,
    warmup: int = 10,
) -> dict[str, Any]:
    """``clients`` processes post one entry per request for at most ``seconds`` each."""
    shares = [members[i::clients] for i in range(clients)]
    before = _head(server.port)
    reports, t0, cpu = _run_clients(
        server,
        backend,
        _single_client,
        [(server.port, share, per_client, warmup, seconds) for share in shares],
        timeout=seconds + 300,
    )
    records = [r for rep in reports for r in rep["records"]]
    ok = [r for r in records if r[2] == 201]
    end = max(t + lat for t, lat, _ in records)
    wall = end - t0
    latencies = [lat * 1000 for _, lat, _ in ok]
    statuses: dict[str, int] = {}
    for _, _, s in records:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {
        "clients": clients,
        "entry_type": "key.add",
        "signatures_per_entry": 2,
        "requests": len(records),
        "statuses": statuses,
        "entries": len(ok),
        "seconds": round(wall, 3),
        "entries_per_s": len(ok) / wall,
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "mean_ms": statistics.fmean(latencies) if latencies else None,
        "cpu": {k: round(v, 2) for k, v in cpu.items()},
        # Warm-up posts are included: they were sealed too.
        "sealing": _blocks(before, _head(server.port)),
    }


def run_batch(
    server: Server,
    backend: str,
    members: list[tuple[str, bytes]],
    *,
    clients: int,
    batches: int,
    size: int,
) -> dict[str, Any]:
    """``clients`` processes each post ``batches`` requests of ``size`` entries, one at a time."""
    shares = [members[i::clients] for i in range(clients)]
    before = _head(server.port)
    reports, t0, cpu = _run_clients(
        server,
        backend,
        _batch_client,
        [(server.port, share, batches, size) for share in shares],
        timeout=900,
    )
    records = [r for rep in reports for r in rep["records"]]
    created = sum(r["results"].get("201", 0) for r in records)
    end = max(r["t"] + r["latency"] for r in records)
    wall = end - t0
    statuses: dict[str, int] = {}
    for r in records:
        for k, v in r["results"].items():
            statuses[k] = statuses.get(k, 0) + v
    latencies = [r["latency"] * 1000 for r in records]
    return {
        "clients": clients,
        "batches": len(records),
        "batch_size": size,
        "entry_type": "key.add",
        "signatures_per_entry": 2,
        "http_statuses": sorted({r["http"] for r in records}),
        "entry_statuses": statuses,
        "entries": created,
        "seconds": round(wall, 3),
        "entries_per_s": created / wall,
        "request_p50_ms": percentile(latencies, 50),
        "request_max_ms": max(latencies),
        "body_bytes": max(r["bytes"] for r in records),
        "cpu": {k: round(v, 2) for k, v in cpu.items()},
        "sealing": _blocks(before, _head(server.port)),
    }
