"""Code that runs in child processes (multiprocessing, spawn) for the sealing races: each child
opens its own Store and Sealer on the test's database, as one more gunicorn worker would."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ledger.config import Settings
from ledger.errors import LedgerError
from ledger.sealing import Sealer
from ledger.storage.store import Store

# What one submission came to: (status, entry id, index, leaf hash, error code).
Result = tuple[str, str | None, int | None, str | None, str | None]


def _sealer(settings: Settings) -> Sealer:
    from api import load_ledger_key

    return Sealer(Store.open(settings), signing_key=load_ledger_key(settings), seal_timeout=settings.seal_timeout)


def submit_one(sealer: Sealer, envelope: dict[str, Any], *, wait: bool = True) -> Result:
    try:
        out = sealer.submit(envelope, wait=wait)
    except LedgerError as exc:
        return ("rejected", None, None, None, exc.code)
    if out.receipt is None:
        return (out.status, out.id, None, None, None)
    return (out.status, out.id, out.receipt.index, out.receipt.leaf_hash, None)


def submit_all(settings: Settings, envelopes: list[dict[str, Any]], threads: int, barrier: Any, results: Any) -> None:
    """Wait for the other processes at ``barrier``, then submit every envelope over
    ``threads`` threads sharing this process's Sealer; put the list of Results on ``results``."""
    sealer = _sealer(settings)
    try:
        barrier.wait(timeout=120)
        with ThreadPoolExecutor(threads) as pool:
            results.put(list(pool.map(lambda e: submit_one(sealer, e), envelopes)))
    finally:
        sealer.store.dispose()


def enqueue_and_die(settings: Settings, envelope: dict[str, Any], results: Any) -> None:
    """Queue one entry (``202``), report it, then die by SIGKILL before any sealing round:
    the crash between acknowledgement of the queueing and the seal."""
    sealer = _sealer(settings)
    out = submit_one(sealer, envelope, wait=False)
    results.put(out)
    results.close()
    results.join_thread()
    os.kill(os.getpid(), signal.SIGKILL)
