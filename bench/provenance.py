"""Provenance latency: GET /v1/lots/{lot}/provenance of a lot with a 10-step lineage, with proofs.

The lot's story is added to a large demo ledger (the audit section's cached one on SQLite, about
a million entries; a smaller demo on PostgreSQL): two groves' harvests, attested, reach a mill
through a co-signed handoff and a carrier's two legs; ten transforms (half at the mill, half at
the bottler it ships to) make the final lot, which goes to a retailer and is received. The
provenance of that final lot (every entry of the story, each with its inclusion proof against
one checkpoint) is then asked for by the Flask test client, in-process, public view, ``samples``
times; p50/p95/p99 in milliseconds, and the SQL statements each request made.
"""

from __future__ import annotations

import secrets
import statistics
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event

from ledger.config import Settings
from ledger.encoding import format_time
from ledger.entries import sign_payload
from ledger.keys import SigningKey, read_key_file
from ledger.sealing import Sealer
from ledger.storage.store import Store

__all__ = ["add_lineage", "time_provenance", "run_provenance"]

CAST = {
    "farm": "masseria-ulivi", "farm2": "tenuta-coratina", "cert": "bio-cert-italia", "mill": "frantoio-bari",
    "bottler": "oleificio-sud", "carrier": "trasporti-adriatica", "shop": "mercato-milano",
}


def _now() -> str:
    return format_time(datetime.now(timezone.utc))


def add_lineage(settings: Settings, *, origin: str, steps: int = 10) -> str:
    """Seal the story described above; return the final lot's id."""
    keys: dict[str, SigningKey] = {
        role: read_key_file(settings.data_dir / f"{pid}.key").signing_key for role, pid in CAST.items()
    }
    tag = secrets.token_hex(3).upper()
    from ledger.storage.migrate import upgrade

    migrating = Store.open(settings, check=False)
    try:
        upgrade(migrating.engine)  # a ledger cached by an older bench run may predate a migration
    finally:
        migrating.dispose()
    store = Store.open(settings)
    sealer = Sealer(store, signing_key=read_key_file(settings.ledger_key_file).signing_key)
    try:
        def post(type_: str, role: str, fields: dict[str, Any], *cosigners: str) -> str:
            author = CAST[role]
            payload = {"type": type_, "ledger": origin, "author": author, "nonce": secrets.token_urlsafe(16), "time": _now(), **fields}
            env = sign_payload(payload, [(CAST[r], keys[r]) for r in (role, *cosigners)])
            (outcome,) = sealer.submit_batch([env], wait=False, raise_first=True)
            sealer.seal_pending()
            return str(outcome.id)

        def lot(lot_id: str, product: str = "olives", quantity: str = "1000", unit: str = "kg") -> dict[str, str]:
            return {"lot": lot_id, "product": product, "quantity": quantity, "unit": unit}

        a1, a2, b1 = f"BENCH-{tag}-A1", f"BENCH-{tag}-A2", f"BENCH-{tag}-B1"
        site = {"site": "Uliveto di Bitonto", "origin": {"country": "IT", "region": "Puglia", "produced_on": "2026-10-15"}}
        o1 = post("origin", "farm", {"lots": [lot(a1), lot(a2)], "claims": ["organic"], **site})
        post("attestation", "cert", {"subject": o1, "claims": ["organic"], "certificate": {"scheme": "EU organic", "number": "IT-BIO-006-1234", "valid_until": "2027-12-31"}})
        post("origin", "farm2", {"lots": [lot(b1)], "claims": ["organic"], **site})
        post("attestation", "cert", {"subject": b1, "claims": ["organic"], "certificate": {"scheme": "EU organic", "number": "IT-BIO-006-1234", "valid_until": "2027-12-31"}})
        post("handoff", "farm", {"from": CAST["farm"], "to": CAST["mill"], "lots": [a1, a2], "dispatched_at": _now()}, "mill")
        leg = post("handoff", "farm2", {"from": CAST["farm2"], "to": CAST["carrier"], "lots": [b1], "dispatched_at": _now()})
        post("receipt", "carrier", {"handoff": leg, "status": "accepted", "received_at": _now()})
        leg = post("handoff", "carrier", {"from": CAST["carrier"], "to": CAST["mill"], "lots": [b1], "dispatched_at": _now()})
        post("receipt", "mill", {"handoff": leg, "status": "accepted", "received_at": _now()})
        holder, inputs, out = "mill", [a1, a2, b1], ""
        for i in range(1, steps + 1):
            out = f"BENCH-{tag}-S{i}"
            post("transform", holder, {"inputs": inputs, "outputs": [lot(out, "oil", "100", "l")], "site": "Frantoio", "process": "cold pressing"})
            inputs = [out]
            if i == steps // 2:
                h = post("handoff", "mill", {"from": CAST["mill"], "to": CAST["bottler"], "lots": [out], "dispatched_at": _now()})
                post("receipt", "bottler", {"handoff": h, "status": "accepted", "received_at": _now()})
                holder = "bottler"
        last = post("handoff", holder, {"from": CAST[holder], "to": CAST["shop"], "lots": [out], "dispatched_at": _now()})
        post("receipt", "shop", {"handoff": last, "status": "accepted", "received_at": _now()})
        return out
    finally:
        store.dispose()


def time_provenance(settings: Settings, lot: str, *, samples: int) -> dict[str, Any]:
    from api import create_app

    app = create_app(settings, background_sealing=False)
    client = app.test_client()
    first = client.get(f"/v1/lots/{lot}/provenance")
    if first.status_code != 200:
        raise RuntimeError(f"provenance of {lot}: {first.status_code} {first.get_data(as_text=True)[:300]}")
    body = first.get_json()
    engine = app.extensions["filiera"].store.engine
    executed = [0]

    def count(*_: Any) -> None:
        executed[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    timings = []
    try:
        for _ in range(samples):
            t = time.perf_counter()
            resp = client.get(f"/v1/lots/{lot}/provenance")
            timings.append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    timings.sort()
    q = statistics.quantiles(timings, n=100)
    return {
        "lot": lot,
        "verdict": body.get("verdict") if isinstance(body, dict) else None,
        "entries": len(body.get("entries", [])) if isinstance(body, dict) and isinstance(body.get("entries"), list) else None,
        "bytes": len(first.get_data()),
        "samples": samples,
        "statements_per_request": executed[0] / samples,
        "p50_ms": q[49],
        "p95_ms": q[94],
        "p99_ms": q[98],
    }


def run_provenance(backend: str, *, settings: Settings | None, lots: int, pg_url: str, workdir: Any, samples: int, origin: str) -> dict[str, Any]:
    """On ``settings`` (an existing demo ledger) or, if None, on a fresh demo of ``lots`` lots."""
    from .workload import database

    if settings is not None:
        final = add_lineage(settings, origin=origin)
        return _with_size(settings, time_provenance(settings, final, samples=samples))
    from api.demo import build_demo

    with database(backend, pg_url=pg_url, workdir=workdir) as db:
        data = workdir / f"provenance-{backend}"
        fresh = Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=db.url, log_level="WARNING")
        build_demo(fresh, origin="bench.filiera.example", if_missing=False, lots=lots)
        final = add_lineage(fresh, origin="bench.filiera.example")
        return _with_size(fresh, time_provenance(fresh, final, samples=samples))


def _with_size(settings: Settings, result: dict[str, Any]) -> dict[str, Any]:
    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
        result["tree_size"] = head.tree_size if head else None
    finally:
        store.dispose()
    return result
