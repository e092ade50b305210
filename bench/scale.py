"""Ledgers of 10k, 100k and 1M entries: proof latency, append cost and provenance at each size.

The ledgers
-----------
Each ledger starts as a small ``filiera demo`` (``api.demo.build_demo``, 30 lots: the
consortium registered, its keys in the data directory, about a hundred supply-chain entries),
then grows to its size with signed ``participant.register`` entries sealed by
``Sealer.submit_batch`` in chunks of 2,000 (Filiera's own intake, rules and sealing, minus
HTTP; blocks of up to 2,000 entries). Entries are signed in two worker processes, one round
ahead of the sealing, so signing overlaps sealing; the build time reported is the wall time of
the whole growth (signing included) and of the sealing calls alone.

A built ledger is cached under ``bench/out/cache/ledger-<size>-<code version>/`` (the SQLite
file and the key files), where the code version is a hash of ``ledger/``, ``migrations/``,
``api/demo.py``, ``bench/workload.py`` and ``BUILD_VERSION`` below: a change to any of them builds afresh; delete the directory to
rebuild by hand. A size missing from the cache grows from the largest cached smaller one, so a
first run builds 10k, then 100k from it, then 1M from that. Measurements never touch the cache:
each size is measured on a copy.

On each backend
---------------
- SQLite: a copy of the cached file. PostgreSQL: the cached ledger copied into a fresh schema
  with ``COPY ... FROM STDIN`` (every table of the schema, row for row: the same valid ledger,
  same ledger key), then ``ANALYZE``; the copy time is reported.
- proofs: inclusion and consistency proof latency, p50/p95/p99, through the Flask test client
  and as the bare store + Merkle calls (``bench.proofs``), at exactly ``size`` entries.
- append cost: ``rounds`` rounds of ``batches`` × ``submit_batch`` of ``batch_size`` fresh
  registrations (each call seals one block and builds each entry's receipt, ``wait=True``), then
  ``singles`` single-entry ``submit_batch`` calls (one entry, one block, one receipt each), all
  signed beforehand. Every size of a backend is open at once and the rounds alternate between
  them (smallest to largest, then back), so that load from elsewhere on the machine falls on all
  sizes alike: each round gives a paired ratio to the smallest size, and the lowest and highest
  of those ratios are its noise band. Reported: the median round's µs per entry, every round,
  the median paired ratio and its band. One more round runs first and is reported apart
  (``warmup_entries_per_s``): it pays for warming the caches of a store just opened on a freshly
  copied file.
- provenance: the 10-step lineage of ``bench.provenance.add_lineage`` (23 entries) is sealed,
  then ``GET /v1/lots/{lot}/provenance`` of its final lot is timed ``samples`` times
  (``bench.provenance.time_provenance``): p50/p95/p99.
- the database's size on disk (SQLite file, or the schema's relations on PostgreSQL).

Before measuring, what the copy left dirty is flushed (``os.sync``, and a ``CHECKPOINT`` on
PostgreSQL): without it, the writeback of a 1.2 GB copy lands on the append measurement's
commits. Then the file (SQLite) and the tables proofs and provenance read are read once, as on a
server that has been up a while: otherwise a proof's first random reads of a 1.2 GB file just
copied may go to the disk, and the disk's latency would be timed instead of Filiera.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .workload import ORIGIN, database, register_envelope

__all__ = ["build_ledgers", "code_version", "ensure_ledger", "run_scale"]

BUILD_VERSION = "1"  # raise when _grow or ensure_ledger change what a built ledger holds
CHUNK = 2000
DEMO_LOTS = 30
ROUND_CHUNKS = 10  # chunks signed per round (20,000 entries), one round ahead of sealing
REPO = Path(__file__).resolve().parents[1]
Log = Callable[[str], None]


def code_version() -> str:
    """A hash of the code that decides what a built ledger holds."""
    h = hashlib.sha256()
    h.update(BUILD_VERSION.encode())
    files = sorted([*REPO.glob("ledger/**/*.py"), *REPO.glob("migrations/**/*.py"), REPO / "api" / "demo.py", REPO / "bench" / "workload.py"])
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _sign_registrations(admin_seed: bytes, first: int, count: int, prefix: str) -> list[dict[str, Any]]:
    from ledger.keys import SigningKey

    admin = SigningKey(admin_seed)
    return [register_envelope(admin, f"{prefix}{i:07d}", SigningKey.generate()) for i in range(first, first + count)]


def _settings(data: Path, url: str | None = None) -> Any:
    from ledger.config import Settings

    return Settings.from_env(
        {}, data_dir=data, ledger_key_file=data / "ledger.key",
        database_url=url or f"sqlite:///{data / 'filiera.db'}", log_level="WARNING",
    )


def _tree_size(settings: Any) -> int:
    from ledger.storage.store import Store

    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
        return head.tree_size if head else 0
    finally:
        store.dispose()


def _copy_dir(src: Path, dst: Path) -> None:
    """Copy a closed ledger directory (database file, WAL if any, key files), modes kept."""
    dst.mkdir(parents=True, exist_ok=True)
    dst.chmod(0o700)
    for f in src.iterdir():
        if f.is_file() and f.name != "meta.json" and not f.name.endswith("-shm"):
            shutil.copy2(f, dst / f.name)


def _grow(data: Path, target: int, pool: Any, log: Log) -> dict[str, float]:
    """Seal registrations into the ledger at ``data`` until it holds ``target`` entries."""
    from ledger.keys import read_key_file
    from ledger.sealing import Sealer
    from ledger.storage.store import Store

    settings = _settings(data)
    admin_seed = read_key_file(data / "admin.key").signing_key.seed
    store = Store.open(settings)
    sealer = Sealer(store, signing_key=read_key_file(settings.ledger_key_file).signing_key)
    started = time.perf_counter()
    seal_s = 0.0
    try:
        with store.read() as conn:
            head = store.head(conn)
        size = head.tree_size if head else 0
        want = target - size
        parts = [(admin_seed, size + i, min(CHUNK, want - i), "r") for i in range(0, want, CHUNK)]
        rounds = [parts[i:i + ROUND_CHUNKS] for i in range(0, len(parts), ROUND_CHUNKS)]
        pending = pool.starmap_async(_sign_registrations, rounds[0]) if rounds else None
        for k in range(len(rounds)):
            assert pending is not None
            chunks = pending.get()
            pending = pool.starmap_async(_sign_registrations, rounds[k + 1]) if k + 1 < len(rounds) else None
            t = time.perf_counter()
            for chunk in chunks:
                outcomes = sealer.submit_batch(chunk, wait=False, raise_first=True)
                queued = sum(1 for o in outcomes if o.status == "pending")
                sealed = sealer.seal_pending()
                if len(sealed) != queued:
                    raise RuntimeError(f"building the ledger: sealed {len(sealed)} of {queued}")
                size += len(chunk)
            seal_s += time.perf_counter() - t
            if k % 5 == 4 or k + 1 == len(rounds):
                el = time.perf_counter() - started
                log(f"      {size:,} entries, {el:.0f} s ({(size - target + want) / el:,.0f} entries/s)")
    finally:
        sealer.stop_background()
        store.dispose()
    assert _tree_size(settings) == target, (_tree_size(settings), target)
    return {"grow_s": round(time.perf_counter() - started, 2), "seal_s": round(seal_s, 2), "entries": want}


def ensure_ledger(size: int, *, cache: Path, pool: Any, log: Log) -> tuple[Path, dict[str, Any]]:
    """The cached ledger of ``size`` entries for this code version, built if missing.

    One process builds a given size at a time (a lock file beside it): another run that wants
    it waits, then reuses it."""
    cache.mkdir(parents=True, exist_ok=True)
    version = code_version()
    with open(cache / f"ledger-{size}-{version}.lock", "w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"    another run is building the {size:,}-entry ledger: waiting for it")
            t = time.perf_counter()
            fcntl.flock(lock, fcntl.LOCK_EX)
            log(f"    waited {time.perf_counter() - t:,.0f} s")
        return _ensure_ledger(size, version=version, cache=cache, pool=pool, log=log)


def _ensure_ledger(size: int, *, version: str, cache: Path, pool: Any, log: Log) -> tuple[Path, dict[str, Any]]:
    from api.demo import build_demo

    path = cache / f"ledger-{size}-{version}"
    meta_file = path / "meta.json"
    if meta_file.exists():
        cached: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
        cached["reused"] = True
        log(f"    cached ledger of {size:,} entries reused: {path} (built {cached['built_at']})")
        return path, cached
    smaller = sorted(
        (int(p.name.split("-")[1]), p) for p in cache.glob(f"ledger-*-{version}")
        if (p / "meta.json").exists() and int(p.name.split("-")[1]) < size
    )
    tmp = cache / f".building-{size}-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    meta: dict[str, Any] = {"size": size, "code_version": version, "chunk": CHUNK, "demo_lots": DEMO_LOTS}
    t0 = time.perf_counter()
    if smaller:
        base_size, base = smaller[-1]
        t = time.perf_counter()
        _copy_dir(base, tmp)
        meta |= {"grown_from": base_size, "copy_s": round(time.perf_counter() - t, 2)}
        log(f"    building {size:,} entries from the cached {base_size:,}")
    else:
        tmp.mkdir(parents=True)
        tmp.chmod(0o700)
        t = time.perf_counter()
        s = build_demo(_settings(tmp), origin=ORIGIN, if_missing=False, lots=DEMO_LOTS)
        assert s is not None
        meta |= {"grown_from": 0, "demo_entries": s.entries, "demo_s": round(time.perf_counter() - t, 2)}
        log(f"    building {size:,} entries: a {DEMO_LOTS}-lot demo ({s.entries} entries), then registrations")
    meta |= _grow(tmp, size, pool, log)
    meta["build_s"] = round(time.perf_counter() - t0, 2)
    meta["built_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["db_bytes"] = (tmp / "filiera.db").stat().st_size
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.rename(path)
    meta["reused"] = False
    log(f"    built {size:,} entries in {meta['build_s']:.0f} s (sealing {meta['seal_s']:.0f} s); cached at {path}")
    return path, meta


def _copy_to_postgres(sqlite_file: Path, url: str) -> dict[str, Any]:
    """Copy every table of the SQLite ledger into the empty PostgreSQL database ``url``."""
    from ledger.storage import schema as t
    from ledger.storage.migrate import upgrade
    from ledger.storage.store import Store

    started = time.perf_counter()
    target = Store.open(_settings(sqlite_file.parent, url), check=False)
    rows_copied: dict[str, int] = {}
    try:
        upgrade(target.engine)
        src = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
        try:
            have = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            with target.engine.begin() as dconn:
                pg = dconn.connection.driver_connection
                assert pg is not None
                for table in t.metadata.sorted_tables:
                    if table.name not in have or table.name in ("pending", "alembic_version"):
                        continue
                    cols = [c.name for c in table.columns]
                    quoted = ", ".join(f'"{c}"' for c in cols)
                    n = 0
                    cur = src.execute(f"SELECT {quoted} FROM \"{table.name}\"")  # noqa: S608 - names from our schema
                    with pg.cursor() as pcur, pcur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as cp:
                        while rows := cur.fetchmany(10_000):
                            for row in rows:
                                cp.write_row(row)
                            n += len(rows)
                    rows_copied[table.name] = n
        finally:
            src.close()
        copy_s = time.perf_counter() - started
        t1 = time.perf_counter()
        with target.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            for name in rows_copied:  # this schema's tables only, not the whole database
                conn.exec_driver_sql(f'ANALYZE "{name}"')
        analyze_s = time.perf_counter() - t1
    finally:
        target.dispose()
    return {"copy_s": round(copy_s, 2), "analyze_s": round(analyze_s, 2), "rows": rows_copied}


def _db_bytes(settings: Any) -> int | None:
    from ledger.storage.store import Store

    if settings.database_url.startswith("sqlite"):
        f = Path(settings.database_url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in f.parent.glob(f.name + "*"))
    store = Store.open(settings, check=False)
    try:
        with store.engine.connect() as conn:
            v = conn.exec_driver_sql(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            ).scalar()
        return int(v) if v is not None else None
    finally:
        store.dispose()


def _write_back(store: Any) -> float:
    """Copy back what the commits so far left to write, as the database would in the background
    (SQLite: a checkpoint of the whole WAL, which it then truncates; PostgreSQL: CHECKPOINT, which
    writes every dirty shared buffer and syncs), so that each timed round starts from the same
    state and none pays for another's. Returns the seconds it took."""
    t = time.perf_counter()
    if store.dialect == "sqlite":
        raw = store.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.close()
    else:
        with store.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    return time.perf_counter() - t


