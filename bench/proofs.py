"""Proof latency on large ledgers (10k and 100k entries), SQLite and PostgreSQL.

Every ledger here is valid and built by Filiera's own code: signed ``participant.register``
entries by the admin go through ``Sealer.submit_batch`` in chunks of 2,000 (the intake, rules
and sealing of the HTTP API, minus HTTP), so blocks hold up to 2,000 entries. The entries are
signed in two processes before the sealing clock starts.

- SQLite: one ledger grown through each size, built entirely by ``submit_batch``.
- PostgreSQL: the smallest size is built by ``submit_batch`` too (its build rate is reported).
  For the larger sizes the SQLite ledger just built is copied row for row (entries, blocks,
  Merkle nodes and the participant projection) into a fresh schema, because sealing 100k
  entries one round trip at a time would take PostgreSQL several minutes; the copy is the same
  valid ledger (same ledger key), so proofs read the same number of rows as on a sealed one.

Proofs are timed two ways: through the Flask test client (routing, query parsing, JSON) and as
the bare store + Merkle call the route makes. Five proofs of each kind are checked with
``verify_inclusion`` / ``verify_consistency`` before timing.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .ingest import percentile
from .workload import ORIGIN, Database, database, register_bodies

__all__ = ["run_proofs"]

CHUNK = 2000


def _envelopes(admin_seed: bytes, first: int, count: int, prefix: str) -> list[dict[str, Any]]:
    return register_bodies(admin_seed, first, count, prefix)


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


def _time_proofs(app: Any, store: Any, size: int, samples: int, rng: random.Random) -> dict[str, Any]:
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


class _Ledger:
    """A ledger on one database, initialised by ``init_ledger``, with an app over it."""

    def __init__(self, db: Database, *, ledger_key_file: Path | None = None, init: bool = True) -> None:
        from api import create_app
        from api.cli import init_ledger
        from ledger.config import Settings
        from ledger.keys import read_key_file

        self.settings = Settings.from_env(
            {},
            data_dir=db.data_dir,
            ledger_key_file=ledger_key_file or db.data_dir / "ledger.key",
            database_url=db.url,
            log_level="WARNING",
        )
        if init:
            init_ledger(self.settings, origin=ORIGIN, admin="admin", admin_name="Benchmark admin")
            self.admin_seed = read_key_file(self.settings.data_dir / "admin.key").signing_key.seed
        self.app = create_app(self.settings, background_sealing=False)
        svc = self.app.extensions["filiera"]
        self.store, self.sealer = svc.store, svc.sealer
        self.size = self.tree_size()

    def tree_size(self) -> int:
        with self.store.read() as conn:
            head = self.store.head(conn)
        return head.tree_size if head else 0

    def grow(self, pool: Any, target: int) -> tuple[float, float]:
        """Seal signed registrations until the log holds ``target`` entries: (sign s, seal s)."""
        want = target - self.size
        t = time.perf_counter()
        parts = [(self.admin_seed, self.size + i, min(CHUNK, want - i), "p") for i in range(0, want, CHUNK)]
        chunks = pool.starmap(_envelopes, parts)
        sign_s = time.perf_counter() - t
        t = time.perf_counter()
        for chunk in chunks:
            outcomes = self.sealer.submit_batch(chunk, wait=True)
            bad = [o for o in outcomes if o.status != "created"]
            if bad:
                raise RuntimeError(f"building the ledger: {bad[0].status} {bad[0].error}")
            self.size += len(chunk)
        seal_s = time.perf_counter() - t
        assert self.tree_size() == self.size == target, (self.tree_size(), self.size, target)
        return sign_s, seal_s

    def close(self) -> None:
        self.sealer.stop_background()
        self.store.dispose()


def _copy_ledger(src: _Ledger, dst: Database) -> float:
    """Copy ``src``'s log and projection, row for row, into the empty database ``dst``."""
    from sqlalchemy import select

    from ledger.config import Settings
    from ledger.storage import schema as t
    from ledger.storage.migrate import upgrade
    from ledger.storage.store import Store

    t0 = time.perf_counter()
    target = Store.open(Settings.from_env({}, database_url=dst.url), check=False)
    try:
        upgrade(target.engine)
        with src.store.read() as sconn, target.engine.begin() as dconn:
            for table in (t.entries, t.blocks, t.merkle_nodes, t.participants, t.participant_keys):
                result = sconn.execute(select(table)).mappings()
                while rows := result.fetchmany(5000):
                    dconn.execute(table.insert(), [dict(r) for r in rows])
    finally:
        target.dispose()
    return time.perf_counter() - t0


def run_proofs(
    backends: list[str],
    *,
    pg_url: str,
    workdir: Path,
    sizes: list[int],
    samples: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time proofs at each of ``sizes`` on each backend; see the module docstring."""
    rng = random.Random(seed)
    out: dict[str, Any] = {b: {"entry_type": "participant.register", "chunk": CHUNK, "sizes": []} for b in backends}
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool, database("sqlite", pg_url=pg_url, workdir=workdir) as sdb:
        lite = _Ledger(sdb)
        sign_s = seal_s = 0.0
        try:
            for size in sizes:
                s1, s2 = lite.grow(pool, size)
                sign_s, seal_s = sign_s + s1, seal_s + s2
                log(f"    sqlite: {size} entries sealed by submit_batch in {seal_s:.1f} s")
                if "sqlite" in backends:
                    timing = _time_proofs(lite.app, lite.store, size, samples, rng)
                    timing |= {
                        "built_by": "submit_batch",
                        "build_s": round(seal_s, 2),
                        "build_entries_per_s": round((size - 1) / seal_s, 1),
                        "sign_s": round(sign_s, 2),
                    }
                    out["sqlite"]["sizes"].append(timing)
                if "postgresql" not in backends:
                    continue
                with database("postgresql", pg_url=pg_url, workdir=workdir) as pdb:
                    if size == sizes[0]:
                        pg = _Ledger(pdb)
                        built_by = "submit_batch"
                        s1, build_s = pg.grow(pool, size)
                    else:
                        build_s = _copy_ledger(lite, pdb)
                        built_by = "copied from the SQLite ledger"
                        pg = _Ledger(pdb, ledger_key_file=lite.settings.ledger_key_file, init=False)
                    log(f"    postgresql: {size} entries ({built_by}) in {build_s:.1f} s")
                    try:
                        timing = _time_proofs(pg.app, pg.store, size, samples, rng)
                    finally:
                        pg.close()
                    timing |= {"built_by": built_by, "build_s": round(build_s, 2)}
                    if built_by == "submit_batch":
                        timing["build_entries_per_s"] = round((size - 1) / build_s, 1)
                    out["postgresql"]["sizes"].append(timing)
        finally:
            lite.close()
    return out
