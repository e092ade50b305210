"""The file side of ``filiera export``: writing a bundle to ``FILE.partial`` as it arrives, and
finding what a cut-short ``.partial`` already holds so that ``--resume`` can continue it.

A bundle (:mod:`ledger.bundle`) is written line by line, counting blocks and entries as they
go, so that the ``end`` record written last gives the totals of the whole file even when it
was written in several attempts. The file is renamed to ``FILE`` only once its ``end`` record
is written, so a ``FILE`` that exists is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ledger.bundle import (
    MAX_LINE,
    BundleBlock,
    BundleCheckpoint,
    BundleConsistency,
    BundleEnd,
    BundleEntry,
    BundleHeader,
    end_line,
    last_complete_block,
    read_records,
)
from ledger.errors import ConfigurationError, MalformedBundle, OriginMismatch, Unavailable

__all__ = ["Kept", "Written", "partial_path", "read_partial", "read_complete", "write_bundle", "finish"]


@dataclass(frozen=True, slots=True)
class Kept:
    """What a ``.partial`` file holds up to its last complete block (``offset`` bytes)."""

    header: BundleHeader
    offset: int
    consistency: BundleConsistency | None
    blocks: int
    entries: int
    last_block: BundleBlock | None  # the last complete block, if any
    tree_size: int  # the file holds the entries below this index (from header.from_index)

    @property
    def refetch_from(self) -> int:
        """Where to download from: the last complete block again (to check that the server
        still has that very block, and so that a file missing only its last two records still
        has something to fetch), or the header's first index when no block is complete."""
        return int(self.last_block.header["first_index"]) if self.last_block else self.header.from_index


@dataclass(frozen=True, slots=True)
class Written:
    """A finished bundle file: what its ``end`` record says, and its header."""

    header: BundleHeader
    consistency: BundleConsistency | None
    blocks: int
    entries: int
    tree_size: int
    bytes: int


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _lines(f: IO[bytes], limit: int | None = None) -> Iterator[bytes]:
    """The file's lines, each read with a bound (a damaged file cannot exhaust memory), up to
    ``limit`` bytes."""
    read = 0
    while limit is None or read < limit:
        raw = f.readline(MAX_LINE + 1 if limit is None else min(MAX_LINE + 1, limit - read))
        if not raw:
            return
        read += len(raw)
        yield raw


def _header(f: IO[bytes]) -> BundleHeader | None:
    first = f.readline(MAX_LINE + 1)
    if not first.endswith(b"\n"):
        return None
    try:
        record = next(read_records([first]))
    except MalformedBundle:
        return None
    return record if isinstance(record, BundleHeader) else None


def _kind(raw: bytes) -> object:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return obj.get("type") if isinstance(obj, dict) else None


def read_partial(path: Path) -> Kept | None:
    """What ``path`` holds up to its last complete block; None when not even its header line
    is complete. Raises MalformedBundle (naming the line) if the part kept is damaged."""
    with path.open("rb") as f:
        header = _header(f)
        if header is None:
            return None
        f.seek(0)
        found = last_complete_block(_lines(f))
        if found is not None:
            offset = found[0]
        else:
            # No block is complete: keep the header and a complete consistency record.
            f.seek(0)
            first = f.readline(MAX_LINE + 1)
            offset = len(first)
            second = f.readline(MAX_LINE + 1)
            if second.endswith(b"\n") and _kind(second) == "consistency":
                offset += len(second)
        f.seek(0)
        consistency, last, blocks, entries = None, None, 0, 0
        for record in read_records(_lines(f, offset)):
            if isinstance(record, BundleConsistency):
                consistency = record
            elif isinstance(record, BundleBlock):
                last, blocks = record, blocks + 1
            elif isinstance(record, BundleEntry):
                entries += 1
            elif not isinstance(record, BundleHeader):
                raise MalformedBundle(f"line {record.line}: unexpected record before the last block", line=record.line)
    size = int(last.header["tree_size"]) if last is not None else header.from_index
    return Kept(header, offset, consistency, blocks, entries, last, size)