def _append_cost(
    sealers: dict[int, Any], admin_seeds: dict[int, bytes], *, tags: dict[int, str], rounds: int, batches: int,
    batch_size: int, singles: int, pool: Any, log: Log, backend: str,
) -> dict[int, dict[str, Any]]:
    """Append cost of every size, measured in rounds that alternate between the sizes.

    Each round appends ``batches`` × ``submit_batch`` of ``batch_size`` fresh registrations,
    then ``singles`` single-entry ``submit_batch`` calls, to each size in turn, the order of the
    sizes reversed every other round (ABBA...), so that whatever else loads the machine meanwhile
    falls on every size alike rather than on whichever size is measured last. The first round is
    a warm-up, reported apart. Each later round also gives a ratio per size (its cost over the
    smallest size's in that same round); their spread is the noise band of the ratio."""
    per_round = batches * batch_size + singles
    sizes = sorted(sealers)
    signed = {
        size: pool.starmap(_sign_registrations, [(admin_seeds[size], r * per_round, per_round, f"{tags[size]}-") for r in range(rounds + 1)])
        for size in sizes
    }
    us: dict[int, dict[str, list[float]]] = {size: {"batch": [], "single": []} for size in sizes}
    written: dict[int, dict[str, list[float]]] = {size: {"batch": [], "single": []} for size in sizes}
    for r in range(rounds + 1):
        for size in sizes if r % 2 == 0 else sizes[::-1]:
            sealer, envs = sealers[size], signed[size][r]
            bulk, one_by_one = envs[: batches * batch_size], envs[batches * batch_size:]
            t = time.perf_counter()
            for i in range(0, len(bulk), batch_size):
                out = sealer.submit_batch(bulk[i:i + batch_size], wait=True)
                if any(o.status != "created" for o in out):
                    raise RuntimeError(f"append: {next(o for o in out if o.status != 'created')}")
            us[size]["batch"].append(1e6 * (time.perf_counter() - t) / len(bulk))
            written[size]["batch"].append(1e6 * _write_back(sealer.store) / len(bulk))
            t = time.perf_counter()
            for env in one_by_one:
                (o,) = sealer.submit_batch([env], wait=True)
                if o.status != "created":
                    raise RuntimeError(f"append: {o}")
            us[size]["single"].append(1e6 * (time.perf_counter() - t) / max(1, len(one_by_one)))
            written[size]["single"].append(1e6 * _write_back(sealer.store) / max(1, len(one_by_one)))
        if r:
            log(f"    {backend} append round {r}/{rounds}: " + ", ".join(
                f"{size:,}: {us[size]['batch'][-1]:,.0f} / {us[size]['single'][-1]:,.0f} µs" for size in sizes))
    smallest = sizes[0]

    def summary(size: int, kind: str, n: int) -> dict[str, Any]:
        rounds_us = us[size][kind][1:]
        med = statistics.median(rounds_us)
        ratios = [a / b for a, b in zip(rounds_us, us[smallest][kind][1:], strict=True)]
        return {
            "entries_per_round": n, "rounds": len(rounds_us),
            "entries_per_s": round(1e6 / med, 1), "us_per_entry": round(med, 1),
            "rounds_entries_per_s": [round(1e6 / x, 1) for x in rounds_us],
            "rounds_us_per_entry": [round(x, 1) for x in rounds_us],
            "spread": round((max(rounds_us) - min(rounds_us)) / med, 3),
            "warmup_entries_per_s": round(1e6 / us[size][kind][0], 1),
            # The ratio to the smallest size: of the medians, and per round (paired, same minutes).
            "ratio_to_smallest": round(med / statistics.median(us[smallest][kind][1:]), 3),
            "round_ratios": [round(x, 3) for x in ratios],
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_band": [round(min(ratios), 3), round(max(ratios), 3)],
            # Copying back what the round's commits left in the WAL (SQLite) or in shared buffers
            # (PostgreSQL), done after each timed round, untimed there: µs per entry appended.
            "write_back_us_per_entry": round(statistics.median(written[size][kind][1:]), 1),
            "write_back_ratio_to_smallest": round(
                statistics.median(written[size][kind][1:]) / max(1e-9, statistics.median(written[smallest][kind][1:])), 3
            ),
        }

    return {
        size: {
            "interleaved": sizes,
            "batch": summary(size, "batch", batches * batch_size) | {"batch_size": batch_size, "batches": batches},
            "single": summary(size, "single", singles),
        }
        for size in sizes
    }


