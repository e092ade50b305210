"""Audit bundles: the NDJSON export of a ledger (PROTOCOL §6 ``GET /v1/export``, extended).

A bundle is UTF-8 NDJSON: one JSON object per line, each with a ``type``. In order:

``bundle``
    once, first: ``format`` (``filiera-bundle/v1``), ``origin``, ``verifier_key`` (the C2SP
    note verifier key), ``public_key`` (base64 ledger key), ``genesis`` (block 0 hash),
    ``from_index`` (the first entry index the bundle holds: 0, or the ``first_index`` of a
    block for a partial export) and ``created``.
``consistency``
    optional, before the first block: ``{"from": m, "to": n, "hashes": [...], "checkpoint":
    note}``, an RFC 9162 consistency proof from the tree size an auditor trusted to the signed
    checkpoint at ``n`` that ends the bundle, so a forked history is caught before any entry
    is read.
``block``
    ``header``, ``hash``, ``signature``, ``checkpoint`` (the block's signed note); followed
    by exactly ``tree_size - first_index`` lines of
``entry``
    ``index``, ``id``, ``leaf_hash``, ``leaf_data`` (the stored canonical JSON, as a string).
``checkpoint``
    once, after the last block: the latest checkpoint (with any witness cosignatures).
``end``
    once, last: ``blocks``, ``entries``, ``tree_size``. A bundle without it was cut short
    in transit (a damaged file, not a damaged ledger); ``filiera export --resume`` continues
    it from its last complete block.

Nothing in a bundle is trusted: :mod:`ledger.audit` re-derives every hash and checks every
signature against a verifier key the auditor brings. This module only frames and parses the
lines, naming the line of the first malformed record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MalformedBundle

__all__ = [
    "FORMAT",
    "MEDIA_TYPE",
    "BundleHeader",
    "BundleBlock",
    "BundleEntry",
    "BundleConsistency",
    "BundleCheckpoint",
    "BundleEnd",
    "Record",
    "header_line",
    "consistency_line",
    "block_line",
    "entry_line",
    "checkpoint_line",
    "end_line",
    "read_record",
    "read_records",
    "last_complete_block",
]

FORMAT = "filiera-bundle/v1"
MEDIA_TYPE = "application/x-ndjson"

# A single line longer than this is refused: entries are bounded far below it at intake
# (PayloadTooLarge), and a bound keeps a hostile bundle from exhausting the auditor's memory.
MAX_LINE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BundleHeader:
    origin: str
    verifier_key: str
    public_key: str
    genesis: str
    from_index: int
    created: str
    line: int = 1


@dataclass(frozen=True, slots=True)
class BundleConsistency:
    from_size: int
    to_size: int
    hashes: tuple[str, ...]
    checkpoint: str
    line: int


@dataclass(frozen=True, slots=True)
class BundleBlock:
    header: Mapping[str, Any]
    hash: str
    signature: str
    checkpoint: str | None
    line: int


@dataclass(frozen=True, slots=True)
class BundleEntry:
    index: int
    id: str
    leaf_hash: str
    leaf_data: bytes
    line: int


@dataclass(frozen=True, slots=True)
class BundleCheckpoint:
    checkpoint: str
    line: int


@dataclass(frozen=True, slots=True)
class BundleEnd:
    blocks: int
    entries: int
    tree_size: int
    line: int


Record = BundleHeader | BundleConsistency | BundleBlock | BundleEntry | BundleCheckpoint | BundleEnd


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def header_line(
    *, origin: str, verifier_key: str, public_key: str, genesis: str, from_index: int, created: str
) -> bytes:
    return _dump(
        {
            "type": "bundle",
            "format": FORMAT,
            "origin": origin,
            "verifier_key": verifier_key,
            "public_key": public_key,
            "genesis": genesis,
            "from_index": from_index,
            "created": created,
        }
    )


def consistency_line(*, from_size: int, to_size: int, hashes: Sequence[str], checkpoint: str) -> bytes:
    return _dump(
        {"type": "consistency", "from": from_size, "to": to_size, "hashes": list(hashes), "checkpoint": checkpoint}
    )


def block_line(*, header: Mapping[str, Any], hash: str, signature: str, checkpoint: str | None) -> bytes:
    return _dump(
        {"type": "block", "header": dict(header), "hash": hash, "signature": signature, "checkpoint": checkpoint}
    )


def entry_line(*, index: int, id: str, leaf_hash: str, leaf_data: str) -> bytes:
    # Hand-framed: this runs once per entry of a million-entry export, and leaf_data is
    # already JSON text that only needs quoting.
    return (
        b'{"type":"entry","index":%d,"id":%s,"leaf_hash":%s,"leaf_data":%s}\n'
        % (
            index,
            json.dumps(id).encode(),
            json.dumps(leaf_hash).encode(),
            json.dumps(leaf_data, ensure_ascii=False).encode("utf-8"),
        )
    )


def checkpoint_line(checkpoint: str) -> bytes:
    return _dump({"type": "checkpoint", "checkpoint": checkpoint})


def end_line(*, blocks: int, entries: int, tree_size: int) -> bytes:
    return _dump({"type": "end", "blocks": blocks, "entries": entries, "tree_size": tree_size})


# --- reading ------------------------------------------------------------------------------


def _bad(line: int, detail: str) -> MalformedBundle:
    return MalformedBundle(f"line {line}: {detail}", line=line)


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], line: int) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(line, f"{obj.get('type')} record needs {name!r} of type {getattr(kind, '__name__', kind)}")
    return value


def _int(obj: Mapping[str, Any], name: str, line: int) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(line, f"{obj.get('type')} record needs {name!r} as a non-negative integer")
    return value


def _record(obj: Any, line: int) -> Record:
    if not isinstance(obj, dict):
        raise _bad(line, "a bundle line is a JSON object")
    kind = obj.get("type")
    if kind == "entry":
        leaf = _field(obj, "leaf_data", str, line)
        try:
            data = leaf.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _bad(line, "leaf_data is not valid Unicode text") from exc
        return BundleEntry(
            index=_int(obj, "index", line),
            id=_field(obj, "id", str, line),
            leaf_hash=_field(obj, "leaf_hash", str, line),
            leaf_data=data,
            line=line,
        )
    if kind == "block":
        checkpoint = obj.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise _bad(line, "block record's 'checkpoint' must be a string or null")
        return BundleBlock(
            header=_field(obj, "header", dict, line),
            hash=_field(obj, "hash", str, line),
            signature=_field(obj, "signature", str, line),
            checkpoint=checkpoint,
            line=line,
        )
    if kind == "bundle":
        if obj.get("format") != FORMAT:
            raise _bad(line, f"not a {FORMAT} bundle (format {obj.get('format')!r})")
        return BundleHeader(
            origin=_field(obj, "origin", str, line),
            verifier_key=_field(obj, "verifier_key", str, line),
            public_key=_field(obj, "public_key", str, line),
            genesis=_field(obj, "genesis", str, line),
            from_index=_int(obj, "from_index", line),
            created=_field(obj, "created", str, line),
            line=line,
        )
    if kind == "consistency":
        hashes = _field(obj, "hashes", list, line)
        if not all(isinstance(h, str) for h in hashes):
            raise _bad(line, "consistency hashes must be hex strings")
        return BundleConsistency(
            from_size=_int(obj, "from", line),
            to_size=_int(obj, "to", line),
            hashes=tuple(hashes),
            checkpoint=_field(obj, "checkpoint", str, line),
            line=line,
        )
    if kind == "checkpoint":
        return BundleCheckpoint(checkpoint=_field(obj, "checkpoint", str, line), line=line)
    if kind == "end":
        return BundleEnd(
            blocks=_int(obj, "blocks", line),
            entries=_int(obj, "entries", line),
            tree_size=_int(obj, "tree_size", line),
            line=line,
        )
    raise _bad(line, f"unknown record type {kind!r}")


def read_record(raw: bytes, line: int) -> Record:
    """Parse one line of a bundle. Raises MalformedBundle naming the line."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad(line, f"not JSON ({exc.__class__.__name__})") from exc
    return _record(obj, line)


