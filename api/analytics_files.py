"""Fact tables as files: CSV (the standard library) and Parquet (arro3, the optional
``analytics`` extra), for ``GET /v1/analytics/export/{table}`` and ``filiera facts export``.

Both carry the common columns first (``index``, ``seq``, ``tree_size``, ``entries`` — the
entry ids, space-separated in CSV, a list in Parquet — and ``day``), then the table's own
(:data:`ledger.facts.COLUMNS`). CSV writes booleans as ``true``/``false`` and nulls as empty
fields; Parquet types every column: ``day`` a date, times UTC timestamps in microseconds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any
from urllib.parse import urlencode

from ledger.encoding import parse_time
from ledger.errors import ParquetUnavailable
from ledger.facts import COLUMNS, Fact

__all__ = ["MEDIA_TYPES", "header", "csv_lines", "encode_table", "parquet_bytes", "query_string"]

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_COMMON = ("index", "seq", "tree_size", "entries", "day")


def header(kind: str) -> list[str]:
    return [*_COMMON, *COLUMNS[kind]]


def query_string(fmt: str, first: date | None, last: date | None) -> str:
    params = {"format": fmt}
    if first is not None:
        params["from"] = first.isoformat()
    if last is not None:
        params["to"] = last.isoformat()
    return urlencode(params)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_lines(kind: str, facts: Iterable[Fact]) -> Iterator[bytes]:
    """The CSV file, a line at a time (RFC 4180: CRLF line ends, quoted where needed)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header(kind))
    cols = list(COLUMNS[kind])
    for n, f in enumerate(facts):
        w.writerow([f.index, f.seq, f.tree_size, " ".join(e for e, _ in f.entries), f.day, *(_text(f.values[c]) for c in cols)])
        if n % 500 == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _micros(value: str | None) -> int | None:
    if value is None:
        return None
    dt = parse_time(value, field="time")
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def parquet_bytes(kind: str, facts: Iterable[Fact]) -> bytes:
    """The Parquet file. Raises ParquetUnavailable without the ``analytics`` extra."""
    try:
        from arro3.core import Array, DataType, Field, Table, list_array
        from arro3.io import write_parquet
    except ImportError as exc:
        raise ParquetUnavailable(
            "Parquet export needs the optional analytics dependencies: pip install 'filiera[analytics]'; "
            "CSV export works without them"
        ) from exc
    rows = list(facts)
    epoch = date(1970, 1, 1)
    offsets = [0]
    ids: list[str] = []
    for f in rows:
        ids.extend(e for e, _ in f.entries)
        offsets.append(len(ids))
    arrays = [
        Array([f.index for f in rows], type=DataType.int64()),
        Array([f.seq for f in rows], type=DataType.int64()),
        Array([f.tree_size for f in rows], type=DataType.int64()),
        list_array(
            Array(offsets, type=DataType.int32()),
            Array(ids, type=DataType.string()),
            type=DataType.list(Field("item", DataType.string(), nullable=False)),
        ),
        Array([(date.fromisoformat(f.day) - epoch).days for f in rows], type=DataType.int32()).cast(DataType.date32()),
    ]
    for col, kind_of in COLUMNS[kind].items():
        values = [f.values[col] for f in rows]
        if kind_of == "time":
            arrays.append(Array([_micros(v) for v in values], type=DataType.int64()).cast(DataType.timestamp("us", tz="UTC")))
        else:
            arrays.append(Array(values, type={"text": DataType.string(), "int": DataType.int64(), "float": DataType.float64(), "bool": DataType.bool()}[kind_of]))
    out = io.BytesIO()
    write_parquet(Table.from_arrays(arrays, names=header(kind)), out, compression="zstd(3)")
    return out.getvalue()


def encode_table(kind: str, facts: Iterable[Fact], fmt: str) -> bytes:
    if fmt == "parquet":
        return parquet_bytes(kind, facts)
    return b"".join(csv_lines(kind, facts))