def _settle(settings: Any) -> float:
    """Flush what copying the ledger left dirty (the OS's page cache; PostgreSQL's buffers, by a
    CHECKPOINT), so that the writeback of a 1.2 GB copy does not land on the measurement's
    commits. Returns the seconds it took."""
    from ledger.storage.store import Store

    t = time.perf_counter()
    os.sync()
    if not settings.database_url.startswith("sqlite"):
        store = Store.open(settings, check=False)
        try:
            _write_back(store)
        finally:
            store.dispose()
        os.sync()
    return time.perf_counter() - t


def _warm(settings: Any) -> float:
    """Read the tables proofs and provenance use once, as a server that has been up a while
    has: the file just copied may not be in the OS's page cache, and random reads of a 1.2 GB
    file from disk would be timed instead of Filiera. Returns the seconds it took."""
    from ledger.storage.store import Store

    t = time.perf_counter()
    if settings.database_url.startswith("sqlite"):
        with open(Path(settings.database_url.removeprefix("sqlite:///")), "rb") as fh:
            while fh.read(1 << 22):
                pass
    store = Store.open(settings, check=False)
    try:
        with store.engine.connect() as conn:
            for table in ("merkle_nodes", "entries", "blocks", "lots", "lot_lineage"):
                conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar()  # noqa: S608 - our names
    finally:
        store.dispose()
    return time.perf_counter() - t


