"""The database: engines per dialect, durability checks, and every query the ledger makes.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` and writers take the
database lock up front (``BEGIN IMMEDIATE``); PostgreSQL serialises appends with a
transaction-scoped advisory lock. Either way only one transaction appends at a time, and an
entry is acknowledged only after the transaction that seals it has committed.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, create_engine, event, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool, QueuePool

from ..config import Settings
from ..errors import ChainBroken, NotInitialised, UnsafeConfiguration, Unavailable
from ..merkle import NodeId
from ..state import KeyRecord, ParticipantRecord, Policy
from . import projection
from . import schema as t
from .checkpoints import BACKSTOP_BYTES, WAL_LIMIT_BYTES, Checkpointer
from .locks import WriterLock
from .statements import MAX_PAIRS, bucket, chunks, delete_in, padded, select_in, select_in_pairs

__all__ = [
    "BlockRow",
    "EntryRow",
    "Store",
    "DbStateSource",
    "make_engine",
    "check_durability",
]

# Any 64-bit constant will do; it only has to be the same in every process of one ledger.
APPEND_LOCK_KEY = 0x46494C4945524131  # "FILIERA1"

SAFE_SQLITE_SYNCHRONOUS = {"FULL", "EXTRA"}
SAFE_SQLITE_JOURNAL = {"WAL"}


@dataclass(frozen=True, slots=True)
class BlockRow:
    height: int
    hash: str
    prev: str
    time: str
    first_index: int
    tree_size: int
    root: str
    signature: str
    checkpoint: str

    def header_json(self, origin: str) -> dict[str, Any]:
        return {
            "ledger": origin,
            "height": self.height,
            "prev": self.prev,
            "time": self.time,
            "first_index": self.first_index,
            "tree_size": self.tree_size,
            "root": self.root,
        }


@dataclass(frozen=True, slots=True)
class EntryRow:
    idx: int
    id: str
    height: int
    type: str
    author: str
    nonce: str
    leaf_hash: str
    leaf_data: str


def make_engine(settings: Settings) -> Engine:
    """An engine configured for durability on either dialect."""
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Pooled: opening a SQLite connection costs about a millisecond (PRAGMAs, schema
            # parsing, and a WAL checkpoint whenever the last connection closes), several
            # times per request. No pool limit, so a thread never waits for a connection.
            # A pooled connection must never be shared by two processes: gunicorn builds the
            # app after fork, and _forget_pool_after_fork covers any other fork.
            engine = create_engine(
                url, poolclass=QueuePool, pool_size=8, max_overflow=-1, connect_args={"timeout": 60}
            )
            _forget_pool_after_fork(engine)
        else:
            engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})
        sync, journal = settings.sqlite_synchronous, settings.sqlite_journal_mode
        mmap_bytes = settings.sqlite_mmap_mb * 1024 * 1024

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, not the driver, start transactions, so that
            # writers can BEGIN IMMEDIATE (the pysqlite recipe in SQLAlchemy's docs).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA journal_mode={journal}")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA busy_timeout=60000")
            # Reads of the database file through mmap share the OS page cache instead of copying
            # pages into each connection's 2 MB cache: in a million-entry ledger the random-key
            # index probes of every append (entry ids, key ids) stay cheap. Writes still go
            # through the WAL; a 0 turns it off.
            cur.execute(f"PRAGMA mmap_size={mmap_bytes}")
            # Checkpoints run beside the writers once they pause (checkpoints.py); a commit
            # checkpoints itself only if the WAL outgrows what that thread keeps up with, and a
            # checkpointed -wal file is cut back to WAL_LIMIT_BYTES.
            page = cur.execute("PRAGMA page_size").fetchone()[0]
            cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_BYTES // page}")
            cur.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    engine = create_engine(url, pool_size=4, max_overflow=4)
    _ping_idle_connections(engine)
    _without_jit(engine)
    return engine


def _without_jit(engine: Engine) -> None:
    """Turn PostgreSQL's JIT compilation off for Filiera's connections. Every statement here
    reads or writes rows by key, in well under a millisecond, but on tables never analysed (a
    database just loaded or restored, or autovacuum off) the planner's cost estimates run into
    the millions, past ``jit_above_cost``, and it compiled a provenance read that runs in
    0.3 ms for 300 ms first."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET jit = off")
        dbapi_conn.commit()


