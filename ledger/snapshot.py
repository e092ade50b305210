"""State snapshots: where an audit ended, saved so that the next audit checks only what is new.

A snapshot is the :class:`~ledger.verify.ChainCursor` after a clean audit, as NDJSON (written
and read line by line, so a million-entry state never sits in memory at once): a header line
with the cursor (origin, ledger key, policy, next height, the last block's hash and time, the
Merkle frontier), then the replayed records (participants, keys, lots, handoffs, contracts,
payments, attestations), the used nonces and entry ids, and an ``end`` line with the counts.
Its SHA-256 goes into the audit report; the auditor keeps the report, so a snapshot swapped on
disk is caught by ``--state-sha256``. Its frontier is checked against the trusted checkpoint
before use, which binds it to the log it came from.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable
from typing import IO, Any

from .encoding import format_time, parse_time
from .errors import InvalidSnapshot
from .merkle import Frontier
from .spill import SpillSource
from .state import KINDS, LedgerState, Policy
from .verify import ChainCursor

__all__ = ["SNAPSHOT_FORMAT", "dump_snapshot", "load_snapshot"]

SNAPSHOT_FORMAT = "filiera-state/v2"
_BATCH = 1000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _encode_record(rec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(rec):
        value = getattr(rec, f.name)
        if isinstance(value, bytes):
            value = _b64(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _decode_record(cls: type, obj: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = obj[f.name]
        kind = str(f.type)
        if kind == "bytes":
            value = _unb64(value)
        elif kind.startswith("tuple"):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


class _Hashing:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()

    def line(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        self.sha.update(data)
        self.out.write(data)


def _batches(items: Iterable[Any]) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def dump_snapshot(cursor: ChainCursor, spill: SpillSource, out: IO[bytes]) -> str:
    """Write the snapshot of ``cursor`` (whose state spills to ``spill``) to ``out``; return
    its SHA-256 (hex). Moves everything the state holds in memory into ``spill`` first."""
    state = cursor.state
    policy = state.get_policy()
    if policy is None or cursor.key is None or cursor.prev_time is None:
        raise InvalidSnapshot("nothing to snapshot: the chain has no genesis")
    spill.absorb(state)
    w = _Hashing(out)
    w.line({
        "format": SNAPSHOT_FORMAT,
        "origin": cursor.origin,
        "ledger_key": _b64(cursor.key),
        "height": cursor.height,
        "entries": cursor.entries,
        "prev_hash": cursor.prev_hash,
        "prev_time": format_time(cursor.prev_time),
        "tree_size": cursor.frontier.size,
        "frontier": [h.hex() for h in cursor.frontier.hashes()],
        "policy": {"origin": policy.origin, "ledger_key": _b64(policy.ledger_key), "admin_quorum": policy.admin_quorum},
    })
    counts = {"records": 0, "nonces": 0, "entry_ids": 0}
    for kind in KINDS:
        for batch in _batches(spill.records(kind)):
            w.line({"kind": kind, "records": [_encode_record(r) for r in batch]})
            counts["records"] += len(batch)
    for nonce_batch in _batches(spill.nonces()):
        w.line({"nonces": [[_b64(d), e] for d, e in nonce_batch]})
        counts["nonces"] += len(nonce_batch)
    for entry_batch in _batches(spill.entry_digests()):
        w.line({"entry_ids": _b64(b"".join(entry_batch))})
        counts["entry_ids"] += len(entry_batch)
    w.line({"end": counts})
    return w.sha.hexdigest()


def load_snapshot(lines: Iterable[bytes], spill: SpillSource) -> tuple[ChainCursor, str]:
    """Rebuild a cursor from :func:`dump_snapshot` output, its records into ``spill``; return
    it with the snapshot's SHA-256. Raises InvalidSnapshot."""
    sha = hashlib.sha256()
    try:
        it = iter(lines)
        first = next(it, b"")
        sha.update(first)
        head = json.loads(first)
        if not isinstance(head, dict) or head.get("format") != SNAPSHOT_FORMAT:
            raise InvalidSnapshot(f"not a {SNAPSHOT_FORMAT} state snapshot")
        p = head["policy"]
        policy = Policy(origin=p["origin"], ledger_key=_unb64(p["ledger_key"]), admin_quorum=int(p["admin_quorum"]))
        spill.policy = policy
        counts = {"records": 0, "nonces": 0, "entry_ids": 0}
        end: dict[str, int] | None = None
        for raw in it:
            sha.update(raw)
            if end is not None:
                raise InvalidSnapshot("data after the end of the state snapshot")
            obj = json.loads(raw)
            if "kind" in obj:
                cls = KINDS[obj["kind"]]
                spill.put_records(obj["kind"], [_decode_record(cls, r) for r in obj["records"]])
                counts["records"] += len(obj["records"])
            elif "nonces" in obj:
                spill.put_nonces([(_unb64(d), str(e)) for d, e in obj["nonces"]])
                counts["nonces"] += len(obj["nonces"])
            elif "entry_ids" in obj:
                blob = _unb64(obj["entry_ids"])
                if len(blob) % 16:
                    raise InvalidSnapshot("entry id digests are 16 bytes each")
                spill.put_entries([blob[i : i + 16] for i in range(0, len(blob), 16)])
                counts["entry_ids"] += len(blob) // 16
            elif "end" in obj:
                end = obj["end"]
            else:
                raise InvalidSnapshot("an unknown line in the state snapshot")
        if end != counts:
            raise InvalidSnapshot("the state snapshot is cut short or its counts do not add up")
        state = LedgerState(source=spill)
        state.put_policy(policy)
        for kind in ("participant", "key"):
            for rec in spill.records(kind):
                state.restore(kind, rec)
        frontier = Frontier(int(head["tree_size"]), [bytes.fromhex(h) for h in head["frontier"]])
        cursor = ChainCursor(
            state=state,
            frontier=frontier,
            prev_hash=str(head["prev_hash"]),
            prev_time=parse_time(head["prev_time"], field="prev_time"),
            origin=str(head["origin"]),
            key=_unb64(head["ledger_key"]),
            height=int(head["height"]),
            entries=int(head["entries"]),
        )
    except InvalidSnapshot:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidSnapshot(f"the state snapshot is damaged ({exc.__class__.__name__}: {exc})") from exc
    return cursor, sha.hexdigest()
