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
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

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
from .merkle import Frontier, NodeId, build_proof, inclusion_plan, plan_nodes
from .notes import Checkpoint, TlogProof, sign_checkpoint
from .rules import Position, apply_entry, prefetch, verify_signatures
from .state import LedgerState
from .facts import derive_block
from .facts_state import FactsState
from .storage import facts as facts_store
from .storage import projection
from .storage.cosignatures import with_cosignatures
from .storage.store import BlockRow, DbStateSource, EntryRow, Store
from .visibility import entry_parties

__all__ = ["Sealer", "SealObserver", "Receipt", "Outcome", "MAX_BLOCK_ENTRIES"]

log = logging.getLogger("filiera.sealing")

# A block holds at most this many entries; a longer queue is sealed in several rounds so that
# one transaction stays short.
MAX_BLOCK_ENTRIES = 2000

# Parsed envelopes kept from intake for sealing, per process.
_INTAKE_CACHE = 20_000


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


class SealObserver(Protocol):
    """Who watches a Sealer (the API's metrics). Called on the sealing path: must be quick
    and must not raise."""

    def entries_settled(self, outcomes: Sequence[Outcome]) -> None:
        """The final outcome of each submitted entry (a raised refusal counts for all)."""

    def block_sealed(self, *, entries: int, seconds: float) -> None:
        """A block of ``entries`` committed; ``seconds`` from taking the append lock to COMMIT."""


@dataclass(eq=False)
class _Job:
    """An entry whose submitter waits for its block (in this process, not in ``pending``)."""

    env: Envelope
    verified: frozenset[tuple[str, bytes]]
    done: threading.Event = field(default_factory=threading.Event)
    status: str = "pending"  # created | exists | rejected
    receipt: Receipt | None = None
    error: LedgerError | None = None