# A pooled PostgreSQL connection idle for longer than this is pinged before use.
_PING_AFTER_IDLE_S = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it sat idle: a connection in steady use
    proves itself alive with every statement, and pinging it on every checkout (pool_pre_ping)
    cost one more round trip per transaction, two or three per request.

    A server restart under load is still survived: the first statement on a dead connection
    fails (that one request is refused and the client retries), and SQLAlchemy then
    invalidates the whole pool, so no other request meets a dead connection.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < _PING_AFTER_IDLE_S:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
            # The ping opened a transaction (psycopg's default); leave none behind.
            dbapi_conn.rollback()
        except Exception as exc:  # noqa: BLE001 - any failure means "do not use it"
            # The pool discards this connection and checks out another (or opens one).
            raise DisconnectionError(f"stale connection: {exc}") from exc


def _sqlite_lock_path(engine: Engine) -> Path | None:
    """The writer lock file beside a SQLite database file (none for an in-memory one)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}-writer.lock")


def _forget_pool_after_fork(engine: Engine) -> None:
    """In a forked child, drop (without closing) the connections inherited from the parent."""
    ref = weakref.ref(engine)

    def after_in_child() -> None:
        inherited = ref()
        if inherited is not None:
            inherited.dispose(close=False)

    os.register_at_fork(after_in_child=after_in_child)


def check_durability(engine: Engine) -> None:
    """Refuse to run on a database that could lose acknowledged entries (TESTPLAN T12).

    Raises UnsafeConfiguration naming the setting and the value to use instead.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                conn.exec_driver_sql("PRAGMA synchronous").scalar_one(), "?"
            )
            journal = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()).upper()
            if sync not in SAFE_SQLITE_SYNCHRONOUS:
                raise UnsafeConfiguration(
                    f"SQLite synchronous={sync} can lose acknowledged entries on power loss; "
                    "set FILIERA_SQLITE_SYNCHRONOUS=FULL",
                    setting="synchronous",
                    value=sync,
                )
            if journal not in SAFE_SQLITE_JOURNAL:
                raise UnsafeConfiguration(
                    f"SQLite journal_mode={journal} is not supported; Filiera needs WAL "
                    "(set FILIERA_SQLITE_JOURNAL_MODE=WAL)",
                    setting="journal_mode",
                    value=journal,
                )
        elif engine.dialect.name == "postgresql":
            settings = {
                name: str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())
                for name in ("synchronous_commit", "fsync", "full_page_writes")
            }
            check_postgres_settings(settings)


def check_postgres_settings(settings: Mapping[str, str]) -> None:
    """The PostgreSQL half of :func:`check_durability`, on values already read."""
    if settings.get("synchronous_commit") in ("off", "local"):
        raise UnsafeConfiguration(
            f"PostgreSQL synchronous_commit={settings['synchronous_commit']} acknowledges "
            "commits before they are durable; set it to on",
            setting="synchronous_commit",
            value=settings["synchronous_commit"],
        )
    for name in ("fsync", "full_page_writes"):
        if settings.get(name) == "off":
            raise UnsafeConfiguration(
                f"PostgreSQL {name}=off can corrupt or lose the log on a crash; set it to on",
                setting=name,
                value="off",
            )


