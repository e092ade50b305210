"""State snapshots: where an audit ended, saved so that the next audit checks only what is new.

A snapshot is the :class:`~ledger.verify.ChainCursor` after a clean audit, as canonical JSON:
the replayed ledger state (participants, keys, lots, handoffs, contracts, payments,
attestations, used nonces and entry ids), the Merkle frontier, and the last block's hash and
time. Its SHA-256 goes into the audit report; the auditor keeps the report, so a snapshot
swapped on disk is caught by ``--state-sha256``. Its frontier is checked against the trusted
checkpoint before use, which binds the snapshot to the log it came from.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

from .encoding import format_time, parse_time
from .errors import InvalidSnapshot
from .merkle import Frontier
from .state import KINDS, LedgerState, Policy
from .verify import ChainCursor

__all__ = ["SNAPSHOT_FORMAT", "dump_snapshot", "load_snapshot"]

SNAPSHOT_FORMAT = "filiera-state/v1"


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


def dump_snapshot(cursor: ChainCursor) -> bytes:
    """The snapshot of ``cursor`` as canonical-enough JSON bytes (sorted keys, no spaces)."""
    state = cursor.state
    policy = state.get_policy()
    if policy is None or cursor.key is None or cursor.prev_time is None:
        raise InvalidSnapshot("nothing to snapshot: the chain has no genesis")
    records = {kind: [_encode_record(r) for _, r in sorted(state.records(kind).items()) if r is not None] for kind in KINDS}
    nonces, nonce_entries = state.used_nonces()
    doc = {
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
        "records": records,
        "nonces": _b64(nonces),
        "nonce_entries": nonce_entries,
        "entry_ids": _b64(state.used_entries()),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def load_snapshot(data: bytes) -> ChainCursor:
    """Rebuild a cursor from :func:`dump_snapshot` output. Raises InvalidSnapshot."""
    try:
        doc = json.loads(data)
        if doc.get("format") != SNAPSHOT_FORMAT:
            raise InvalidSnapshot(f"not a {SNAPSHOT_FORMAT} state snapshot")
        p = doc["policy"]
        state = LedgerState()
        state.put_policy(Policy(origin=p["origin"], ledger_key=_unb64(p["ledger_key"]), admin_quorum=int(p["admin_quorum"])))
        for kind, cls in KINDS.items():
            for obj in doc["records"][kind]:
                state.restore(kind, _decode_record(cls, obj))
        state.restore_used(_unb64(doc["nonces"]), doc["nonce_entries"], _unb64(doc["entry_ids"]))
        size = int(doc["tree_size"])
        frontier = Frontier(size, [bytes.fromhex(h) for h in doc["frontier"]])
        return ChainCursor(
            state=state,
            frontier=frontier,
            prev_hash=str(doc["prev_hash"]),
            prev_time=parse_time(doc["prev_time"], field="prev_time"),
            origin=str(doc["origin"]),
            key=_unb64(doc["ledger_key"]),
            height=int(doc["height"]),
            entries=int(doc["entries"]),
        )
    except InvalidSnapshot:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidSnapshot(f"the state snapshot is damaged ({exc.__class__.__name__}: {exc})") from exc


def snapshot_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