def _proofs_in_worker(settings: Any, size: int, samples: int, seed: int) -> dict[str, Any]:
    """Time one ledger's proofs in this (pool worker) process: see :func:`_prepare`."""
    from api import create_app

    from .proofs import time_proofs

    app = create_app(settings, background_sealing=False)
    svc = app.extensions["filiera"]
    try:
        return time_proofs(app, svc.store, size, samples, random.Random(seed)) | {"process": "pool worker"}
    finally:
        svc.sealer.stop_background()
        svc.store.dispose()


def _prepare(settings: Any, size: int, *, opts: dict[str, Any], pool: Any, rng: random.Random, log: Log, backend: str) -> dict[str, Any]:
    """Flush, warm, and time the proofs of one size's ledger (at exactly ``size`` entries).

    The proofs are timed in a pool worker, a process that holds one app, as a server's worker
    does, and not in this one, which by then holds every section's objects (each of its
    garbage collections scans all of them)."""
    res: dict[str, Any] = {"tree_size": size, "db_bytes": _db_bytes(settings), "settle_s": round(_settle(settings), 2)}
    res["warm_s"] = round(_warm(settings), 2)
    t = time.perf_counter()
    res["proofs"] = pool.apply(_proofs_in_worker, (settings, size, opts["samples"], rng.randrange(1 << 32)))
    log(f"    {backend} {size:,}: proofs in {time.perf_counter() - t:.0f} s: inclusion p95 "
        f"{res['proofs']['inclusion_http']['p95_ms']:.2f} ms, consistency p95 "
        f"{res['proofs']['consistency_http']['p95_ms']:.2f} ms (test client, in a pool worker)")
    return res