def read_records(lines: Iterable[bytes]) -> Iterator[Record]:
    """Parse a bundle line by line, lazily (bounded memory whatever its size).

    Checks framing only: the first record is the ``bundle`` header, and nothing follows
    ``end``. Whether blocks and entries are complete and correct is the audit's job.
    Raises MalformedBundle naming the line.
    """
    n = 0
    seen_end = False
    for n, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE:
            raise _bad(n, f"line longer than {MAX_LINE} bytes")
        if seen_end:
            if raw.strip():
                raise _bad(n, "data after the end record")
            continue
        record = read_record(raw, n)
        if n == 1 and not isinstance(record, BundleHeader):
            raise _bad(1, "a bundle starts with its 'bundle' header record")
        if n > 1 and isinstance(record, BundleHeader):
            raise _bad(n, "a second 'bundle' header")
        seen_end = isinstance(record, BundleEnd)
        yield record
    if n == 0:
        raise _bad(1, "the bundle is empty")


def last_complete_block(lines: Iterable[bytes]) -> tuple[int, int, int] | None:
    """For ``export --resume``: (byte offset just past the last complete block, its height,
    its tree size), or None if no block is complete. Reads the file once, keeping nothing."""
    offset = 0
    best: tuple[int, int, int] | None = None
    pending: tuple[int, int] | None = None  # (height, tree_size) of the block being read
    remaining = 0
    for raw in lines:
        offset += len(raw)
        if not raw.endswith(b"\n"):
            break  # a line cut short in transit
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            break
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "block":
            header = obj.get("header") or {}
            try:
                pending = (int(header["height"]), int(header["tree_size"]))
                remaining = int(header["tree_size"]) - int(header["first_index"])
            except (KeyError, TypeError, ValueError):
                break
        elif kind == "entry" and pending is not None:
            remaining -= 1
        else:
            if kind in ("checkpoint", "end"):
                break
            continue
        if pending is not None and remaining == 0:
            best = (offset, pending[0], pending[1])
            pending = None
    return best
