"""The ledger's side of witnessing: submit checkpoints to the policy's witnesses, keep their
cosignatures, and choose the checkpoint to publish (c2sp.org/tlog-witness, tlog-policy).

A background thread of each server process (:meth:`Witnessing.start_background`) runs a
round every interval; one process at a time wins the round (``witnessing_turn``). A round
reads the newest block and, for every witness that has not cosigned its tree size yet, posts
``add-checkpoint`` with a consistency proof from the size the witness last saw: the largest
size it cosigned for us (stored), or the size it answered with a 409. Answers are verified
against the witness's key before they are stored. Rounds run outside every ledger
transaction, on their own threads, so a slow or dead witness never delays intake or sealing;
a witness that fails is retried with a growing pause.

Freshness (TESTPLAN T11): a checkpoint carries no time, so an idle ledger would otherwise show
the same cosignatures for ever, and a reader could not tell a live ledger from a frozen one.
With ``refresh`` set (FILIERA_WITNESS_REFRESH), a round also resubmits the head checkpoint (old
size = its own size, no proof: tlog-witness answers that with a fresh cosignature) to every
witness whose newest cosignature of it is ``refresh`` seconds old or more. The renewal is stored
beside the first cosignature, and readers are served the newest one.

What a refusal means for the ledger:

* 409 with a size below ours: the witness is behind or ahead of what we remembered; retry
  from that size.
* 409 at the size we sent, 409 with a size beyond our head, or 422: the witness holds a
  different history of this log: a split view, or a database restored from an old backup.
  Logged as an error and reported; never "fixed" by the ledger.
* 403/404: the witness does not trust this ledger's key or origin (its configuration).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .cosignature import verify_cosignature
from .errors import CheckpointNotWitnessed, LedgerError, NotInitialised, NoTrustedSignature, Unavailable
from .merkle import build_proof, consistency_plan, plan_nodes
from .notes import Checkpoint, add_signature_lines, split_note
from .storage import cosignatures as cs
from .storage.store import BlockRow, Store
from .witness import SIZE_MEDIA_TYPE, AddCheckpoint, parse_cosignature_lines, parse_size
from .witness_policy import PolicyWitness, WitnessPolicy

__all__ = ["Witnessing", "WitnessResult", "http_post", "published_checkpoint", "Post"]

log = logging.getLogger("filiera.witnessing")

# (url, body, timeout seconds) -> (status, content type, body). Raises Unavailable.
Post = Callable[[str, bytes, float], tuple[int, str, bytes]]

# A witness that keeps answering 409 with new sizes is not making progress; stop the round.
_MAX_ATTEMPTS = 3
# Pages of cosigned sizes read while looking for the newest one that meets the quorum.
_PAGE = 32


def http_post(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    """POST ``body`` as text/plain; any HTTP status is an answer. Raises Unavailable when the
    witness cannot be reached or does not answer within ``timeout`` seconds."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - URL from the operator's policy
            return resp.status, resp.headers.get("Content-Type", ""), resp.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read(64 * 1024)
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """What one witness did with one checkpoint.

    ``status``: ``cosigned`` (stored now), ``renewed`` (a fresh cosignature of a size already
    cosigned, see ``refresh``), ``current`` (already cosigned this size, recently enough),
    ``unreachable``, ``refused`` (an answer that is not a cosignature), ``conflict`` (the
    witness holds another history: see the module docstring), ``no_url``, ``waiting``
    (retried after a failure, not this round).
    """

    witness: str
    status: str
    tree_size: int
    detail: str = ""


@dataclass
class _Backoff:
    failures: int = 0
    next_try: float = 0.0


