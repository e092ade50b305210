"""Scale-out, part 1 (docs/operations.md, "Scaling out"): several independent ``filiera serve``
nodes, each its own gunicorn, on one PostgreSQL database.

Appends stay serialized across nodes by the transaction-scoped advisory lock
(ledger/storage/store.py), and every node groups what its own workers have waiting. The test
posts signed entries from 8 client threads, each spreading its entries over every node in
turn (so one member's consecutive entries land on different nodes), while a sampler reads
``GET /v1/checkpoint`` from every node.

Asserted: every answer is 201; the acknowledged indices are exactly the new positions, each
once, and every acknowledged entry is stored once, at that index; the chain checks of
``check_chain`` and ``filiera verify`` pass; every checkpoint any node served during the run
verifies under the ledger's key and is a prefix of the final tree (a consistency proof from
another node), no node's tree size ever went backwards, and at the end every node serves the
same checkpoint. Nothing about speed is asserted: the throughput of the same load on one node
and on all nodes goes to ``bench/out/scale_out_<nodes>x<workers>.json``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from ledger.keys import SigningKey
from ledger.merkle import verify_consistency
from ledger.notes import Checkpoint, verifier_for, verify_checkpoint
from ledger.sealing import Sealer
from ledger.storage import schema as t
from ledger.storage.store import make_engine

from ..conftest import BACKENDS, LedgerEnv
from ..factories import ORIGIN, Member, key_add
from .conftest import FILIERA, REPO, Server, check_chain, register_members, server_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

POSTGRES = [b for b in BACKENDS if b == "postgresql"]
NODES = 3
WORKERS_PER_NODE = 2
THREADS = 8
# Entries per client thread in each phase; a repetition is one phase on one node, then one on
# every node (more repetitions only make the throughput figures steadier).
APPENDS = int(os.environ.get("FILIERA_SCALE_OUT_APPENDS", "40"))
REPS = int(os.environ.get("FILIERA_SCALE_OUT_REPS", "1"))
REQUEST_TIMEOUT_S = 120.0
OUT_DIR = REPO / "bench" / "out"


@dataclass
class Phase:
    """What one phase's requests got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    acknowledged: dict[str, int] = field(default_factory=dict)  # entry id -> index
    by_node: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0


def get_text(server: Server, path: str) -> tuple[int, str]:
    conn = server.connection(timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8")
    finally:
        conn.close()


def _client(
    servers: list[Server], offset: int, bodies: list[tuple[str, bytes]], start: threading.Barrier,
    phase: Phase, lock: threading.Lock,
) -> None:
    """Post entry k to server ``(offset + k) % len(servers)``, one keep-alive connection per
    server; record what came back."""
    conns = [s.connection(timeout=REQUEST_TIMEOUT_S) for s in servers]
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    acknowledged: dict[str, int] = {}
    by_node: Counter[int] = Counter()
    start.wait(timeout=60)
    try:
        for k, (entry_id, body) in enumerate(bodies):
            n = (offset + k) % len(servers)
            try:
                conns[n].request("POST", "/v1/entries", body=body, headers={"Content-Type": "application/json"})
                resp = conns[n].getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                # Not retried: the test wants to see every dropped connection.
                errors[f"node {n}: {type(exc).__name__}"] += 1
                conns[n].close()
                conns[n] = servers[n].connection(timeout=REQUEST_TIMEOUT_S)
                continue
            statuses[resp.status] += 1
            if resp.status == 201:
                answer = json.loads(data)
                assert answer["id"] == entry_id
                acknowledged[entry_id] = int(answer["index"])
                by_node[n] += 1
            else:
                errors[f"node {n}: {resp.status} {data[:200]!r}"] += 1
    finally:
        for c in conns:
            c.close()
    with lock:
        phase.statuses.update(statuses)
        phase.errors.update(errors)
        phase.acknowledged.update(acknowledged)
        phase.by_node.update(by_node)


def _bodies(members: list[Member]) -> list[list[tuple[str, bytes]]]:
    """Every request body (and the entry id it must be acknowledged under), built before the
    clock starts."""
    from ledger.entries import parse_envelope

    out = []
    for m in members:
        bodies = []
        for _ in range(APPENDS):
            env = key_add(m, SigningKey.generate())
            bodies.append((parse_envelope(env, origin=ORIGIN).id, json.dumps(env).encode("utf-8")))
        out.append(bodies)
    return out


def _run_phase(servers: list[Server], members: list[Member]) -> Phase:
    bodies = _bodies(members)
    phase = Phase()
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(_client, servers, i, b, start, phase, lock) for i, b in enumerate(bodies)]
        start.wait(timeout=60)
        began = time.perf_counter()
        for f in futures:
            f.result()
        phase.seconds = time.perf_counter() - began
    return phase