# Hot queries, built once: a statement object that is reused keeps its compiled form and cache
# key, so executing it skips SQLAlchemy's per-call construction (about 0.1 ms a query).
_HEAD = select(t.blocks).order_by(t.blocks.c.height.desc()).limit(1)
_BLOCK = select(t.blocks).where(t.blocks.c.height == bindparam("height"))
_ENTRY_BY_ID = select(t.entries).where(t.entries.c.id == bindparam("id"))
_ENTRY_BY_INDEX = select(t.entries).where(t.entries.c.idx == bindparam("idx"))
_PARTICIPANT = select(t.participants).where(t.participants.c.id == bindparam("id"))
_KEY = select(t.participant_keys).where(t.participant_keys.c.key_id == bindparam("key_id"))
_NONCE = select(t.entries.c.id).where(
    t.entries.c.author == bindparam("author"), t.entries.c.nonce == bindparam("nonce")
)
_ENTRY_EXISTS = select(t.entries.c.idx).where(t.entries.c.id == bindparam("id"))
_PENDING_ROW = select(t.pending).where(t.pending.c.id == bindparam("id"))
# The standby's lag; pg_last_wal_receive_lsn() is NULL when WAL comes from an archive, not a
# stream, and the comparison then falls back to the age of the last replayed commit.
_REPLICA_LAG = text(
    "SELECT pg_is_in_recovery() AS recovering, CASE"
    " WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))"
    " END AS lag"
)
_HAS_PENDING = select(t.pending.c.seq).where(t.pending.c.status == "pending").limit(1)
_REFUSE_PENDING = (
    t.pending.update()
    .where(t.pending.c.id == bindparam("_id"))
    .values(status="rejected", code=bindparam("code"), detail=bindparam("detail"))
)
_UPDATE_PARTICIPANT = t.participants.update().where(t.participants.c.id == bindparam("_id"))
_UPDATE_KEY = t.participant_keys.update().where(t.participant_keys.c.key_id == bindparam("_key_id"))
_INSERT_ENTRIES = t.entries.insert()
_INSERT_NODES = t.merkle_nodes.insert()
_INSERT_BLOCK = t.blocks.insert()
_INSERT_PARTICIPANTS = t.participants.insert()
_INSERT_KEYS = t.participant_keys.insert()


@functools.lru_cache(maxsize=8)
def _pending_query(limit: int) -> Any:
    return select(t.pending).where(t.pending.c.status == "pending").order_by(t.pending.c.seq).limit(limit)


@functools.lru_cache(maxsize=256)
def _nodes_query(n: int) -> Any:
    """``SELECT`` of ``n`` merkle nodes by (level, idx), as an OR of equalities: both SQLite
    and PostgreSQL answer it from the primary key (SQLite scans the table for a row-value IN)."""
    return select(t.merkle_nodes).where(
        or_(
            *(
                and_(t.merkle_nodes.c.level == bindparam(f"l{i}"), t.merkle_nodes.c.idx == bindparam(f"i{i}"))
                for i in range(n)
            )
        )
    )


# The same on PostgreSQL for any number of nodes, in one statement: one primary-key probe per
# (level, idx) pair of the arrays :levels and :idxs, in a LATERAL subquery fenced by OFFSET 0
# so that the planner cannot turn it into a join over the whole table.
_NODES_POSTGRESQL = text(
    "SELECT n.level, n.idx, n.hash FROM unnest(CAST(:levels AS SMALLINT[]), CAST(:idxs AS BIGINT[])) AS q(level, idx)"
    " CROSS JOIN LATERAL (SELECT merkle_nodes.level, merkle_nodes.idx, merkle_nodes.hash FROM merkle_nodes"
    " WHERE merkle_nodes.level = q.level AND merkle_nodes.idx = q.idx OFFSET 0) AS n"
)

_PARTICIPANTS_POSTGRESQL = text(
    "SELECT p.* FROM unnest(CAST(:ids AS VARCHAR[])) AS q(id)"
    " CROSS JOIN LATERAL (SELECT * FROM participants WHERE participants.id = q.id OFFSET 0) AS p"
)


def _block(row: Any) -> BlockRow:
    return BlockRow(
        height=row.height, hash=row.hash, prev=row.prev, time=row.time,
        first_index=row.first_index, tree_size=row.tree_size, root=row.root,
        signature=row.signature, checkpoint=row.checkpoint,
    )


def _entry(row: Any) -> EntryRow:
    return EntryRow(
        idx=row.idx, id=row.id, height=row.height, type=row.type, author=row.author,
        nonce=row.nonce, leaf_hash=row.leaf_hash, leaf_data=row.leaf_data,
    )


