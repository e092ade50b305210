"""A ``limits`` storage in an SQL database, so that one limit holds across processes.

The ``limits`` library keeps counters in memory (one process: gunicorn's workers would each
allow the whole limit), Redis, Memcached, MongoDB or Valkey. Filiera must work with nothing but
itself installed, so this storage keeps fixed-window counters in a table of an SQLAlchemy
database: by default a SQLite file in the server's private run directory, which every worker
of one server opens (``sql+sqlite:////run/dir/rate-limits.sqlite``); or a PostgreSQL
database that several servers share (``sql+postgresql://...``).

One counter is one row; a hit is one atomic ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
(SQLite >= 3.35, PostgreSQL >= 9.5), so concurrent hits from any number of processes are
counted exactly: a limit of L admits exactly L requests per window. The table is not part of
the ledger's schema (no Alembic): it holds nothing but expiring counters.
"""

from __future__ import annotations

import random
import time
from typing import Any

from limits.storage import Storage
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ledger.config import normalise_database_url

__all__ = ["SqlStorage"]

_TABLE = "filiera_rate_limits"

_CREATE = f"""CREATE TABLE IF NOT EXISTS {_TABLE} (
    rate_key VARCHAR(512) PRIMARY KEY,
    hits INTEGER NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)"""

# Both CASEs read the row as it was before this statement (SQL's UPDATE semantics), so an
# expired window restarts at ``amount`` with a fresh expiry, and a live one just counts on.
_HIT = text(
    f"""INSERT INTO {_TABLE} (rate_key, hits, expires_at) VALUES (:key, :amount, :expires)
    ON CONFLICT (rate_key) DO UPDATE SET
      hits = CASE WHEN {_TABLE}.expires_at <= :now THEN :amount ELSE {_TABLE}.hits + :amount END,
      expires_at = CASE WHEN {_TABLE}.expires_at <= :now THEN :expires ELSE {_TABLE}.expires_at END
    RETURNING hits"""
)
_GET = text(f"SELECT hits, expires_at FROM {_TABLE} WHERE rate_key = :key AND expires_at > :now")
_PRUNE = text(f"DELETE FROM {_TABLE} WHERE expires_at <= :now")
_CLEAR = text(f"DELETE FROM {_TABLE} WHERE rate_key = :key")
_RESET = text(f"DELETE FROM {_TABLE}")

# About one hit in this many also deletes expired counters, keeping the table small.
_PRUNE_EVERY = 256


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Counters are worth nothing after a crash: no fsync on the request path. WAL lets the
    # workers read while one of them writes; the busy timeout makes them take turns.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=OFF")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class SqlStorage(Storage):
    """Fixed-window counters in ``filiera_rate_limits``. URI: ``sql+`` and an SQLAlchemy URL."""

    STORAGE_SCHEME = ["sql+sqlite", "sql+postgresql", "sql+postgres"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        if not uri or not uri.startswith("sql+"):
            raise ValueError(f"not an sql+ storage URI: {uri!r}")
        url = normalise_database_url(uri[len("sql+"):])
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._create()
        except BaseException:
            self.engine.dispose()
            raise
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    def _create(self) -> None:
        """Raises ValueError for a database that cannot take a write: a hot standby would fail
        every hit, and a limit that cannot count protects nothing."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                if conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
                    raise ValueError(
                        "the database is a read-only standby; name a writable one (e.g. the "
                        "primary) or leave FILIERA_RATE_LIMIT_STORAGE unset for per-node counters"
                    )
        try:
            with self.engine.begin() as conn:
                conn.execute(text(_CREATE))
        except DBAPIError:
            # Two PostgreSQL processes creating the table at once: one of them wins the race
            # on the catalog, and the table is there either way. Anything else still fails.
            with self.engine.connect() as conn:
                conn.execute(text(f"SELECT 1 FROM {_TABLE} LIMIT 1"))

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self.engine.begin() as conn:
            hits = conn.execute(_HIT, {"key": key, "amount": amount, "now": now, "expires": now + expiry}).scalar_one()
            if random.randrange(_PRUNE_EVERY) == 0:
                conn.execute(_PRUNE, {"now": now})
        return int(hits)

    def get(self, key: str) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(_GET, {"key": key, "now": time.time()}).first()
        return int(row.hits) if row is not None else 0

    def get_expiry(self, key: str) -> float:
        with self.engine.connect() as conn:
            row = conn.execute(_GET, {"key": key, "now": time.time()}).first()
        return float(row.expires_at) if row is not None else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return int(conn.execute(_RESET).rowcount)

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_CLEAR, {"key": key})
