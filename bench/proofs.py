"""Proof latency on one ledger: inclusion and consistency, through the app and bare.

``bench.scale`` builds the ledgers (10k, 100k, 1M entries) and calls ``time_proofs`` on each.
Proofs are timed two ways: through the Flask test client (routing, query parsing, JSON) and as
the bare store + Merkle call the route makes. Five proofs of each kind are checked with
``verify_inclusion`` / ``verify_consistency`` before timing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from .ingest import percentile

__all__ = ["time_proofs"]


def _stats(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 4),
        "p95_ms": round(percentile(samples_ms, 95), 4),
        "p99_ms": round(percentile(samples_ms, 99), 4),
        "max_ms": round(max(samples_ms), 4),
    }


def _direct_inclusion(store: Any, index: int) -> list[bytes]:
    from ledger.merkle import Frontier, build_proof, inclusion_plan, plan_nodes

    with store.read() as conn:
        size = store.head(conn).tree_size
        entry = store.entry_by_index(conn, index)
        plan = inclusion_plan(index=entry.idx, tree_size=size)
        nodes = store.nodes(conn, plan_nodes(plan) | set(Frontier.needed(size)))
    return build_proof(plan, nodes)


def _direct_consistency(store: Any, old: int, new: int) -> list[bytes]:
    from ledger.merkle import Frontier, build_proof, consistency_plan, plan_nodes

    with store.read() as conn:
        store.head(conn)
        plan = consistency_plan(old_size=old, new_size=new)
        needed = plan_nodes(plan) | set(Frontier.needed(old)) | set(Frontier.needed(new))
        nodes = store.nodes(conn, needed)
    return build_proof(plan, nodes)


def _check_proofs(client: Any, size: int, rng: random.Random) -> None:
    """Warm up, and check that what is about to be timed is a correct proof."""
    from ledger.merkle import verify_consistency, verify_inclusion

    for i in rng.sample(range(size), 5):
        r = client.get(f"/v1/proofs/inclusion?index={i}")
        body = r.get_json()
        assert r.status_code == 200, body
        verify_inclusion(
            leaf_hash=bytes.fromhex(body["leaf_hash"]), index=i, tree_size=size,
            proof=[bytes.fromhex(h) for h in body["hashes"]], root=bytes.fromhex(body["root"]),
        )
    for _ in range(5):
        a = rng.randint(1, size)
        r = client.get(f"/v1/proofs/consistency?from={a}&to={size}")
        body = r.get_json()
        assert r.status_code == 200, body
        verify_consistency(
            old_size=a, new_size=size, proof=[bytes.fromhex(h) for h in body["hashes"]],
            old_root=bytes.fromhex(body["from_root"]), new_root=bytes.fromhex(body["to_root"]),
        )


def time_proofs(app: Any, store: Any, size: int, samples: int, rng: random.Random) -> dict[str, Any]:
    client = app.test_client()
    _check_proofs(client, size, rng)

    def timed(fn: Callable[[Any], Any], args: list[Any]) -> list[float]:
        ms = []
        for a in args:
            t = time.perf_counter()
            fn(a)
            ms.append((time.perf_counter() - t) * 1000)
        return ms

    def http_get(url: str) -> None:
        r = client.get(url)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.get_data(as_text=True)[:300]}")

    indices = [rng.randrange(size) for _ in range(samples)]
    pairs = [tuple(sorted((rng.randint(1, size), rng.randint(1, size)))) for _ in range(samples)]
    with store.read() as conn:
        head = store.head(conn)
    return {
        "tree_size": size,
        "blocks": head.height + 1,
        "inclusion_http": _stats(timed(http_get, [f"/v1/proofs/inclusion?index={i}" for i in indices])),
        "inclusion_direct": _stats(timed(lambda i: _direct_inclusion(store, i), indices)),
        "consistency_http": _stats(
            timed(http_get, [f"/v1/proofs/consistency?from={a}&to={b}" for a, b in pairs])
        ),
        "consistency_direct": _stats(timed(lambda p: _direct_consistency(store, *p), pairs)),
    }