def read_complete(path: Path) -> Written | None:
    """The totals of a complete bundle file (its first lines and its last, the ``end``
    record), or None if ``path`` does not end with one. Reads only both ends of the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = [f.readline(MAX_LINE + 1), f.readline(MAX_LINE + 1)]
        f.seek(max(0, size - 4096))
        tail = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        first = list(read_records([line for line in head if line.endswith(b"\n")]))
        end = json.loads(tail)
    except (MalformedBundle, ValueError, RecursionError):
        return None
    header = first[0] if first and isinstance(first[0], BundleHeader) else None
    consistency = next((r for r in first if isinstance(r, BundleConsistency)), None)
    if header is None or not isinstance(end, dict) or end.get("type") != "end":
        return None
    try:
        return Written(header, consistency, int(end["blocks"]), int(end["entries"]), int(end["tree_size"]), size)
    except (KeyError, TypeError, ValueError):
        return None


def _same_ledger(kept: BundleHeader, new: BundleHeader) -> None:
    for name in ("origin", "verifier_key", "public_key", "genesis"):
        if getattr(kept, name) != getattr(new, name):
            raise OriginMismatch(
                f"the partial export is of another ledger ({name} differs from the server's now); "
                "start afresh with --force",
                field=name,
            )


class _Tee:
    """Lines as they pass to the parser, keeping the last one for the writer. A line cut
    short (no newline at the end of the stream) stops here, so it is never written."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = iter(lines)
        self.last = b""
        self.cut = False

    def __iter__(self) -> Iterator[bytes]:
        for raw in self._lines:
            if not raw.endswith(b"\n") and len(raw) <= MAX_LINE:
                self.cut = True
                return
            self.last = raw
            yield raw


def write_bundle(
    f: IO[bytes],
    lines: Iterable[bytes],
    *,
    kept: Kept | None = None,
    origin: str | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> Written:
    """Write the bundle ``lines`` to ``f``, after what ``kept`` holds (``f`` positioned just
    past it). When resuming, the stream's header and the blocks ``kept`` already holds are
    checked against it and skipped. The ``end`` record written gives the whole file's totals.
    ``origin``: the ledger the caller expects (that of its trusted checkpoint), checked before
    anything is written. ``progress(n)`` is told of every n entries written.

    Raises Unavailable (the stream stopped before its ``end`` record: what was written stays,
    for --resume), MalformedBundle, OriginMismatch and ConfigurationError (the stream does not
    continue ``kept``).
    """
    tee = _Tee(lines)
    header = kept.header if kept else None
    consistency = kept.consistency if kept else None
    blocks, entries = (kept.blocks, kept.entries) if kept else (0, 0)
    written = kept.offset if kept else 0
    skipping = False  # inside a block the kept part already holds
    expect = kept.tree_size if kept else None  # the first_index the next new block must have

    def put(raw: bytes) -> None:
        nonlocal written
        f.write(raw)
        written += len(raw)

    for record in read_records(tee):
        if isinstance(record, BundleHeader):
            if origin is not None and record.origin != origin:
                raise OriginMismatch(
                    f"the export is of {record.origin}, but the trusted checkpoint is of {origin}",
                    origin=record.origin,
                    expected=origin,
                )
            if kept is None:
                header = record
                put(tee.last)
            else:
                _same_ledger(kept.header, record)
        elif isinstance(record, BundleConsistency):
            if kept is not None:
                raise ConfigurationError("the server sent a consistency record when none was asked for")
            consistency = record
            put(tee.last)
        elif isinstance(record, BundleBlock):
            first, size = _bounds(record)
            if kept is not None and size <= kept.tree_size:
                if size == kept.tree_size and kept.last_block is not None and record.hash != kept.last_block.hash:
                    raise ConfigurationError(
                        f"the server's block {record.header.get('height')} differs from the one the "
                        "partial export holds: its history changed; start afresh with --force"
                    )
                skipping = True
                continue
            if expect is not None and first != expect:
                raise ConfigurationError(
                    f"the server's export continues at entry {first}, not {expect} where the partial "
                    "export stops; start afresh with --force"
                )
            skipping, expect = False, None
            blocks += 1
            put(tee.last)
        elif isinstance(record, BundleEntry):
            if skipping:
                continue
            entries += 1
            put(tee.last)
            progress(1)
        elif isinstance(record, BundleCheckpoint):
            put(tee.last)
        elif isinstance(record, BundleEnd):
            if kept is not None and record.tree_size < kept.tree_size:
                raise ConfigurationError(
                    f"the partial export already holds entries up to {kept.tree_size}, past this "
                    f"export's end ({record.tree_size}); check --to"
                )
            put(end_line(blocks=blocks, entries=entries, tree_size=record.tree_size))
            assert header is not None  # read_records starts with the header
            return Written(header, consistency, blocks, entries, record.tree_size, written)
    raise Unavailable(
        f"the export was cut short after {entries} entries (no end record); "
        "run the same command again with --resume to continue it"
    )


def _bounds(block: BundleBlock) -> tuple[int, int]:
    header: Any = block.header
    try:
        return int(header["first_index"]), int(header["tree_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedBundle(f"line {block.line}: block header without first_index and tree_size", line=block.line) from exc


def finish(f: IO[bytes], partial: Path, out: Path) -> None:
    """Make the written file durable, then give it its final name (atomically)."""
    f.flush()
    os.fsync(f.fileno())
    os.replace(partial, out)