@dataclass
class _Round:
    sealed: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    errors: dict[str, LedgerError] = field(default_factory=dict)
    # The block this round wrote, its entries by id, and every Merkle node it read or wrote:
    # enough to build the receipts of its own entries without reading any of it back.
    block: BlockRow | None = None
    entries: dict[str, EntryRow] = field(default_factory=dict)
    nodes: dict[NodeId, bytes] = field(default_factory=dict)


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
        # Envelopes this process parsed and verified at intake, by entry id, so that sealing
        # them does not parse the stored bytes again (bounded; a miss just re-parses).
        self._intake: OrderedDict[str, tuple[Envelope, frozenset[tuple[str, bytes]]]] = OrderedDict()
        self._intake_lock = threading.Lock()
        # Waiting submitters of this process hand their entries to one leader thread at a
        # time, which seals all of them (and the durable queue) in one block: group commit
        # without a round trip through the queue table.
        self._jobs: list[_Job] = []
        self._jobs_cv = threading.Condition()
        self._leading = False
        # (tree size, root, frontier node hashes) after the last block this process sealed;
        # read and written only under the append lock. Kept even if that block's transaction
        # rolled back: it is then simply never matched (or matches the same tree again).
        self._frontier: tuple[int, str, dict[NodeId, bytes]] | None = None
        # Told of outcomes and sealed blocks, for metrics (api/metrics.py); None: nobody.
        self.observer: SealObserver | None = None

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
        observer = self.observer
        try:
            outcomes = self._submit_batch(objs, wait=wait, raise_first=raise_first)
        except LedgerError as exc:
            if observer is not None:
                observer.entries_settled([Outcome(None, "rejected", error=exc)] * max(1, len(objs)))
            raise
        if observer is not None:
            observer.entries_settled(outcomes)
        return outcomes

    def _submit_batch(self, objs: Sequence[Any], *, wait: bool, raise_first: bool) -> list[Outcome]:
        outcomes: list[Outcome] = []
        queue: list[dict[str, Any]] = []
        jobs: list[_Job] = []
        now = format_time(self.clock.now())
        with self.store.read() as conn:
            origin = self.origin(conn)
            head = self.store.head(conn)
            assert head is not None
            state = LedgerState(source=DbStateSource(self.store, conn))
            index, height = head.tree_size, head.height + 1
            # Parse everything first, so that what the rules will look up is read in bulk.
            envs: list[Envelope | LedgerError] = []
            for obj in objs:
                try:
                    envs.append(parse_envelope(obj, origin=origin))
                except LedgerError as exc:
                    envs.append(exc)
            parsed_envs = [e for e in envs if isinstance(e, Envelope)]
            prefetch(state, parsed_envs)
            sealed = {e.id for e in parsed_envs if _sealed_already(state, e)}
            seen: set[str] = set()
            for env_or_error in envs:
                parsed: str | None = None
                try:
                    if isinstance(env_or_error, LedgerError):
                        raise env_or_error
                    env = env_or_error
                    parsed = env.id
                    if env.id in seen or env.id in sealed:
                        outcomes.append(Outcome(env.id, "exists"))
                        continue
                    verified = self._precheck(conn, state, env, index, height)
                except LedgerError as exc:
                    # PostgreSQL reads at READ COMMITTED: another worker may have sealed this
                    # very entry since the look-up above, and the rules then refuse it for
                    # its own effects (nonce used, participant registered). It is in the
                    # log, so the answer is its receipt, not a refusal.
                    if parsed is not None and self.store.entry_exists(conn, parsed):
                        outcomes.append(Outcome(parsed, "exists"))
                        continue
                    if raise_first:
                        raise
                    outcomes.append(Outcome(None, "rejected", error=exc))
                    continue
                seen.add(env.id)
                index += 1
                outcomes.append(Outcome(env.id, "pending"))
                if wait:
                    jobs.append(_Job(env, verified))
                    continue
                self._remember(env, verified)
                queue.append(
                    {
                        "id": env.id,
                        "leaf_data": env.leaf_data.decode("utf-8"),
                        "verified": json.dumps([[k, b64(pk)] for k, pk in sorted(verified)]),
                        "received_at": now,
                        "status": "pending",
                    }
                )
        if not wait:
            if queue:
                # A 202 promises that the entry is durable: the queue row is flushed now.
                self._enqueue(queue)
            self._settle(outcomes, raise_first=raise_first)
            return outcomes
        self._seal_jobs(jobs)
        by_id: dict[str, _Job] = {j.env.id: j for j in jobs}
        for o in outcomes:
            job = by_id.get(o.id or "")
            if job is None:
                continue
            if o.status == "pending":
                o.status, o.receipt, o.error = job.status, job.receipt, job.error
            elif o.status == "exists" and job.receipt is not None:
                # A repeat of an entry earlier in this batch.
                o.receipt = job.receipt
        self._settle(outcomes, raise_first=raise_first)
        return outcomes

    # --- in-process group commit ------------------------------------------------------

    def _seal_jobs(self, jobs: list[_Job]) -> None:
        """Hand ``jobs`` to this process's leader (becoming it if there is none) and wait
        until each is sealed, found sealed already, or refused."""
        if not jobs:
            return
        deadline = time.monotonic() + self.seal_timeout
        with self._jobs_cv:
            self._jobs.extend(jobs)
        while True:
            with self._jobs_cv:
                while self._leading and not all(j.done.is_set() for j in jobs):
                    if not self._jobs_cv.wait(timeout=max(0.0, deadline - time.monotonic())):
                        break
                if all(j.done.is_set() for j in jobs):
                    return
                if self._leading:
                    raise SealTimeout(
                        "the entry was not sealed in time and nothing was acknowledged; "
                        "submit it again (resubmitting an entry is idempotent)",
                        entries=[j.env.id for j in jobs if not j.done.is_set()],
                    )
                self._leading = True
                batch, self._jobs = self._jobs[:MAX_BLOCK_ENTRIES], self._jobs[MAX_BLOCK_ENTRIES:]
            try:
                self._seal_batch(batch)
            finally:
                with self._jobs_cv:
                    self._leading = False
                    self._jobs_cv.notify_all()

    def _seal_batch(self, batch: list[_Job]) -> None:
        """One block: entries queued durably first (they waited longest), then ``batch``."""
        started = time.monotonic()
        try:
            with self.store.append() as conn:
                rows = self.store.pending_batch(conn, MAX_BLOCK_ENTRIES)
                head = self.store.head(conn)
                if head is None:
                    raise NotInitialised("the ledger has no genesis block; run `filiera init`")
                origin = self.origin(conn)
                out = _Round()
                todo = self._queued_todo(conn, rows, origin, out)
                state = LedgerState(source=DbStateSource(self.store, conn))
                prefetch(state, [env for env, _ in todo] + [j.env for j in batch])
                unique: dict[str, _Job] = {}
                for job in batch:
                    if _sealed_already(state, job.env) or job.env.id in out.sealed:
                        job.status = "exists"
                    elif job.env.id not in unique:
                        unique[job.env.id] = job
                        todo.append((job.env, job.verified))
                self._seal_block(conn, state, todo, head=head, origin=origin, out=out)
                # Only queued rows are settled: the waiting submitters of ``batch`` get their
                # answer directly and never had a row in ``pending``.
                queued = {r.id for r in rows}
                self.store.settle_pending(
                    conn,
                    sealed=[i for i in out.sealed if i in queued],
                    rejected=[r for r in out.rejected if r[0] in queued],
                )
                mine = [j.env.id for j in batch if j.env.id in out.sealed or j.status == "exists"]
                receipts = self._receipts_in(conn, mine, just_sealed=out)
        except OperationalError as exc:
            self._fail(batch, Unavailable(f"database busy or unreachable: {exc.orig}"))
            raise Unavailable(f"database busy or unreachable: {exc.orig}") from exc
        except IntegrityError as exc:
            conflict = _append_conflict(exc, "append conflict; nothing was acknowledged, submit again")
            self._fail(batch, conflict)
            raise conflict from exc
        except LedgerError as exc:
            self._fail(batch, exc)
            raise
        except BaseException:
            self._fail(batch, Unavailable("sealing failed; nothing was acknowledged, submit again"))
            raise
        self._observe_block(out, started)
        # Only now, after COMMIT, may anyone be told that their entry is in the log.
        for job in batch:
            if job.env.id in out.errors and job.env.id not in receipts:
                job.status, job.error = "rejected", out.errors[job.env.id]
            elif job.env.id in receipts:
                job.receipt = receipts[job.env.id]
                if job.status != "exists":
                    job.status = "created"
            else:  # a duplicate of an entry refused in this very block
                job.status = "rejected"
                job.error = out.errors.get(job.env.id) or Unavailable("entry not sealed; submit again")
            job.done.set()

    def _observe_block(self, out: _Round, started: float) -> None:
        if out.block is not None:
            self._observe_block_of(len(out.entries), started)

    def _observe_block_of(self, entries: int, started: float) -> None:
        observer = self.observer
        if observer is not None:
            observer.block_sealed(entries=entries, seconds=time.monotonic() - started)

    @staticmethod
    def _fail(batch: list[_Job], error: LedgerError) -> None:
        for job in batch:
            if not job.done.is_set():
                job.status, job.error = "rejected", error
                job.done.set()

    def _remember(self, env: Envelope, verified: frozenset[tuple[str, bytes]]) -> None:
        with self._intake_lock:
            self._intake[env.id] = (env, verified)
            while len(self._intake) > _INTAKE_CACHE:
                self._intake.popitem(last=False)

    def _recall(self, entry_id: str, leaf_data: str) -> tuple[Envelope, frozenset[tuple[str, bytes]]] | None:
        with self._intake_lock:
            found = self._intake.pop(entry_id, None)
        # Same id means same payload, but the queued row may carry another set of signatures.
        if found is not None and found[0].leaf_data == leaf_data.encode("utf-8"):
            return found
        return None

    def _enqueue(self, rows: list[dict[str, Any]]) -> None:
        ids = [r["id"] for r in rows]
        with self.store.write() as conn:
            # A fresh attempt replaces an earlier refusal of the same entry.
            self.store.forget_rejected(conn, ids)
            self.store.enqueue(conn, rows)

    def _settle(self, outcomes: list[Outcome], *, raise_first: bool) -> None:
        """Give receipts to outcomes found sealed and errors to those refused at sealing;
        with ``raise_first``, raise the first error."""
        ids = [o.id for o in outcomes if o.id and o.receipt is None and o.status in ("pending", "exists")]
        if ids:
            refusals = {}
            with self.store.read() as conn:
                receipts = self._receipts_in(conn, ids)
                for o in outcomes:
                    if o.id and o.id not in receipts and o.status == "pending":
                        row = self.store.pending_row(conn, o.id)
                        if row is not None and row.status == "rejected":
                            refusals[o.id] = error_for_code(row.code, row.detail, entry=o.id)
            for o in outcomes:
                if o.id in receipts:
                    o.receipt = receipts[o.id]
                    o.status = "created" if o.status == "pending" else "exists"
                elif o.id in refusals:
                    o.status, o.error = "rejected", refusals[o.id]
            # The refusal stays recorded: other requests carrying the same entry may be
            # waiting for it, and GET /v1/entries/{id} answers with it. A fresh attempt
            # replaces it (_enqueue).
        if raise_first:
            for o in outcomes:
                if o.error is not None:
                    raise o.error

    # --- sealing ----------------------------------------------------------------------

    def _require_key(self) -> SigningKey:
        if self.key is None:
            raise Unavailable("this process has no ledger key, so it cannot seal blocks")
        return self.key

    def seal_pending(self) -> set[str]:
        """Seal queued entries into blocks until the queue is drained. Returns the ids this
        call sealed."""
        settled: set[str] = set()
        while True:
            started = time.monotonic()
            sealed_now: set[str] = set()
            try:
                with self.store.append() as conn:
                    rows = self.store.pending_batch(conn, MAX_BLOCK_ENTRIES)
                    if rows:
                        sealed_now = self._seal_rows(conn, rows)
                        settled |= sealed_now
            except OperationalError as exc:
                raise Unavailable(f"database busy or unreachable: {exc.orig}") from exc
            except IntegrityError as exc:
                raise _append_conflict(exc, "append conflict; retry") from exc
            if sealed_now:
                self._observe_block_of(len(sealed_now), started)
            # A partial batch means the queue was drained: no need for an empty round.
            if len(rows) < MAX_BLOCK_ENTRIES:
                return settled

    def _seal_rows(self, conn: Connection, rows: Sequence[Any]) -> set[str]:
        head = self.store.head(conn)
        if head is None:
            raise NotInitialised("the ledger has no genesis block; run `filiera init`")
        origin = self.origin(conn)
        out = _Round()
        todo = self._queued_todo(conn, rows, origin, out)
        already = len(out.sealed)
        state = LedgerState(source=DbStateSource(self.store, conn))
        self._seal_block(conn, state, todo, head=head, origin=origin, out=out)
        self.store.settle_pending(conn, sealed=out.sealed, rejected=out.rejected)
        return set(out.sealed[already:])

    def _queued_todo(
        self, conn: Connection, rows: Sequence[Any], origin: str, out: _Round
    ) -> list[tuple[Envelope, frozenset[tuple[str, bytes]] | None]]:
        """The queued rows still to seal (rows already in the log are settled in ``out``)."""
        if not rows:
            return []
        already = self.store.existing_ids(conn, [r.id for r in rows])
        out.sealed.extend(already)
        todo: list[tuple[Envelope, frozenset[tuple[str, bytes]] | None]] = []
        for r in rows:
            if r.id in already:
                continue
            cached = self._recall(r.id, r.leaf_data)
            if cached is not None:
                todo.append(cached)
                continue
            try:
                env = envelope_from_leaf(r.leaf_data.encode("utf-8"), origin=origin)
                verified = frozenset((k, _unb64(pk)) for k, pk in json.loads(r.verified))
            except (LedgerError, ValueError) as exc:
                out.rejected.append((r.id, getattr(exc, "code", "malformed_input"), str(exc)))
                continue
            todo.append((env, verified))
        return todo

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
        stored = self._frontier_nodes(conn, head)
        frontier = Frontier(size, [stored[n] for n in needed])
        rows: list[dict[str, Any]] = []
        nodes: list[tuple[NodeId, bytes]] = []
        parties: list[tuple[str, int]] = []
        sealed: list[tuple[int, Envelope]] = []
        prefetch(state, [env for env, _ in todo])
        for env, verified in todo:
            pos = Position(index=size + len(rows), height=height, block_time=block_time)
            try:
                apply_entry(state, env, pos, verified=verified)
            except LedgerError as exc:
                out.rejected.append((env.id, exc.code, exc.detail))
                out.errors[env.id] = exc
                continue
            nodes.extend(frontier.append(env.leaf_hash))
            out.sealed.append(env.id)
            sealed.append((pos.index, env))
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
        block = BlockRow(
            height=height,
            hash=header.hash(),
            prev=header.prev,
            time=header.time,
            first_index=size,
            tree_size=frontier.size,
            root=header.root,
            signature=b64(sign_block(header, key)),
            checkpoint=checkpoint,
        )
        self.store.write_block(
            conn,
            entries=rows,
            nodes=nodes,
            block={
                "height": block.height,
                "hash": block.hash,
                "prev": block.prev,
                "time": block.time,
                "first_index": block.first_index,
                "tree_size": block.tree_size,
                "root": block.root,
                "signature": block.signature,
                "checkpoint": block.checkpoint,
            },
            participants=state.changed_participants(),
            keys=state.changed_keys(),
            created={kind: state.created(kind) for kind in ("participant", "key")},
        )
        for kind in projection.PROJECTED_KINDS:
            projection.flush(conn, kind, state.changed(kind), state.created(kind))
        projection.write_parties(conn, parties)
        # The block's facts, in its own transaction: they commit with it or not at all, so
        # none is lost or written twice whatever crashes, and the projection never lags.
        facts = FactsState(source=facts_store.DbFactsSource(conn))
        facts_store.write_facts(conn, derive_block(state, facts, sealed, tree_size=frontier.size))
        facts_store.flush_state(conn, facts)
        out.block = block
        out.entries = {r["id"]: EntryRow(**r) for r in rows}
        # A proof for a leaf of this block needs only nodes this block wrote and nodes of the
        # frontier it started from (a left sibling entirely before ``size`` is a maximal
        # perfect subtree of [0, size)); _receipts_in reads whatever else, if anything, is missing.
        out.nodes = {**stored, **dict(nodes)}
        self._frontier = (frontier.size, block.root, {n: out.nodes[n] for n in frontier.nodes()})
        log.debug("sealed block %d: %d entries, tree size %d", height, len(rows), frontier.size)
        return len(rows)

    def _frontier_nodes(self, conn: Connection, head: BlockRow | None) -> dict[NodeId, bytes]:
        """The hashes of the frontier after ``head``, from the last block this process sealed
        if ``head`` is that block (its size and root name the tree, hence the frontier),
        otherwise read from storage."""
        if head is None:
            return {}
        cached = self._frontier
        if cached is not None and cached[:2] == (head.tree_size, head.root):
            return dict(cached[2])
        return self.store.nodes(conn, Frontier.needed(head.tree_size))

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
        with self.store.read() as conn:
            return self._receipts_in(conn, entry_ids)

    def _receipts_in(
        self, conn: Connection, entry_ids: Sequence[str], *, just_sealed: _Round | None = None
    ) -> dict[str, Receipt]:
        """Receipts of the sealed entries among ``entry_ids``, with at most one Merkle node
        query per block. Entries of ``just_sealed`` (the block this transaction wrote) are
        taken from it rather than read back."""
        by_block: dict[int, list[EntryRow]] = {}
        blocks: dict[int, BlockRow] = {}
        known: dict[NodeId, bytes] = {}
        if just_sealed is not None and just_sealed.block is not None:
            blocks[just_sealed.block.height] = just_sealed.block
            known = just_sealed.nodes
        for entry_id in entry_ids:
            entry = just_sealed.entries.get(entry_id) if just_sealed is not None else None
            if entry is None:
                entry = self.store.entry_by_id(conn, entry_id)
            if entry is not None:
                by_block.setdefault(entry.height, []).append(entry)
        out: dict[str, Receipt] = {}
        for height, entries in by_block.items():
            block = blocks.get(height)
            if block is None:
                stored = self.store.block(conn, height)
                assert stored is not None
                # An older block may have been witnessed since it was sealed: its receipt
                # then carries the cosignatures (PROTOCOL §5).
                block = with_cosignatures(conn, stored)
            plans = {e.id: inclusion_plan(index=e.idx, tree_size=block.tree_size) for e in entries}
            wanted = set().union(*(plan_nodes(p) for p in plans.values()))
            nodes = {n: known[n] for n in wanted if n in known}
            if len(nodes) < len(wanted):
                nodes.update(self.store.nodes(conn, wanted - nodes.keys()))
            for e in entries:
                out[e.id] = _receipt(e, block, build_proof(plans[e.id], nodes))
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
                except Exception as exc:  # noqa: BLE001 - keep sealing; the next round retries
                    if _interrupted(exc):
                        text = str(exc)
                        log.warning(
                            "background sealing round interrupted, the next round retries: %s",
                            text.splitlines()[0] if text else type(exc).__name__,
                        )
                    else:
                        log.exception("background sealing round failed")

        self._thread = threading.Thread(target=run, name="filiera-sealer", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _sealed_already(state: LedgerState, env: Envelope) -> bool:
    """Whether ``env`` is in the log, from the state's nonce look-up (which the rules make
    anyway): an entry's id is the hash of its payload, author and nonce included, so the
    entry that used ``env``'s nonce is ``env`` itself exactly when ``env`` was sealed."""
    return state.nonce_entry(env.author, env.nonce) == env.id


def _receipt(entry: EntryRow, block: BlockRow, hashes: Sequence[bytes]) -> Receipt:
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


def _append_conflict(exc: IntegrityError, detail: str) -> Unavailable:
    """Another writer appended at the same position: impossible under the append lock, so the
    lock is not doing its job. Logged loudly; the caller answers 503 with ``detail``."""
    log.error("append conflict under the append lock: %s", exc.orig)
    return Unavailable(detail)


def _interrupted(exc: Exception) -> bool:
    """Whether a sealing round failed because the database went away mid-round (a restart, a
    terminated backend, a busy file): nothing was committed, and the next round seals the queue."""
    if isinstance(exc, (Unavailable, OperationalError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