class Store:
    """Queries over one database. Thread-safe; one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._policy: Policy | None = None
        # A SQLite database file (not PostgreSQL, not in memory) has a lock file beside it.
        lock_path = _sqlite_lock_path(engine) if self.dialect == "sqlite" else None
        # Writers queue on this rather than on SQLite's busy handler (see locks.py).
        self._writer_lock = WriterLock(lock_path)
        # A SQLite file: committed WAL pages are copied back into it off the writers' path.
        self._checkpointer = Checkpointer(engine) if lock_path is not None else None

    @classmethod
    def open(cls, settings: Settings, *, check: bool = True) -> Store:
        """Open the database named by ``settings``.

        With ``check``, refuses unsafe durability settings (UnsafeConfiguration) and a
        database without Filiera's schema (NotInitialised).
        """
        store = cls(make_engine(settings))
        if check:
            # A refused store closes its pooled connection now rather than leave it open
            # until the garbage collector finds it.
            try:
                try:
                    check_durability(store.engine)
                except OperationalError as exc:
                    raise Unavailable(f"cannot reach the database: {exc.orig}") from exc
                from .migrate import is_current

                if not is_current(store.engine):
                    raise NotInitialised(
                        "the database has no Filiera schema or an old one; run `filiera init` "
                        "(new ledger) or `filiera migrate`"
                    )
            except BaseException:
                store.dispose()
                raise
        return store

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()
        self._writer_lock.close()

    # --- transactions -----------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot on SQLite WAL)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def read_committed(self) -> Iterator[Connection]:
        """Reads that need no snapshot: each statement sees what was committed when it ran.

        For reads of the log that start from the head: the entries, blocks and Merkle nodes a
        head covers were committed with it or before it, and the log is never updated or
        deleted (the database refuses), so statements after the head find every one of them.
        On PostgreSQL the connection runs in autocommit, which saves the BEGIN and COMMIT round
        trips of a transaction; on SQLite (no round trips) it is :meth:`read`.
        """
        if self.dialect != "postgresql":
            with self.read() as conn:
                yield conn
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """Hold the SQLite writer lock (re-entrant per thread; no-op on PostgreSQL)."""
        if self.dialect != "sqlite":
            yield
            return
        with self._writer_lock.hold():
            yield

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A short write transaction that does not append to the log (the intake queue)."""
        with self._writer(), self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            with conn.begin():
                yield conn
        self._committed()

    @contextmanager
    def append(self, *, lock_timeout_s: float = 30.0) -> Iterator[Connection]:
        """The one transaction at a time that may append to the log.

        SQLite: BEGIN IMMEDIATE takes the database's write lock. PostgreSQL: a
        transaction-scoped advisory lock, released by COMMIT or ROLLBACK, even if the process
        dies (the server ends its session).
        """
        with self._writer(), self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            with conn.begin():
                if self.dialect == "postgresql":
                    # One round trip for both (no parameters, so psycopg may send two).
                    conn.exec_driver_sql(
                        f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'; "
                        f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})"
                    )
                yield conn
        self._committed()

    def _committed(self) -> None:
        """A write transaction committed: its WAL pages are checkpointed soon, in the background."""
        if self._checkpointer is not None:
            self._checkpointer.nudge()

    # --- reads ------------------------------------------------------------------------

    def policy(self, conn: Connection) -> Policy | None:
        """The genesis policy (cached: it never changes once sealed)."""
        if self._policy is None:
            row = conn.execute(select(t.entries.c.leaf_data).where(t.entries.c.idx == 0)).first()
            if row is None:
                return None
            try:
                payload = json.loads(row.leaf_data)["payload"]
                self._policy = Policy(
                    origin=payload["ledger"],
                    ledger_key=base64.b64decode(payload["ledger_key"], validate=True),
                    admin_quorum=payload["policy"]["admin_quorum"],
                )
            except (ValueError, KeyError, TypeError) as exc:
                # Only an edit behind the service's back gets here: sealing wrote a valid genesis.
                raise ChainBroken(
                    "block 0, entry 0: the stored genesis entry cannot be read; run `filiera verify`",
                    reason="leaf_data", height=0, index=0, entry=None,
                ) from exc
        return self._policy

    def head(self, conn: Connection) -> BlockRow | None:
        row = conn.execute(_HEAD).first()
        return _block(row) if row else None

    def block(self, conn: Connection, height: int) -> BlockRow | None:
        row = conn.execute(_BLOCK, {"height": height}).first()
        return _block(row) if row else None

    def blocks(self, conn: Connection, *, start: int, limit: int) -> list[BlockRow]:
        rows = conn.execute(
            select(t.blocks).where(t.blocks.c.height >= start).order_by(t.blocks.c.height).limit(limit)
        )
        return [_block(r) for r in rows]

    def block_entry_ids(self, conn: Connection, block: BlockRow) -> list[str]:
        rows = conn.execute(
            select(t.entries.c.id)
            .where(t.entries.c.idx >= block.first_index, t.entries.c.idx < block.tree_size)
            .order_by(t.entries.c.idx)
        )
        return [r.id for r in rows]

    def entries_range(self, conn: Connection, start: int, end: int) -> list[EntryRow]:
        rows = conn.execute(
            select(t.entries)
            .where(t.entries.c.idx >= start, t.entries.c.idx < end)
            .order_by(t.entries.c.idx)
        )
        return [_entry(r) for r in rows]

    def entry_by_id(self, conn: Connection, entry_id: str) -> EntryRow | None:
        row = conn.execute(_ENTRY_BY_ID, {"id": entry_id}).first()
        return _entry(row) if row else None

    def entry_by_index(self, conn: Connection, index: int) -> EntryRow | None:
        row = conn.execute(_ENTRY_BY_INDEX, {"idx": index}).first()
        return _entry(row) if row else None

    def existing_ids(self, conn: Connection, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for size, params in chunks(ids):
            found.update(conn.scalars(select_in(t.entries, "id", size, ("id",)), params))
        return found

    def entry_exists(self, conn: Connection, entry_id: str) -> bool:
        return conn.execute(_ENTRY_EXISTS, {"id": entry_id}).first() is not None

    def nodes(self, conn: Connection, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        """The stored hashes of the named perfect subtrees (a handful per proof).

        A stored value that is not binary (NULL, or text or a number, which a damaged SQLite
        file can hold in any column) is left out, as if the node were missing: callers name
        or refuse a missing node, and ``bytes()`` of such a value would raise TypeError (or,
        of a large number, allocate that many bytes).
        """
        wanted = sorted(set(ids))
        found: dict[NodeId, bytes] = {}
        if wanted and self.dialect == "postgresql":
            arrays = {"levels": [lv for lv, _ in wanted], "idxs": [ix for _, ix in wanted]}
            rows = conn.execute(_NODES_POSTGRESQL, arrays)
            return {(r.level, r.idx): bytes(r.hash) for r in rows if isinstance(r.hash, (bytes, bytearray, memoryview))}
        for i in range(0, len(wanted), 200):
            chunk = wanted[i : i + 200]
            params: dict[str, int] = {}
            for j, (lv, ix) in enumerate(chunk):
                params[f"l{j}"], params[f"i{j}"] = lv, ix
            for r in conn.execute(_nodes_query(len(chunk)), params):
                if isinstance(r.hash, (bytes, bytearray, memoryview)):
                    found[(r.level, r.idx)] = bytes(r.hash)
        return found

    def participant(self, conn: Connection, participant_id: str) -> ParticipantRecord | None:
        row = conn.execute(_PARTICIPANT, {"id": participant_id}).first()
        return _participant(row) if row else None

    def participants(self, conn: Connection, *, after: str, limit: int) -> list[ParticipantRecord]:
        rows = conn.execute(
            select(t.participants).where(t.participants.c.id > after).order_by(t.participants.c.id).limit(limit)
        )
        return [_participant(r) for r in rows]

    def keys_of(self, conn: Connection, participant_id: str) -> list[KeyRecord]:
        rows = conn.execute(
            select(t.participant_keys)
            .where(t.participant_keys.c.participant == participant_id)
            .order_by(t.participant_keys.c.added_index, t.participant_keys.c.key_id)
        )
        return [_key(r) for r in rows]

    def key(self, conn: Connection, key_id: str) -> KeyRecord | None:
        row = conn.execute(_KEY, {"key_id": key_id}).first()
        return _key(row) if row else None

    def nonce_entry(self, conn: Connection, author: str, nonce: str) -> str | None:
        row = conn.execute(_NONCE, {"author": author, "nonce": nonce}).first()
        return row.id if row else None

    def keys_by_id(self, conn: Connection, key_ids: Sequence[str]) -> dict[str, KeyRecord]:
        found: dict[str, KeyRecord] = {}
        for size, params in chunks(key_ids):
            for r in conn.execute(select_in(t.participant_keys, "key_id", size), params):
                found[r.key_id] = _key(r)
        return found

    def participants_by_id(self, conn: Connection, ids: Sequence[str]) -> dict[str, ParticipantRecord]:
        found: dict[str, ParticipantRecord] = {}
        if ids and self.dialect == "postgresql":
            return {r.id: _participant(r) for r in conn.execute(_PARTICIPANTS_POSTGRESQL, {"ids": list(ids)})}
        for size, params in chunks(ids):
            for r in conn.execute(select_in(t.participants, "id", size), params):
                found[r.id] = _participant(r)
        return found

    def nonce_entries(self, conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The entries that used the given (author, nonce) pairs."""
        wanted = set(pairs)
        found: dict[tuple[str, str], str] = {}
        ordered = sorted(wanted)
        for i in range(0, len(ordered), MAX_PAIRS):
            chunk = ordered[i : i + MAX_PAIRS]
            size = bucket(len(chunk))
            params = padded("a", [a for a, _ in chunk], size) | padded("b", [n for _, n in chunk], size)
            query = select_in_pairs(t.entries, "author", "nonce", size, ("author", "nonce", "id"))
            for r in conn.execute(query, params):
                if (r.author, r.nonce) in wanted:
                    found[(r.author, r.nonce)] = r.id
        return found

    def remember_nonce(self, nonce: str, key_id: str, now: int, *, window: int = 600) -> None:
        """Record a signed request's nonce; raises RequestReplayed if it was seen before.

        Nonces older than ``window`` seconds are pruned now and then: a signature that old is
        refused for its ``created`` time anyway.
        """
        from ..httpsig import RequestReplayed

        try:
            with self.write() as conn:
                conn.execute(t.request_nonces.insert().values(nonce=nonce, key_id=key_id, seen_at=now))
                if now % 16 == 0:
                    conn.execute(t.request_nonces.delete().where(t.request_nonces.c.seen_at < now - window))
        except IntegrityError as exc:
            raise RequestReplayed(
                "this request's nonce was used before; sign every request with a fresh nonce"
            ) from exc

    def entry_visible_to(self, conn: Connection, participant: str, index: int) -> bool:
        row = conn.execute(
            select(t.entry_parties.c.idx).where(
                t.entry_parties.c.participant == participant, t.entry_parties.c.idx == index
            )
        ).first()
        return row is not None

    # --- the intake queue ---------------------------------------------------------------

    def pending_row(self, conn: Connection, entry_id: str) -> Any:
        return conn.execute(_PENDING_ROW, {"id": entry_id}).first()

    def pending_batch(self, conn: Connection, limit: int) -> list[Any]:
        return list(conn.execute(_pending_query(limit)))

    def has_pending(self, conn: Connection) -> bool:
        return conn.execute(_HAS_PENDING).first() is not None

    def pending_depth(self, conn: Connection) -> tuple[int, str | None]:
        """How many entries wait in the queue, and when the oldest of them was received
        (RFC 3339), for metrics and readiness. Both read the ``(status, seq)`` index."""
        count = conn.execute(
            select(func.count()).select_from(t.pending).where(t.pending.c.status == "pending")
        ).scalar_one()
        oldest = conn.execute(
            select(t.pending.c.received_at)
            .where(t.pending.c.status == "pending")
            .order_by(t.pending.c.seq)
            .limit(1)
        ).scalar()
        return int(count), oldest

    def replica_lag(self, conn: Connection) -> float | None:
        """Seconds this database's replay of its primary's WAL is behind, on a PostgreSQL
        standby; None on a primary or on SQLite (nothing is replayed there).

        0 when the standby has replayed everything it received: on an idle primary the last
        replayed commit grows old, and ``now() - pg_last_xact_replay_timestamp()`` alone would
        report that age as lag. A standby that has replayed no commit since it started counts
        from its start, not as caught up.
        """
        if self.dialect != "postgresql":
            return None
        row = conn.execute(_REPLICA_LAG).one()
        if not row.recovering:
            return None
        return max(0.0, float(row.lag))

    def enqueue(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert intake rows; an id already queued is left as it is (idempotent)."""
        if not rows:
            return
        ins = pg_insert(t.pending) if self.dialect == "postgresql" else sqlite_insert(t.pending)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["id"]), list(rows))

    def forget_rejected(self, conn: Connection, ids: Sequence[str]) -> None:
        if ids:
            conn.execute(t.pending.delete().where(t.pending.c.id.in_(ids), t.pending.c.status == "rejected"))

    # --- appends (inside Store.append) ----------------------------------------------------

    def write_block(
        self,
        conn: Connection,
        *,
        entries: Sequence[Mapping[str, Any]],
        nodes: Sequence[tuple[NodeId, bytes]],
        block: Mapping[str, Any],
        participants: Sequence[ParticipantRecord],
        keys: Sequence[KeyRecord],
        created: Mapping[str, Set[str]] | None = None,
    ) -> None:
        """Write a block, its entries and nodes, and the changed governance records.

        ``created`` names, by kind ("participant", "key"), records known to be new: they are
        inserted without first asking which exist.
        """
        created = created or {}
        conn.execute(_INSERT_ENTRIES, list(entries))
        conn.execute(_INSERT_NODES, [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in nodes])
        conn.execute(_INSERT_BLOCK, [dict(block)])
        # The projection rows are upserted: those that exist are updated, the rest inserted,
        # in one statement per kind rather than two per record.
        _upsert(
            conn,
            _INSERT_PARTICIPANTS,
            _UPDATE_PARTICIPANT,
            "id",
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "roles": json.dumps(list(p.roles)),
                    "attributes": json.dumps(p.attributes, sort_keys=True),
                    "registered_index": p.registered_index,
                    "registered_height": p.registered_height,
                    "updated_index": p.updated_index,
                }
                for p in participants
            ],
            created.get("participant", frozenset()),
        )
        _upsert(
            conn,
            _INSERT_KEYS,
            _UPDATE_KEY,
            "key_id",
            [
                {
                    "key_id": k.key_id,
                    "participant": k.participant,
                    "public_key": base64.b64encode(k.public_key).decode("ascii"),
                    "added_index": k.added_index,
                    "added_height": k.added_height,
                    "revoked_index": k.revoked_index,
                    "revoked_height": k.revoked_height,
                    "reason": k.reason,
                }
                for k in keys
            ],
            created.get("key", frozenset()),
        )

    def settle_pending(
        self, conn: Connection, *, sealed: Sequence[str], rejected: Sequence[tuple[str, str, str]]
    ) -> None:
        """Drop sealed rows from the queue; mark refused ones with their code and detail."""
        for size, params in chunks(sealed):
            conn.execute(delete_in(t.pending, "id", size), params)
        if rejected:
            conn.execute(
                _REFUSE_PENDING,
                [{"_id": entry_id, "code": code, "detail": detail} for entry_id, code, detail in rejected],
            )