def _measure(ledgers: dict[int, Any], *, opts: dict[str, Any], pool: Any, rng: random.Random, log: Log, backend: str) -> list[dict[str, Any]]:
    """Measure every size of one backend (``ledgers``: size -> settings): proofs size by size,
    append cost in rounds alternating between the sizes, then provenance size by size."""
    from api import create_app
    from ledger.keys import read_key_file

    from .provenance import add_lineage, time_provenance

    sizes = sorted(ledgers)
    res = {size: _prepare(ledgers[size], size, opts=opts, pool=pool, rng=rng, log=log, backend=backend) for size in sizes}
    with ExitStack() as stack:
        sealers, seeds, tags = {}, {}, {}
        for size in sizes:
            settings = ledgers[size]
            svc = create_app(settings, background_sealing=False).extensions["filiera"]
            stack.callback(svc.store.dispose)
            stack.callback(svc.sealer.stop_background)
            sealers[size] = svc.sealer
            seeds[size] = read_key_file(settings.data_dir / "admin.key").signing_key.seed
            tags[size] = f"a{size}{backend[0]}{random.Random().randrange(10**6):06d}"
        appended = _append_cost(
            sealers, seeds, tags=tags, rounds=opts["append_rounds"], batches=opts["append_batches"],
            batch_size=opts["append_batch_size"], singles=opts["append_singles"], pool=pool, log=log, backend=backend,
        )
    for size in sizes:
        a = res[size]["append"] = appended[size]
        log(f"    {backend} {size:,}: append {a['batch']['us_per_entry']:.0f} µs/entry in batches of "
            f"{opts['append_batch_size']} ({a['batch']['ratio_median']:.2f}x the smallest, rounds "
            f"{a['batch']['ratio_band'][0]:.2f}-{a['batch']['ratio_band'][1]:.2f}), {a['single']['us_per_entry']:.0f} "
            f"µs/entry one by one ({a['single']['ratio_median']:.2f}x, {a['single']['ratio_band'][0]:.2f}-"
            f"{a['single']['ratio_band'][1]:.2f})")
    for size in sizes:
        settings = ledgers[size]
        final = add_lineage(settings, origin=ORIGIN)
        prov = res[size]["provenance"] = time_provenance(settings, final, samples=opts["provenance_samples"])
        prov["tree_size"] = _tree_size(settings)
        log(f"    {backend} {size:,}: provenance ({prov['entries']} entries) p50 "
            f"{prov['p50_ms']:.1f} ms, p95 {prov['p95_ms']:.1f} ms")
        res[size]["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return [res[size] for size in sizes]


@contextmanager
def _working_copy(src: Path, workdir: Path, name: str) -> Iterator[Path]:
    dst = workdir / name
    shutil.rmtree(dst, ignore_errors=True)
    _copy_dir(src, dst)
    try:
        yield dst
    finally:
        shutil.rmtree(dst, ignore_errors=True)


def build_ledgers(sizes: list[int], *, cache: Path, log: Log = print) -> list[dict[str, Any]]:
    """Only build (or find) the cached ledgers of ``sizes``, measuring nothing."""
    with mp.get_context("spawn").Pool(2) as pool:
        return [ensure_ledger(size, cache=cache, pool=pool, log=log)[1] for size in sizes]


def run_scale(
    backends: list[str],
    *,
    sizes: list[int],
    pg_url: str,
    workdir: Path,
    cache: Path,
    opts: dict[str, Any],
    seed: int = 1,
    log: Log = print,
) -> dict[str, Any]:
    """Build (or reuse) each size's ledger and measure it on every backend; see the docstring."""
    rng = random.Random(seed)
    out: dict[str, Any] = {
        "code_version": code_version(), "filler": "participant.register", "chunk": CHUNK,
        "demo_lots": DEMO_LOTS, "options": opts, "ledgers": [], "backends": {b: [] for b in backends},
    }
    with mp.get_context("spawn").Pool(2) as pool:
        built = []
        for size in sizes:
            t = time.perf_counter()
            path, meta = ensure_ledger(size, cache=cache, pool=pool, log=log)
            meta = meta | {"path": str(path), "ensure_s": round(time.perf_counter() - t, 2)}
            out["ledgers"].append(meta)
            built.append((size, path, meta))
        for backend in backends:
            # Every size of this backend is open at once, so that append rounds can alternate.
            with ExitStack() as stack:
                ledgers: dict[int, Any] = {}
                extra: dict[int, dict[str, Any]] = {}
                for size, path, meta in built:
                    data = stack.enter_context(_working_copy(path, workdir, f"scale-{backend}-{size}"))
                    if backend == "sqlite":
                        ledgers[size] = _settings(data)
                        extra[size] = {"built_by": "submit_batch (cached)" if meta["reused"] else "submit_batch"}
                    else:
                        (data / "filiera.db").unlink()  # the keys stay; the log is copied from the cache
                        db = stack.enter_context(database("postgresql", pg_url=pg_url, workdir=workdir))
                        log(f"    postgresql {size:,}: COPY from the cached SQLite ledger")
                        copied = _copy_to_postgres(path / "filiera.db", db.url)
                        log(f"      copied in {copied['copy_s']:.0f} s, ANALYZE {copied['analyze_s']:.0f} s")
                        ledgers[size] = _settings(data, db.url)
                        extra[size] = {"built_by": "copied from the SQLite ledger (COPY)", "copy": copied}
                rows = _measure(ledgers, opts=opts, pool=pool, rng=rng, log=log, backend=backend)
                out["backends"][backend] = [r | extra[r["tree_size"]] for r in rows]
    return out