class _Sampler:
    """Reads every node's checkpoint in turn until stopped: (node, note) in the order read."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.samples: list[tuple[int, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for n, server in enumerate(self.servers):
                try:
                    status, text = get_text(server, "/v1/checkpoint")
                except (OSError, http.client.HTTPException) as exc:
                    self.failures.append(f"node {n}: {type(exc).__name__}")
                    continue
                if status == 200:
                    self.samples.append((n, text))
                else:
                    self.failures.append(f"node {n}: {status} {text[:200]}")
            self._stop.wait(0.05)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _stored(env: LedgerEnv, ids: list[str]) -> dict[str, list[int]]:
    """Every stored index of each of ``ids``."""
    found: dict[str, list[int]] = {i: [] for i in ids}
    engine = make_engine(env.settings)
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(select(t.entries.c.id, t.entries.c.idx).where(t.entries.c.id.in_(chunk))):
                    found[row.id].append(row.idx)
    finally:
        engine.dispose()
    return found


def _check_samples(servers: list[Server], samples: list[tuple[int, str]], ledger_key: bytes) -> int:
    """Every sampled checkpoint verifies and is a prefix of the final tree, proven by a node
    other than the one that served it; no node's size goes backwards. Returns how many
    distinct checkpoints were checked."""
    verifier = verifier_for(ORIGIN, ledger_key)
    last: dict[int, int] = {}
    distinct: dict[int, Checkpoint] = {}
    for n, note in samples:
        cp = verify_checkpoint(note, verifier=verifier, origin=ORIGIN)
        assert cp.tree_size >= last.get(n, 0), f"node {n} went back from tree size {last[n]} to {cp.tree_size}"
        last[n] = cp.tree_size
        seen = distinct.setdefault(cp.tree_size, cp)
        # Two checkpoints of one size from any two nodes name the same tree.
        assert seen.root == cp.root, f"two roots for tree size {cp.tree_size}"
    _, final_text = get_text(servers[0], "/v1/checkpoint")
    final = verify_checkpoint(final_text, verifier=verifier, origin=ORIGIN)
    for i, (size, cp) in enumerate(sorted(distinct.items())):
        prover = servers[i % len(servers)]
        status, proof = prover.get_json(f"/v1/proofs/consistency?from={size}&to={final.tree_size}")
        assert status == 200, proof
        verify_consistency(
            old_size=size, new_size=final.tree_size, proof=[bytes.fromhex(h) for h in proof["hashes"]],
            old_root=cp.root, new_root=final.root,
        )
    return len(distinct)


def _summary(phase: Phase, nodes: int) -> dict[str, Any]:
    count = sum(phase.statuses.values())
    return {
        "nodes": nodes,
        "workers_per_node": WORKERS_PER_NODE,
        "client_threads": THREADS,
        "appends": count,
        "seconds": round(phase.seconds, 3),
        "throughput_per_s": round(count / phase.seconds, 1) if phase.seconds else None,
        "acknowledged_by_node": {str(k): v for k, v in sorted(phase.by_node.items())},
    }


@pytest.mark.parametrize("db", POSTGRES, indirect=True)
def test_several_nodes_on_one_postgres(
    ledger_env: LedgerEnv,
    open_sealer: Callable[..., Sealer],
    start_server: Callable[..., Server],
) -> None:
    members = register_members(open_sealer(), ledger_env.admin, [f"supplier-{i:02d}" for i in range(THREADS)])
    # `filiera serve` (its pre-flight check, then gunicorn): each node a server of its own.
    servers = [start_server(ledger_env.settings, workers=WORKERS_PER_NODE, via_cli=True) for _ in range(NODES)]
    _, before = servers[0].get_json("/v1/health")
    first = int(before["tree_size"])

    # The same load, first on one node, then spread over all of them.
    ones: list[Phase] = []
    spreads: list[Phase] = []
    with _Sampler(servers) as sampler:
        for _ in range(REPS):
            ones.append(_run_phase(servers[:1], members))
            spreads.append(_run_phase(servers, members))

    total = 2 * REPS * THREADS * APPENDS
    acknowledged: dict[str, int] = {}
    for phase in ones + spreads:
        assert phase.errors == Counter(), f"{phase.errors}\n{servers[0].log_tail()}"
        assert phase.statuses == {201: THREADS * APPENDS}
        acknowledged.update(phase.acknowledged)
    for phase in spreads:
        assert set(phase.by_node) == set(range(NODES))
    assert len(acknowledged) == total
    # The acknowledged indices are exactly the new positions, each once ...
    assert sorted(acknowledged.values()) == list(range(first, first + total))
    # ... and every acknowledged entry is stored once, at the index its node answered.
    stored = _stored(ledger_env, list(acknowledged))
    assert {i: idx for i, idx in stored.items() if idx != [acknowledged[i]]} == {}

    facts = check_chain(ledger_env.settings)
    assert facts.report.entries == first + total
    verified = subprocess.run(
        [FILIERA, "verify", "--json"], env=server_env(ledger_env.settings, {}), cwd=REPO,
        capture_output=True, text=True, timeout=300,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["entries"] == first + total

    assert sampler.failures == []
    assert {n for n, _ in sampler.samples} == set(range(NODES))
    distinct = _check_samples(servers, sampler.samples, ledger_env.ledger_key.public_key.raw)
    finals = {get_text(s, "/v1/checkpoint") for s in servers}
    assert len(finals) == 1, finals
    for server in servers:
        assert "Traceback" not in server.log.read_text(errors="replace"), server.log_tail()

    result = {
        "test": "scale-out: several filiera serve nodes on one PostgreSQL",
        "entry_type": "key.add (each member adds fresh keys of its own)",
        "repetitions": REPS,
        "one_node": [_summary(p, 1) for p in ones],
        "all_nodes": [_summary(p, NODES) for p in spreads],
        "blocks": facts.report.blocks,
        "mean_block_entries": round(facts.report.entries / max(1, facts.report.blocks), 2),
        "checkpoints_sampled": len(sampler.samples),
        "distinct_checkpoints_checked": distinct,
        "cores": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"scale_out_{NODES}x{WORKERS_PER_NODE}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nscale-out: 1 node {[r['throughput_per_s'] for r in result['one_node']]}/s, "
          f"{NODES} nodes {[r['throughput_per_s'] for r in result['all_nodes']]}/s -> {path}")