def _upsert(
    conn: Connection, insert: Any, update: Any, key: str, rows: list[dict[str, Any]], created: Set[str]
) -> None:
    """Update the rows whose ``key`` exists (``update``), insert the others (``insert``);
    keys in ``created`` are known not to exist."""
    if not rows:
        return
    unsure = [r[key] for r in rows if r[key] not in created]
    existing = projection.existing_keys(conn, insert.table, key, unsure) if unsure else set()
    old = [{**{k: v for k, v in r.items() if k != key}, f"_{key}": r[key]} for r in rows if r[key] in existing]
    new = [r for r in rows if r[key] not in existing]
    if old:
        conn.execute(update, old)
    if new:
        conn.execute(insert, new)


def _participant(row: Any) -> ParticipantRecord:
    return ParticipantRecord(
        id=row.id,
        name=row.name,
        roles=tuple(json.loads(row.roles)),
        attributes=json.loads(row.attributes),
        registered_index=row.registered_index,
        registered_height=row.registered_height,
        updated_index=row.updated_index,
    )


def _key(row: Any) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        participant=row.participant,
        public_key=base64.b64decode(row.public_key),
        added_index=row.added_index,
        added_height=row.added_height,
        revoked_index=row.revoked_index,
        revoked_height=row.revoked_height,
        reason=row.reason,
    )


class DbStateSource:
    """Loads ledger state records from the database, inside the caller's transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn

    def load_policy(self) -> Policy | None:
        return self.store.policy(self.conn)

    def load(self, kind: str, key: str) -> Any | None:
        if kind == "participant":
            return self.store.participant(self.conn, key)
        if kind == "key":
            return self.store.key(self.conn, key)
        return projection.load(self.conn, kind, key)

    def load_many(self, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        if kind == "participant":
            return self.store.participants_by_id(self.conn, keys)
        if kind == "key":
            return self.store.keys_by_id(self.conn, keys)
        return {k: rec for k in keys if (rec := self.load(kind, k)) is not None}

    def load_nonce(self, author: str, nonce: str) -> str | None:
        return self.store.nonce_entry(self.conn, author, nonce)

    def load_nonces(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.store.nonce_entries(self.conn, pairs)

    def load_entry_exists(self, entry_id: str) -> bool:
        return self.store.entry_exists(self.conn, entry_id)
