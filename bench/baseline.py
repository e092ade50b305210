"""The yardstick: raw PyNaCl Ed25519 verifications per second on this machine's cores.

Every ingest figure is divided by the 2-process rate measured here, in the same run, so that a
slower or busier machine lowers the baseline and the ingest figures together.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

__all__ = ["MESSAGE_BYTES", "verify_rate"]

MESSAGE_BYTES = 300


def _signed() -> tuple[bytes, bytes]:
    import nacl.bindings

    public, secret = nacl.bindings.crypto_sign_seed_keypair(os.urandom(32))
    return nacl.bindings.crypto_sign(os.urandom(MESSAGE_BYTES), secret), public


def _spin(seconds: float) -> tuple[int, float]:
    """Verify one 300-byte message for ``seconds``: (verifications, elapsed)."""
    from nacl.signing import VerifyKey

    signed, public = _signed()
    key = VerifyKey(public)
    key.verify(signed)  # warm up
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            key.verify(signed)
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n, now - start


def _worker(seconds: float, barrier: Any, out: Any) -> None:
    barrier.wait()
    out.put(_spin(seconds))


def verify_rate(*, processes: int, seconds: float) -> dict[str, Any]:
    """Verifications per second with ``processes`` processes verifying side by side."""
    if processes == 1:
        n, elapsed = _spin(seconds)
        return {"processes": 1, "verifications": n, "seconds": round(elapsed, 3), "per_s": n / elapsed}
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(seconds, barrier, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    total = sum(n for n, _ in results)
    # Each process ran for its own ``elapsed``; the rate is the sum of the per-process rates.
    per_s = sum(n / e for n, e in results)
    return {
        "processes": processes,
        "verifications": total,
        "seconds": round(max(e for _, e in results), 3),
        "per_s": per_s,
    }
