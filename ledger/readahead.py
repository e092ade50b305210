"""Reading an audit bundle ahead of the replay: entry lines parsed and their signatures checked
by worker processes, handed back in file order (for :mod:`ledger.audit`).

The replay of the log must run in order, in one process; everything about an entry that does
not depend on the state before it can run elsewhere, in parallel: parsing the line, the strict
envelope parse (canonical form, id, leaf hash, field rules) and the Ed25519 checks of
signatures by keys already announced in the bundle. A key id is the hash of its key, so a
worker that knows a key can never accept a signature by another; whether the key was the
signer's and valid at the entry's position stays with the replay, which also checks every
signature a worker could not. Memory stays bounded: a few tasks per worker are read ahead.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
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
from .encoding import unb64
from .entries import Envelope, EntryId, Signature, entry_message, envelope_from_leaf
from .errors import ChainBroken, LedgerError, MalformedBundle, error_for_code
from .keys import KeyId, key_id, unsafe_verify
from .payloads import EntryType
from .verify import StoredBlock, StoredLeaf

__all__ = ["BundleReader"]

_CHUNK = 256  # entry lines per task sent to a worker
_AHEAD_PER_WORKER = 4  # tasks read ahead per worker: keeps each busy, bounds the memory they hold

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


class BundleReader:
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
            while len(tasks) > self._workers * _AHEAD_PER_WORKER:
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
