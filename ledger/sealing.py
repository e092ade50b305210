"""Intake and sealing: how a signed entry becomes part of the log (PROTOCOL §3, §5).

1. *Intake*, in the worker that received the entry, in parallel with other workers: parse,
   verify every signature (the expensive part), check the rules against the current state for
   an early answer, then queue the entry durably (``pending``).
2. *Sealing*, one transaction at a time (``Store.append``): whoever holds the append lock seals
   **every** queued entry into one block (group commit), re-checking each against the state at
   its exact position. The rules decide here, so of two conflicting entries exactly one is
   sealed and the other is refused with its reason.
3. The submitter answers ``201`` only after the block's transaction has committed; a ``202``
   entry is already durable and any later sealing round (another request, or the background
   sealer) picks it up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from . import jcs
from .blocks import GENESIS_PREV, BlockHeader, sign_block
from .clock import Clock, SystemClock
from .encoding import b64, format_time, parse_time
from .entries import Envelope, envelope_from_leaf, parse_envelope, sign_payload
from .errors import (
    EntryNotFound,
    LedgerError,
    LedgerExists,
    NotInitialised,
    SealTimeout,
    Unavailable,
    error_for_code,
)
from .keys import SigningKey
from .merkle import Frontier, build_proof, inclusion_plan, plan_nodes
from .notes import Checkpoint, TlogProof, sign_checkpoint
from .rules import Position, apply_entry, verify_signatures
from .state import LedgerState
from .storage import projection
from .storage.store import BlockRow, DbStateSource, EntryRow, Store
from .visibility import entry_parties

__all__ = ["Sealer", "Receipt", "Outcome", "MAX_BLOCK_ENTRIES"]

log = logging.getLogger("filiera.sealing")

# A block holds at most this many entries; a longer queue is sealed in several rounds so that
# one transaction stays short.
MAX_BLOCK_ENTRIES = 2000

# How many times a waiting request re-waits for an entry that other requests keep re-queueing.
_SETTLE_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a submitter keeps: where the entry is, and the proof that the ledger took it."""

    id: str
    index: int
    height: int
    leaf_hash: str
    tlog_proof: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "height": self.height,
            "leaf_hash": self.leaf_hash,
            "tlog_proof": self.tlog_proof,
        }


@dataclass(slots=True)
class Outcome:
    """The result of one submitted entry: sealed now, sealed before, queued, or refused."""

    id: str | None
    status: str  # "created" | "exists" | "pending" | "rejected"
    receipt: Receipt | None = None
    error: LedgerError | None = None


@dataclass
class _Round:
    sealed: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)


