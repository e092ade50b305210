"""The offline audit: check an exported bundle (:mod:`ledger.bundle`) with no server and no
database, trusting only the ledger's verifier key the auditor brings.

Everything :func:`ledger.verify.verify_chain` checks is checked here, by the same code: every
entry's canonical form, id and leaf hash, every signature strictly (libsodium), the signer's
key valid at the entry's position and its authority replayed from the governance entries
(roles, revocations, quorum), every supply-chain rule by replaying the state, every ``prev``
link, block hash, block signature, Merkle root and checkpoint. The Ed25519 work, most of the
cost, is spread over worker processes while the main process replays the log in order; the
first failure found anywhere is the one reported, whichever process found it.

Memory stays bounded by the replayed state and one block: the bundle is read line by line.

Incremental audits: with a trusted checkpoint (saved from an earlier audit) the bundle's
consistency record is checked first, so a forked or rewritten history fails before any entry
is read; entries the trusted checkpoint already pins skip only the Ed25519 work. With a state
snapshot from that earlier audit, a partial bundle holding only the new blocks is enough.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from .bundle import (
    MAX_LINE,
    BundleBlock,
    BundleCheckpoint,
    BundleConsistency,
    BundleEnd,
    BundleEntry,
    BundleHeader,
    Record,
    read_record,
)
from .encoding import b64, unb64
from .entries import Envelope, EntryId, Signature, entry_message, envelope_from_leaf
from .errors import ChainBroken, InvalidSnapshot, LedgerError, MalformedBundle, error_for_code
from .keys import KeyId, key_id, unsafe_verify
from .merkle import verify_consistency
from .notes import Checkpoint, NoteVerifier, verify_checkpoint
from .payloads import EntryType
from .snapshot import dump_snapshot, load_snapshot
from .verify import ChainCursor, StoredBlock, StoredLeaf, VerifyReport, verify_chain

__all__ = ["AuditFailure", "AuditReport", "audit_bundle", "AUDIT_REASONS"]

# Reasons an audit adds to those of ledger.verify.REASONS: the bundle itself is unusable.
AUDIT_REASONS = frozenset({"bundle", "incomplete_bundle", "consistency"})

_CHUNK = 256  # entry lines per task sent to a worker
_AHEAD = 64  # tasks read ahead of the replay: bounds memory, keeps every worker busy

_ENTRY_PREFIX = b'{"type":"entry",'

# What a worker sends back per entry line: (line, index, id, leaf hash, leaf data, origin used,
# packed envelope or (error code, detail), verified key pairs) or (line, error detail) for a
# line that is not an entry record at all.
_Parsed = tuple[Any, ...]


def _pack(env: Envelope, leaf: bytes) -> tuple[Any, ...]:
    return (
        env.payload, env.type.value, [(s.signer, s.key_id, s.sig) for s in env.signatures],
        env.id_raw, None if env.leaf_data == leaf else env.leaf_data, env.leaf_hash,
    )


def _unpack(packed: tuple[Any, ...], leaf: bytes) -> Envelope:
    payload, type_value, sigs, id_raw, leaf_data, leaf_hash = packed
    return Envelope(
        payload=payload,
        signatures=tuple(Signature(signer=a, key_id=KeyId(b), sig=c) for a, b, c in sigs),
        type=EntryType(type_value),
        id=EntryId(id_raw.hex()),
        id_raw=id_raw,
        leaf_data=leaf if leaf_data is None else leaf_data,
        leaf_hash=leaf_hash,
    )


def _announced_keys(entry_type: str, payload: Any) -> dict[str, bytes]:
    """Every public key an entry carries (genesis, admins, a new participant, key.add), by key
    id. A key id is the hash of its key, so knowing one can never make a worker accept a
    signature by the wrong key; whether the key was the signer's, and valid, is the replay's."""
    found: list[Any] = []
    try:
        if entry_type == EntryType.GENESIS:
            found.append(payload.get("ledger_key"))
            for admin in payload.get("admins") or ():
                found.extend(k.get("public_key") for k in admin.get("keys") or ())
        elif entry_type == EntryType.PARTICIPANT_REGISTER:
            found.extend(k.get("public_key") for k in payload["participant"].get("keys") or ())
        elif entry_type == EntryType.KEY_ADD:
            found.append(payload.get("public_key"))
    except (AttributeError, KeyError, TypeError):
        pass  # a malformed entry: the replay refuses it
    keys: dict[str, bytes] = {}
    for text in found:
        try:
            raw = unb64(text, field="public_key", length=32)
        except (LedgerError, TypeError):
            continue
        keys[key_id(raw)] = raw
    return keys


_ANNOUNCING = (b"ledger.genesis", b"participant.register", b"key.add")


def _keys_in_line(raw: bytes) -> dict[str, bytes]:
    """Keys announced by the entry on a bundle line (read ahead of the workers, so that they
    can check signatures by keys registered earlier in the bundle)."""
    try:
        record = json.loads(raw)
        leaf = json.loads(record["leaf_data"])
        return _announced_keys(leaf["payload"]["type"], leaf["payload"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _parse_chunk(origin: str, keys: dict[str, bytes], items: list[tuple[int, bytes]]) -> list[_Parsed]:
    """Worker side: parse each entry line, its envelope (strictly, as verify_chain would) and
    check the signatures of keys it knows, learning keys that entries introduce on the way.
    Authorisation (whose key, valid when) stays with the replay in the main process."""
    known = dict(keys)
    out: list[_Parsed] = []
    for line, raw in items:
        try:
            record = read_record(raw, line)
        except LedgerError as exc:
            out.append((line, exc.detail))
            continue
        if not isinstance(record, BundleEntry):
            out.append((line, "not an entry record"))
            continue
        used = None if record.index == 0 else origin
        verified: list[tuple[str, bytes]] = []
        try:
            env = envelope_from_leaf(record.leaf_data, origin=used)
        except LedgerError as exc:
            out.append((line, record.index, record.id, record.leaf_hash, record.leaf_data, used, (exc.code, exc.detail), None))
            continue
        known.update(_announced_keys(env.type, env.payload))
        message = entry_message(env.id_raw)
        for sig in env.signatures:
            key = known.get(sig.key_id)
            if key is None:
                continue
            try:
                unsafe_verify(key, message, sig.sig)
            except LedgerError:
                continue  # the replay checks it again and names the failure in its place
            verified.append((sig.key_id, key))
        out.append((line, record.index, record.id, record.leaf_hash, record.leaf_data, used, _pack(env, record.leaf_data), verified))
    return out


@dataclass(frozen=True, slots=True)
class AuditFailure:
    reason: str
    detail: str
    code: str  # chain_broken, or the code of a damaged bundle
    cause: str | None = None  # the rule's or signature's own code, as `filiera verify --json`
    height: int | None = None
    index: int | None = None
    entry: str | None = None
    line: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.facts.items() if k not in ("reason", "height", "index", "entry", "line", "cause")}
        out.update(
            reason=self.reason, code=self.code, cause=self.cause, detail=self.detail,
            height=self.height, index=self.index, entry=self.entry, line=self.line,
        )
        return out


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    origin: str
    verifier_key: str
    bundle_from: int | None  # first entry index the bundle holds
    blocks: int  # blocks checked in this run
    entries: int  # entries checked in this run
    signatures: int  # Ed25519 signatures checked in this run
    tree_size: int | None
    root: str | None
    checkpoint: str | None  # the bundle's last checkpoint, verified (the next trusted one)
    trusted_size: int | None
    consistency_checked: bool
    state_in: str | None  # SHA-256 of the snapshot resumed from
    state_out: str | None  # SHA-256 of the snapshot saved
    workers: int
    seconds: float
    failure: AuditFailure | None = None

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "bundle_from": self.bundle_from,
            "blocks": self.blocks,
            "entries": self.entries,
            "signatures": self.signatures,
            "tree_size": self.tree_size,
            "root": self.root,
            "checkpoint": self.checkpoint,
            "trusted_size": self.trusted_size,
            "consistency_checked": self.consistency_checked,
            "state_in_sha256": self.state_in,
            "state_out_sha256": self.state_out,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "entries_per_s": round(self.entries_per_s, 1),
        }
        out["failure"] = self.failure.to_json() if self.failure else None
        return out

    def to_text(self) -> str:
        lines = [f"audit of {self.origin or 'an unknown ledger'} (verifier key {self.verifier_key})"]
        if self.state_in:
            lines.append(f"  resumed from state snapshot sha256 {self.state_in}")
        if self.trusted_size is not None:
            lines.append(
                f"  trusted checkpoint at tree size {self.trusted_size}"
                + ("; consistency proof to the new checkpoint verified" if self.consistency_checked else "")
            )
        lines.append(
            f"  checked {self.blocks:,} blocks, {self.entries:,} entries, {self.signatures:,} signatures"
            f" in {self.seconds:.1f} s ({self.entries_per_s:,.0f} entries/s, {self.workers} worker processes)"
        )
        if self.failure is None:
            lines.append(f"  tree size {self.tree_size:,}, root {self.root}")
            if self.state_out:
                lines.append(f"  state snapshot saved, sha256 {self.state_out}")
            lines.append("RESULT: OK: every signature, authorisation, rule, hash, link, root and checkpoint holds")
        else:
            f = self.failure
            where = ", ".join(
                part for part in (
                    f"block {f.height}" if f.height is not None else "",
                    f"entry {f.index}" if f.index is not None else "",
                    f"id {f.entry}" if f.entry else "",
                    f"bundle line {f.line}" if f.line is not None else "",
                ) if part
            )
            lines.append(f"  first failure: {f.reason}" + (f" at {where}" if where else ""))
            lines.append(f"  {f.detail}")
            lines.append("RESULT: FAILED")
        return "\n".join(lines) + "\n"


class _Bundle:
    """The bundle regrouped into blocks for verify_chain, its entry lines parsed and their
    signatures checked ahead by worker processes, in file order, with the framing checked."""

    def __init__(self, lines: Iterable[bytes], *, workers: int, keys: Callable[[], dict[str, bytes]]) -> None:
        self._lines = enumerate(lines, start=1)
        self._keys = keys
        self._announced: dict[str, bytes] = {}
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        _, raw = next(self._lines, (1, b""))
        first = read_record(raw, 1) if raw else None
        if not isinstance(first, BundleHeader):
            raise MalformedBundle("line 1: a bundle starts with its 'bundle' header record", line=1)
        self.header = first
        self.consistency: BundleConsistency | None = None
        self.checkpoint: BundleCheckpoint | None = None
        self.end: BundleEnd | None = None
        self.blocks = 0
        self.entries = 0
        # A consistency record comes second: read it now, so that a fork fails before any
        # entry is read.
        self._peeked = next(self._lines, None)
        if self._peeked is not None and not self._peeked[1].startswith(_ENTRY_PREFIX):
            record = read_record(self._peeked[1], self._peeked[0])
            if isinstance(record, BundleConsistency):
                self.consistency = record
                self._peeked = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, items: list[tuple[int, bytes]]) -> Future[list[_Parsed]] | list[_Parsed]:
        if self._workers == 0:
            return _parse_chunk(self.header.origin, {**self._keys(), **self._announced}, items)
        if self._pool is None:
            # fork starts workers at once and re-imports nothing, but forking a process that
            # runs other threads can copy a lock some thread holds: then the forkserver.
            method = "fork" if threading.active_count() == 1 else "forkserver"
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=get_context(method))
        return self._pool.submit(_parse_chunk, self.header.origin, {**self._keys(), **self._announced}, items)

    def _items(self) -> Iterator[Record | _Parsed]:
        """Records in file order; entry lines come back parsed by the workers."""
        order: deque[Record | None] = deque()  # None: the next parsed entry
        tasks: deque[Future[list[_Parsed]] | list[_Parsed]] = deque()
        done: deque[_Parsed] = deque()
        batch: list[tuple[int, bytes]] = []
        ended = False

        def pop() -> Record | _Parsed:
            item = order.popleft()
            if item is not None:
                return item
            if not done:
                task = tasks.popleft()
                done.extend(task.result() if isinstance(task, Future) else task)
            return done.popleft()

        for line, raw in itertools.chain([self._peeked] if self._peeked else [], self._lines):
            if len(raw) > MAX_LINE:
                raise MalformedBundle(f"line {line}: longer than {MAX_LINE} bytes", line=line)
            if ended:
                if raw.strip():
                    raise MalformedBundle(f"line {line}: data after the end record", line=line)
                continue
            if raw.startswith(_ENTRY_PREFIX):
                if any(word in raw for word in _ANNOUNCING):
                    self._announced.update(_keys_in_line(raw))
                batch.append((line, raw))
                order.append(None)
                if len(batch) >= _CHUNK:
                    tasks.append(self._submit(batch))
                    batch = []
            else:
                record = read_record(raw, line)
                if isinstance(record, BundleEntry):  # an entry written with its keys in another order
                    batch.append((line, raw))
                    order.append(None)
                    continue
                if isinstance(record, BundleHeader):
                    raise MalformedBundle(f"line {line}: a second 'bundle' header", line=line)
                ended = isinstance(record, BundleEnd)
                if batch:
                    tasks.append(self._submit(batch))
                    batch = []
                order.append(record)
            while len(tasks) > _AHEAD:
                yield pop()
        if batch:
            tasks.append(self._submit(batch))
        while order:
            yield pop()

    def blocks_iter(self) -> Iterator[StoredBlock]:
        items = self._items()
        item = next(items, None)
        while item is not None:
            if isinstance(item, BundleBlock):
                block = item
                try:
                    count = int(block.header["tree_size"]) - int(block.header["first_index"])
                except (KeyError, TypeError, ValueError):
                    count = 0  # verify_chain names the malformed header
                leaves: list[StoredLeaf] = []
                item = next(items, None)
                while isinstance(item, tuple) and len(leaves) < count:
                    leaves.append(self._leaf(item))
                    item = next(items, None)
                self.blocks += 1
                self.entries += len(leaves)
                yield StoredBlock(
                    header=dict(block.header), hash=block.hash, signature=block.signature,
                    checkpoint=block.checkpoint, leaves=leaves,
                )
                continue
            if isinstance(item, tuple):
                line = item[0]
                raise ChainBroken(
                    f"bundle line {line}: an entry outside every block (or the block before it "
                    "claims fewer entries)",
                    reason="bundle", line=line, height=None,
                )
            if isinstance(item, BundleCheckpoint):
                self.checkpoint = item
            elif isinstance(item, BundleEnd):
                self.end = item
            else:
                raise ChainBroken(
                    f"bundle line {item.line}: a {type(item).__name__} record out of place",
                    reason="bundle", line=item.line, height=None,
                )
            item = next(items, None)

    @staticmethod
    def _leaf(parsed: _Parsed) -> StoredLeaf:
        if len(parsed) == 2:
            line, detail = parsed
            raise MalformedBundle(f"line {line}: {detail}", line=line)
        line, index, entry_id, leaf_hash, leaf_data, used, result, verified = parsed
        env: Envelope | LedgerError
        if verified is None:
            env = error_for_code(result[0], result[1])
        else:
            env = _unpack(result, leaf_data)
        return StoredLeaf(
            index, entry_id, leaf_hash, leaf_data,
            parsed=(used, env),
            verified=frozenset(verified) if verified is not None else None,
        )


def _trusted_checkpoint(note: str, verifier: NoteVerifier) -> Checkpoint:
    try:
        return verify_checkpoint(note, verifier=verifier, origin=verifier.name)
    except LedgerError as exc:
        raise InvalidSnapshot(
            f"the trusted checkpoint is not a checkpoint of {verifier.name} signed by the "
            f"verifier key ({exc.code})"
        ) from exc


def audit_bundle(
    lines: Iterable[bytes],
    *,
    verifier: NoteVerifier,
    trusted_checkpoint: str | None = None,
    state: bytes | None = None,
    save_state: Callable[[bytes], None] | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    recheck_signatures: bool = False,
) -> AuditReport:
    """Audit a bundle read from ``lines``. Never trusts the bundle; trusts ``verifier``.

    ``trusted_checkpoint``: a signed checkpoint from an earlier audit; the bundle must extend
    it. ``state``: a snapshot saved by that audit (required for a bundle that does not start
    at entry 0). ``save_state`` receives the new snapshot after a clean audit. ``workers``:
    processes for the Ed25519 work (default: every core; 0 checks in this process).
    ``recheck_signatures``: check signatures below the trusted size too.
    Returns a report whose ``failure`` names the first failure; raises only for unusable
    inputs of the auditor's own (InvalidSnapshot, MalformedNote).
    """
    started = time.perf_counter()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    trusted = _trusted_checkpoint(trusted_checkpoint, verifier) if trusted_checkpoint else None
    cursor: ChainCursor | None = None
    state_in = None
    if state is not None:
        state_in = hashlib.sha256(state).hexdigest()
        cursor = load_snapshot(state)
        if cursor.origin != verifier.name or cursor.key != verifier.public_key:
            raise InvalidSnapshot("the state snapshot belongs to another ledger or ledger key")
        if trusted is not None and (
            cursor.frontier.size != trusted.tree_size or cursor.frontier.root() != trusted.root
        ):
            raise InvalidSnapshot(
                f"the state snapshot ends at tree size {cursor.frontier.size}, not at the trusted "
                f"checkpoint ({trusted.tree_size}) with its root"
            )
    if cursor is None:
        cursor = ChainCursor.start()
    state_keys = cursor.state.records("key")

    def keys() -> dict[str, bytes]:
        return {kid: rec.public_key for kid, rec in state_keys.items() if rec is not None}

    bundle: _Bundle | None = None
    report: VerifyReport | None = None
    consistency_checked = False

    def result(failure: AuditFailure | None, state_out: str | None = None) -> AuditReport:
        return AuditReport(
            ok=failure is None,
            origin=verifier.name,
            verifier_key=verifier.vkey,
            bundle_from=bundle.header.from_index if bundle else None,
            blocks=bundle.blocks if bundle else 0,
            entries=bundle.entries if bundle else 0,
            signatures=report.signatures_checked if report else 0,
            tree_size=report.tree_size if report else None,
            root=report.root if report else None,
            checkpoint=bundle.checkpoint.checkpoint if bundle and bundle.checkpoint and failure is None else None,
            trusted_size=trusted.tree_size if trusted else None,
            consistency_checked=consistency_checked,
            state_in=state_in,
            state_out=state_out,
            workers=n_workers,
            seconds=time.perf_counter() - started,
            failure=failure,
        )

    def fail(reason: str, detail: str, code: str = "chain_broken", **facts: Any) -> AuditReport:
        return result(AuditFailure(reason=reason, detail=detail, code=code, **facts))

    try:
        try:
            bundle = _Bundle(lines, workers=n_workers, keys=keys)
        except LedgerError as exc:
            return fail("bundle", exc.detail, code=exc.code, line=exc.facts.get("line"))
        header = bundle.header
        if header.origin != verifier.name:
            return fail("origin", f"the bundle is of ledger {header.origin!r}, the verifier key is for {verifier.name!r}", line=1)
        if header.public_key != b64(verifier.public_key):
            return fail("ledger_key", "the bundle names another ledger key than the verifier key", line=1)
        start_index = cursor.frontier.size
        if header.from_index != start_index:
            if state is None:
                raise InvalidSnapshot(
                    f"the bundle starts at entry {header.from_index}: a partial bundle needs the "
                    "state snapshot (--state) of the audit that ended there"
                )
            raise InvalidSnapshot(
                f"the bundle starts at entry {header.from_index} but the state snapshot ends at {start_index}"
            )
        if trusted is not None and bundle.consistency is not None:
            c = bundle.consistency
            try:
                new = verify_checkpoint(c.checkpoint, verifier=verifier, origin=verifier.name)
                if c.from_size != trusted.tree_size or c.to_size != new.tree_size:
                    raise ChainBroken("the consistency record is not from the trusted size to its checkpoint", reason="consistency")
                verify_consistency(
                    old_size=c.from_size, new_size=c.to_size,
                    proof=[bytes.fromhex(h) for h in c.hashes],
                    old_root=trusted.root, new_root=new.root,
                )
            except (LedgerError, ValueError) as exc:
                code = exc.code if isinstance(exc, LedgerError) else "invalid_proof"
                return fail(
                    "fork" if code == "invalid_proof" else "consistency",
                    f"the bundle's history is not an extension of the trusted checkpoint (size "
                    f"{trusted.tree_size}): its consistency proof fails ({code}); the ledger forked or was rewritten",
                    code=code, line=c.line,
                )
            consistency_checked = True
        try:
            report = verify_chain(
                bundle.blocks_iter(),
                ledger_key=verifier.public_key,
                trusted_checkpoint=trusted_checkpoint if state is None else None,
                resume=cursor,
                trust_below=0 if recheck_signatures or trusted is None else trusted.tree_size,
                progress=progress,
            )
        except ChainBroken as exc:
            f = exc.facts
            return fail(
                str(f.get("reason", "chain")), exc.detail, code=exc.code, cause=f.get("cause"),
                height=f.get("height"), index=f.get("index"), entry=f.get("entry"), line=f.get("line"),
                facts=dict(f),
            )
        except LedgerError as exc:
            return fail("bundle", exc.detail, code=exc.code, line=exc.facts.get("line"))
        if trusted is not None and report.tree_size < trusted.tree_size:
            return fail("truncated", f"the bundle ends at tree size {report.tree_size}, before the trusted checkpoint's {trusted.tree_size}")
        if bundle.checkpoint is None or bundle.end is None:
            return fail(
                "incomplete_bundle",
                "the bundle has no final checkpoint and end record: it was cut short in transit; "
                "continue the download with `filiera export --resume`",
            )
        try:
            last = verify_checkpoint(bundle.checkpoint.checkpoint, verifier=verifier, origin=verifier.name)
        except LedgerError as exc:
            return fail("checkpoint", f"the bundle's final checkpoint does not verify ({exc.code})", code=exc.code, line=bundle.checkpoint.line)
        if last.tree_size != report.tree_size or last.root.hex() != report.root:
            return fail("checkpoint", "the bundle's final checkpoint is not the last block's", line=bundle.checkpoint.line)
        end = bundle.end
        if (end.blocks, end.entries, end.tree_size) != (bundle.blocks, bundle.entries, report.tree_size):
            return fail(
                "bundle",
                f"the end record counts {end.blocks} blocks and {end.entries} entries to size "
                f"{end.tree_size}; the bundle holds {bundle.blocks}, {bundle.entries}, {report.tree_size}",
                line=end.line,
            )
        state_out = None
        if save_state is not None and report.cursor is not None:
            snapshot = dump_snapshot(report.cursor)
            save_state(snapshot)
            state_out = hashlib.sha256(snapshot).hexdigest()
        return result(None, state_out)
    finally:
        if bundle is not None:
            bundle.close()
