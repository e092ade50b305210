"""A read-only node (``FILIERA_READ_ONLY=1``, ``filiera serve --read-only``): the API over a
database it must not write, typically a PostgreSQL streaming replica (docs/operations.md,
"Scaling out").

Such a node seals nothing, talks to no witness and counts no page views (api/__init__.py and
api/routes/public.py leave those out). Every request that would write is refused here, before
its view runs, with 503 ``read_only_node`` naming the primary (``FILIERA_PRIMARY_URL``) when
one is configured. Signed reads still work: their nonces, which a primary records in the
ledger's database, are kept by :class:`LocalNonces` in the node's own run directory.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from flask import Flask, Response, request

from ledger.config import Settings
from ledger.errors import ReadOnlyNode
from ledger.httpsig import RequestReplayed

from .problems import problem

__all__ = ["register", "LocalNonces"]

# Methods that never write: everything else on a route that exists is refused.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def register(app: Flask, settings: Settings) -> None:
    """Refuse every write before its view runs. An unknown route or a method the route does
    not have keeps its 404 or 405: routing has failed before this hook runs."""

    @app.before_request
    def _refuse_writes() -> Response | None:
        if request.method in _SAFE_METHODS or request.routing_exception is not None:
            return None
        primary = settings.primary_url
        if primary:
            err = ReadOnlyNode(
                f"this node serves a read-only copy of the ledger; send {request.method} "
                f"{request.path} to the primary at {primary}",
                primary=primary,
            )
            target = primary + request.full_path.rstrip("?")
            return problem(err, headers={"Location": target})
        return problem(
            ReadOnlyNode(
                f"this node serves a read-only copy of the ledger; send {request.method} "
                f"{request.path} to the node that takes writes (the primary)"
            )
        )


_SCHEMA = """CREATE TABLE IF NOT EXISTS request_nonces (
    nonce TEXT NOT NULL, key_id TEXT NOT NULL, seen_at INTEGER NOT NULL, PRIMARY KEY (nonce)
)"""


class LocalNonces:
    """The nonces of signed requests one node has seen, kept outside the ledger's database.

    In ``<run dir>/request-nonces.sqlite``, which every worker of the node shares (the file
    outlives a restart with a named ``FILIERA_RUN_DIR``); without a run directory (one
    process, e.g. a test client), in memory. Nonces are per node: a signed read replayed to
    another node within the signature window (5 minutes) is answered there once more
    (docs/security.md). Thread-safe.
    """

    def __init__(self, run_dir: Path | None, *, window: int = 600) -> None:
        self._window = window
        self._lock = threading.Lock()
        target = str(run_dir / "request-nonces.sqlite") if run_dir is not None else ":memory:"
        self._db = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False)
        if run_dir is not None:
            # Worth nothing after a crash beyond the signature window: no fsync per request.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(_SCHEMA)

    def remember(self, nonce: str, key_id: str, now: int) -> None:
        """Record a nonce; raises RequestReplayed if this node saw it before."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO request_nonces (nonce, key_id, seen_at) VALUES (?, ?, ?)", (nonce, key_id, now)
                )
            except sqlite3.IntegrityError as exc:
                raise RequestReplayed(
                    "this request's nonce was used before; sign every request with a fresh nonce"
                ) from exc
            if now % 16 == 0:
                self._db.execute("DELETE FROM request_nonces WHERE seen_at < ?", (now - self._window,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