@dataclass
class Witnessing:
    """The witnessing loop of one server process. Thread-safe."""

    store: Store
    policy: WitnessPolicy
    post: Post = http_post
    timeout: float = 5.0
    interval: float = 1.0
    refresh: float = 0.0  # seconds; 0: never ask again for a size already cosigned
    clock: Callable[[], float] = time.time
    _seen: dict[str, int] = field(default_factory=dict)  # witness -> size it last reported
    _backoff: dict[str, _Backoff] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor | None = None

    def round(self, *, force: bool = False) -> list[WitnessResult]:
        """Submit the newest checkpoint to every witness that lacks it. Returns one result per
        witness, or [] when another process or thread holds the turn. ``force`` ignores the
        pauses after failures. Raises NotInitialised before genesis."""
        with cs.witnessing_turn(self.store) as mine:
            if not mine:
                return []
            with self.store.read() as conn:
                head = self.store.head(conn)
            if head is None:
                raise NotInitialised("the ledger has no genesis block; run `filiera init`")
            witnesses = self.policy.witnesses
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(1, len(witnesses)), thread_name_prefix="filiera-witness")
            futures = [self._pool.submit(self._witness, w, head, force) for w in witnesses]
            return [f.result() for f in futures]

    def _witness(self, witness: PolicyWitness, head: BlockRow, force: bool) -> WitnessResult:
        name, size = witness.name, head.tree_size
        url = witness.add_checkpoint_url
        if url is None:
            return WitnessResult(name, "no_url", size, "the policy gives no URL for this witness")
        v = witness.verifier
        with self.store.read() as conn:
            stored = cs.latest_size(conn, witness=v.name, key_id=v.key_id.hex()) or 0
        if stored > size or (stored == size and not self._stale(v.name, v.key_id.hex(), size)):
            return WitnessResult(name, "current", size)
        now = time.monotonic()
        with self._lock:
            backoff = self._backoff.setdefault(name, _Backoff())
            if not force and now < backoff.next_try:
                return WitnessResult(name, "waiting", size, "retrying after an earlier failure")
            old = max(stored, self._seen.get(name, 0))
        try:
            if old > size:
                # Remembered from its 409: it holds more of this log than this ledger has.
                result = WitnessResult(name, "conflict", size, _beyond(old, size))
            else:
                result = self._submit(witness, url, head, old)
        except Unavailable as exc:
            result = WitnessResult(name, "unreachable", size, exc.detail)
        except LedgerError as exc:
            result = WitnessResult(name, "refused", size, f"{exc.code}: {exc.detail}")
        with self._lock:
            if result.status in ("cosigned", "renewed"):
                backoff.failures, backoff.next_try = 0, 0.0
            else:
                backoff.failures += 1
                pause = min(self.interval * 2 ** min(backoff.failures, 10), max(self.interval * 16, 1.0), 60.0)
                backoff.next_try = time.monotonic() + pause
        if result.status == "conflict":
            log.error("witness %s: %s", name, result.detail)
        elif result.status not in ("cosigned", "renewed"):
            log.warning("witness %s (%s): %s: %s", name, url, result.status, result.detail)
        return result

    def _submit(self, witness: PolicyWitness, url: str, head: BlockRow, old: int) -> WitnessResult:
        name, size = witness.name, head.tree_size
        text, _ = split_note(head.checkpoint)
        checkpoint = Checkpoint.parse_body(text)
        for _attempt in range(_MAX_ATTEMPTS):
            request = AddCheckpoint(old_size=old, proof=self._proof(old, size), checkpoint=head.checkpoint)
            status, media, body = self.post(url, request.format(), self.timeout)
            if status == 200:
                return self._accept(witness, checkpoint, parse_cosignature_lines(body))
            if status == 409 and media.split(";")[0].strip() == SIZE_MEDIA_TYPE:
                theirs = parse_size(body)
                with self._lock:
                    self._seen[name] = theirs
                if theirs > size:
                    return WitnessResult(name, "conflict", size, _beyond(theirs, size))
                if theirs == old:
                    return WitnessResult(
                        name, "conflict", size,
                        f"the witness cosigned another checkpoint of size {theirs}: it holds "
                        "another history of this ledger (a split view)",
                    )
                old = theirs
                continue
            detail = body[:300].decode("utf-8", "replace")
            if status == 422:
                return WitnessResult(name, "conflict", size, f"the witness found our checkpoint inconsistent with its view: {detail}")
            return WitnessResult(name, "refused", size, f"HTTP {status}: {detail}")
        return WitnessResult(name, "refused", size, f"no agreement on the old size after {_MAX_ATTEMPTS} attempts")

    def _stale(self, witness: str, key_id: str, size: int) -> bool:
        """Whether the newest cosignature of ``size`` by this key is due for renewal."""
        if self.refresh <= 0:
            return False
        with self.store.read() as conn:
            newest = cs.newest_timestamp(conn, witness=witness, key_id=key_id, tree_size=size)
        return newest is None or self.clock() - newest >= self.refresh

    def _proof(self, old: int, size: int) -> tuple[bytes, ...]:
        if old == 0 or old == size:
            return ()
        plan = consistency_plan(old_size=old, new_size=size)
        with self.store.read() as conn:
            nodes = self.store.nodes(conn, plan_nodes(plan))
        return tuple(build_proof(plan, nodes))

    def _accept(self, witness: PolicyWitness, checkpoint: Checkpoint, lines: list[str]) -> WitnessResult:
        v = witness.verifier
        rows: list[cs.StoredCosignature] = []
        for line in lines:
            # tlog-witness: the client MUST ignore cosignatures from unknown keys; one that
            # claims to be this witness's must verify.
            if not line.startswith(f"\u2014 {v.name} "):
                continue
            try:
                timestamp = verify_cosignature(checkpoint, line, v)
            except NoTrustedSignature:
                continue  # the same name, another key ID: not this witness's key
            except LedgerError as exc:
                return WitnessResult(witness.name, "refused", checkpoint.tree_size, f"bad cosignature: {exc.detail}")
            rows.append(cs.StoredCosignature(v.name, v.key_id.hex(), checkpoint.tree_size, timestamp, line))
        if not rows:
            return WitnessResult(witness.name, "refused", checkpoint.tree_size, "the answer holds no cosignature by this witness's key")
        status = "cosigned"
        if not cs.record(self.store, rows[:1]):
            # This key already cosigned this size (the first one is kept): a renewal.
            cs.record_renewal(self.store, rows[0])
            status = "renewed"
        with self._lock:
            self._seen[witness.name] = checkpoint.tree_size
        return WitnessResult(witness.name, status, checkpoint.tree_size)

    # --- background ---------------------------------------------------------------------

    def start_background(self) -> None:
        """Run rounds every ``interval`` seconds in a daemon thread of this process."""
        if self._thread is not None or self.interval <= 0:
            return

        def run() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.round()
                except Exception:  # noqa: BLE001 - keep witnessing; the next round retries
                    log.exception("witnessing round failed")

        self._thread = threading.Thread(target=run, name="filiera-witnessing", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _beyond(theirs: int, size: int) -> str:
    return (
        f"the witness holds size {theirs}, beyond this ledger's {size}: entries it saw are gone "
        "(a ledger restored from an old backup, or another copy of it was witnessed)"
    )


def published_checkpoint(store: Store, policy: WitnessPolicy | None) -> str:
    """The checkpoint note ``GET /v1/checkpoint`` serves.

    Without a policy: the newest block's. With ``quorum none``: the newest block's, with the
    cosignatures its size has. With a quorum: the newest checkpoint whose cosignatures by the
    policy's witnesses meet it, with those cosignatures. Raises NotInitialised (no genesis) or
    CheckpointNotWitnessed (no checkpoint has met the quorum yet).
    """
    with store.read() as conn:
        return _published(store, conn, policy)


def _published(store: Store, conn: cs.Connection, policy: WitnessPolicy | None) -> str:
    head = store.head(conn)
    if head is None:
        raise NotInitialised("the ledger has no genesis block; run `filiera init`")
    if policy is None:
        return head.checkpoint
    names = {(w.verifier.name, w.verifier.key_id.hex()): w.name for w in policy.witnesses}
    if policy.quorum is None:
        lines = [c.line for c in cs.at_size(conn, head.tree_size) if (c.witness, c.key_id) in names]
        return add_signature_lines(head.checkpoint, lines) if lines else head.checkpoint
    below: int | None = None
    while True:
        page = cs.newest_sizes(conn, below=below, limit=_PAGE)
        for size, found in page:
            ours = [c for c in found if (c.witness, c.key_id) in names]
            if policy.satisfied({names[(c.witness, c.key_id)] for c in ours}):
                note = cs.checkpoint_at_size(conn, size)
                if note is not None:
                    return add_signature_lines(note, [c.line for c in ours])
        if len(page) < _PAGE:
            raise CheckpointNotWitnessed(
                "no checkpoint of this ledger has met its witness quorum yet; retry shortly",
                tree_size=head.tree_size,
            )
        below = page[-1][0]