class Sealer:
    """The write side of one ledger. One per process; thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        signing_key: SigningKey | None,
        clock: Clock | None = None,
        seal_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.key = signing_key
        self.clock: Clock = clock or SystemClock()
        self.seal_timeout = seal_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- genesis ----------------------------------------------------------------------

    def genesis(
        self, *, origin: str, admins: Sequence[Mapping[str, Any]], admin_quorum: int, nonce: str
    ) -> Receipt:
        """Seal block 0: the genesis entry, signed by the ledger key. Raises LedgerExists."""
        key = self._require_key()
        payload = {
            "ledger": origin,
            "type": "ledger.genesis",
            "author": "ledger",
            "time": format_time(self.clock.now()),
            "nonce": nonce,
            "ledger_key": key.public_key.b64,
            "admins": list(admins),
            "policy": {"admin_quorum": admin_quorum},
        }
        env = parse_envelope(sign_payload(payload, [("ledger", key)]), origin=origin)
        with self.store.append() as conn:
            if self.store.head(conn) is not None:
                raise LedgerExists("this database already holds a ledger")
            state = LedgerState()
            self._seal_block(conn, state, [(env, None)], head=None, origin=origin, out=_Round())
        return self.receipt(env.id)

    # --- intake -----------------------------------------------------------------------

    def origin(self, conn: Connection) -> str:
        policy = self.store.policy(conn)
        if policy is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        return policy.origin

    def _precheck(self, conn: Connection, state: LedgerState, env: Envelope, index: int, height: int) -> frozenset[tuple[str, bytes]]:
        verified = verify_signatures(state, env)
        apply_entry(state, env, Position(index, height, self.clock.now()), verified=verified)
        return verified

    def submit(self, obj: Any, *, wait: bool = True) -> Outcome:
        """Take one envelope (parsed JSON). Raises a LedgerError leaf if it is refused."""
        return self.submit_batch([obj], wait=wait, raise_first=True)[0]

    def submit_batch(self, objs: Sequence[Any], *, wait: bool = True, raise_first: bool = False) -> list[Outcome]:
        """Take envelopes in order; each is checked against the state after the ones before.

        Returns one Outcome per envelope (refusals as ``rejected`` with their error), or,
        with ``raise_first``, raises the first refusal. Nothing refused is written.
        """
        outcomes: list[Outcome] = []
        queue: list[dict[str, Any]] = []
        now = format_time(self.clock.now())
        with self.store.read() as conn:
            origin = self.origin(conn)
            head = self.store.head(conn)
            assert head is not None
            state = LedgerState(source=DbStateSource(self.store, conn))
            index, height = head.tree_size, head.height + 1
            seen: set[str] = set()
            for obj in objs:
                parsed: str | None = None
                try:
                    env = parse_envelope(obj, origin=origin)
                    parsed = env.id
                    if env.id in seen or self.store.entry_by_id(conn, env.id) is not None:
                        outcomes.append(Outcome(env.id, "exists"))
                        continue
                    verified = self._precheck(conn, state, env, index, height)
                except LedgerError as exc:
                    # PostgreSQL reads at READ COMMITTED: another worker may have sealed this
                    # very entry since the look-up above, and the rules then refuse it for
                    # its own effects (nonce used, participant registered). It is in the
                    # log, so the answer is its receipt, not a refusal.
                    if parsed is not None and self.store.entry_by_id(conn, parsed) is not None:
                        outcomes.append(Outcome(parsed, "exists"))
                        continue
                    if raise_first:
                        raise
                    outcomes.append(Outcome(None, "rejected", error=exc))
                    continue
                seen.add(env.id)
                index += 1
                outcomes.append(Outcome(env.id, "pending"))
                queue.append(
                    {
                        "id": env.id,
                        "leaf_data": env.leaf_data.decode("utf-8"),
                        "verified": json.dumps([[k, b64(pk)] for k, pk in sorted(verified)]),
                        "received_at": now,
                        "status": "pending",
                    }
                )
        if queue:
            self._enqueue(queue)
        if not wait:
            self._settle(outcomes, raise_first=raise_first)
            return outcomes
        # Another request carrying the same entry may queue it afresh after a round refused
        # it (a fresh attempt replaces a refusal, _enqueue): then wait for that round too,
        # rather than answer "pending" to a request that asked to wait.
        for _ in range(_SETTLE_ROUNDS):
            self._wait_sealed([o.id for o in outcomes if o.status == "pending" and o.id])
            self._settle(outcomes, raise_first=raise_first)
            waiting = sorted(o.id for o in outcomes if o.status == "pending" and o.id)
            if not waiting:
                return outcomes
        raise SealTimeout(
            "the entry is queued durably but was not sealed in time; it will be sealed "
            "without further action: GET /v1/entries/{id} later",
            entries=waiting,
        )

    def _enqueue(self, rows: list[dict[str, Any]]) -> None:
        ids = [r["id"] for r in rows]
        with self.store.write() as conn:
            # A fresh attempt replaces an earlier refusal of the same entry.
            self.store.forget_rejected(conn, ids)
            self.store.enqueue(conn, rows)

    def _settle(self, outcomes: list[Outcome], *, raise_first: bool) -> None:
        ids = [o.id for o in outcomes if o.id and o.status in ("pending", "exists")]
        if not ids:
            return
        with self.store.read() as conn:
            sealed = self.store.existing_ids(conn, ids)
            refusals = {}
            for o in outcomes:
                if o.id and o.id not in sealed and o.status == "pending":
                    row = self.store.pending_row(conn, o.id)
                    if row is not None and row.status == "rejected":
                        refusals[o.id] = error_for_code(row.code, row.detail, entry=o.id)
        receipts = self.receipts(sorted(sealed))
        for o in outcomes:
            if o.id is None:
                continue
            if o.id in sealed:
                o.receipt = receipts[o.id]
                o.status = "created" if o.status == "pending" else "exists"
            elif o.id in refusals:
                o.status, o.error = "rejected", refusals[o.id]
        # The refusal stays recorded: other requests carrying the same entry may be waiting
        # for it (deleting it here made them answer 202 for a refused entry), and
        # GET /v1/entries/{id} answers with it. A fresh attempt replaces it (_enqueue).
        if raise_first:
            for o in outcomes:
                if o.error is not None:
                    raise o.error

    def _wait_sealed(self, ids: list[str]) -> None:
        """Seal until none of ``ids`` is still queued (each round seals everyone's entries)."""
        deadline = time.monotonic() + self.seal_timeout
        waiting = set(ids)
        while waiting:
            self.seal_pending()
            with self.store.read() as conn:
                waiting = {
                    i for i in waiting
                    if (row := self.store.pending_row(conn, i)) is not None and row.status == "pending"
                }
            if waiting and time.monotonic() > deadline:
                raise SealTimeout(
                    "the entry is queued durably but was not sealed in time; it will be sealed "
                    "without further action: GET /v1/entries/{id} later",
                    entries=sorted(waiting),
                )

    # --- sealing ----------------------------------------------------------------------

    def _require_key(self) -> SigningKey:
        if self.key is None:
            raise Unavailable("this process has no ledger key, so it cannot seal blocks")
        return self.key

    def seal_pending(self) -> int:
        """Seal queued entries into blocks until the queue is empty. Returns entries sealed."""
        total = 0
        while True:
            try:
                with self.store.append() as conn:
                    rows = self.store.pending_batch(conn, MAX_BLOCK_ENTRIES)
                    if not rows:
                        return total
                    total += self._seal_rows(conn, rows)
            except OperationalError as exc:
                raise Unavailable(f"database busy or unreachable: {exc.orig}") from exc
            except IntegrityError as exc:
                # Another process appended the same position: impossible under the append
                # lock, so it means the lock is not doing its job. Refuse loudly.
                log.error("append conflict under the append lock: %s", exc.orig)
                raise Unavailable("append conflict; retry") from exc

    def _seal_rows(self, conn: Connection, rows: Sequence[Any]) -> int:
        head = self.store.head(conn)
        if head is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        origin = self.origin(conn)
        out = _Round()
        already = self.store.existing_ids(conn, [r.id for r in rows])
        out.sealed.extend(already)
        todo: list[tuple[Envelope, frozenset[tuple[str, bytes]] | None]] = []
        for r in rows:
            if r.id in already:
                continue
            try:
                env = envelope_from_leaf(r.leaf_data.encode("utf-8"), origin=origin)
                verified = frozenset((k, _unb64(pk)) for k, pk in json.loads(r.verified))
            except (LedgerError, ValueError) as exc:
                out.rejected.append((r.id, getattr(exc, "code", "malformed_input"), str(exc)))
                continue
            todo.append((env, verified))
        state = LedgerState(source=DbStateSource(self.store, conn))
        n = self._seal_block(conn, state, todo, head=head, origin=origin, out=out)
        self.store.settle_pending(conn, sealed=out.sealed, rejected=out.rejected)
        return n

    def _seal_block(
        self,
        conn: Connection,
        state: LedgerState,
        todo: Sequence[tuple[Envelope, frozenset[tuple[str, bytes]] | None]],
        *,
        head: BlockRow | None,
        origin: str,
        out: _Round,
    ) -> int:
        key = self._require_key()
        size = head.tree_size if head else 0
        height = head.height + 1 if head else 0
        now = self.clock.now()
        # Block times never go backwards, even if the clock does.
        block_time = max(now, parse_time(head.time, field="time")) if head else now
        needed = Frontier.needed(size)
        stored = self.store.nodes(conn, needed)
        frontier = Frontier(size, [stored[n] for n in needed])
        rows: list[dict[str, Any]] = []
        nodes = []
        parties: list[tuple[str, int]] = []
        for env, verified in todo:
            pos = Position(index=size + len(rows), height=height, block_time=block_time)
            try:
                apply_entry(state, env, pos, verified=verified)
            except LedgerError as exc:
                out.rejected.append((env.id, exc.code, exc.detail))
                continue
            nodes.extend(frontier.append(env.leaf_hash))
            out.sealed.append(env.id)
            parties.extend((who, pos.index) for who in sorted(entry_parties(env, state)))
            rows.append(
                {
                    "idx": pos.index,
                    "id": env.id,
                    "height": height,
                    "type": str(env.type),
                    "author": env.author,
                    "nonce": env.nonce,
                    "leaf_hash": env.leaf_hash.hex(),
                    "leaf_data": env.leaf_data.decode("utf-8"),
                }
            )
        if not rows:
            return 0
        root = frontier.root()
        header = BlockHeader(
            ledger=origin,
            height=height,
            prev=head.hash if head else GENESIS_PREV,
            time=format_time(block_time),
            first_index=size,
            tree_size=frontier.size,
            root=root.hex(),
        )
        checkpoint = sign_checkpoint(Checkpoint(origin, frontier.size, root), signing_key=key)
        self.store.write_block(
            conn,
            entries=rows,
            nodes=nodes,
            block={
                "height": height,
                "hash": header.hash(),
                "prev": header.prev,
                "time": header.time,
                "first_index": size,
                "tree_size": frontier.size,
                "root": header.root,
                "signature": b64(sign_block(header, key)),
                "checkpoint": checkpoint,
            },
            participants=state.changed_participants(),
            keys=state.changed_keys(),
        )
        for kind in projection.PROJECTED_KINDS:
            projection.flush(conn, kind, state.changed(kind))
        projection.write_parties(conn, parties)
        log.info("sealed block %d: %d entries, tree size %d", height, len(rows), frontier.size)
        return len(rows)

    # --- receipts ---------------------------------------------------------------------

    def receipt(self, entry_id: str) -> Receipt:
        """The receipt of a sealed entry: its proof against its own block's checkpoint.

        Raises EntryNotFound."""
        found = self.receipts([entry_id])
        if entry_id not in found:
            raise EntryNotFound(f"no sealed entry {entry_id}", entry=entry_id)
        return found[entry_id]

    def receipts(self, entry_ids: Sequence[str]) -> dict[str, Receipt]:
        """Receipts of the sealed entries among ``entry_ids``, read in one transaction."""
        out: dict[str, Receipt] = {}
        blocks: dict[int, BlockRow] = {}
        with self.store.read() as conn:
            for entry_id in entry_ids:
                entry = self.store.entry_by_id(conn, entry_id)
                if entry is None:
                    continue
                if entry.height not in blocks:
                    block = self.store.block(conn, entry.height)
                    assert block is not None
                    blocks[entry.height] = block
                out[entry_id] = receipt_for(self.store, conn, entry, blocks[entry.height])
        return out

    # --- background sealing of 202 entries -------------------------------------------

    def start_background(self, interval: float) -> None:
        """Seal queued entries every ``interval`` seconds in a daemon thread of this process."""
        if self._thread is not None or interval <= 0:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    with self.store.read() as conn:
                        busy = self.store.has_pending(conn)
                    if busy:
                        self.seal_pending()
                except Exception:  # noqa: BLE001 - keep sealing; the next round retries
                    log.exception("background sealing round failed")

        self._thread = threading.Thread(target=run, name="filiera-sealer", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def receipt_for(store: Store, conn: Connection, entry: EntryRow, block: BlockRow) -> Receipt:
    plan = inclusion_plan(index=entry.idx, tree_size=block.tree_size)
    hashes = build_proof(plan, store.nodes(conn, plan_nodes(plan)))
    proof = TlogProof(index=entry.idx, hashes=tuple(hashes), checkpoint=block.checkpoint)
    return Receipt(
        id=entry.id,
        index=entry.idx,
        height=entry.height,
        leaf_hash=entry.leaf_hash,
        tlog_proof=proof.format(),
    )


def _unb64(value: str) -> bytes:
    import base64

    return base64.b64decode(value, validate=True)


