"""TESTPLAN T2, second half: random bit flips in a SQLite database file.

A flip that changes no row of the log tables (entries, blocks, merkle_nodes, read both by a
full scan and through the primary key) is not counted. Every flip that does must fail
`filiera verify` (exit 1; a file SQLite cannot read is reason ``storage``); a flip confined to
one entry or block row, in place, must be named there. FILIERA_T2_FLIPS sets the count (20;
the full plan 1000), FILIERA_T2_SEED the seed (see test_tamper_generator.py).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..cli.conftest import ModuleDbs, on, run
from .tamper_ledger import ENTRIES, SEED, Base, build_base, say

pytestmark = pytest.mark.slow

FLIPS = int(os.environ.get("FILIERA_T2_FLIPS", "20"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    dbs = ModuleDbs("sqlite", tmp_path_factory.mktemp("t2-flips"), [])
    yield build_base(dbs, dbs.root / "data", entries=ENTRIES, rng=random.Random(SEED))


def _where(f: dict[str, Any]) -> str:
    return f"block {f.get('height')} index {f.get('index')} reason {f.get('reason')} ({f.get('detail')})"


LOG_TABLES = ("entries", "blocks", "merkle_nodes")


def _log_rows(path: Path) -> dict[str, list[tuple[Any, ...]]] | str:
    """Every row of the log tables, read by a full scan and through the primary key (a
    damaged index can hide rows from one path only); the error text if SQLite cannot."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows: dict[str, list[tuple[Any, ...]]] = {}
            for table in LOG_TABLES:
                key = "level, idx" if table == "merkle_nodes" else "height" if table == "blocks" else "idx"
                # A flip can change a value's type: order by text, not by value.
                rows[table] = sorted(conn.execute(f"SELECT * FROM {table} NOT INDEXED").fetchall(), key=repr)
                rows[table + " by key"] = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            return rows
        finally:
            conn.close()
    except (sqlite3.Error, UnicodeDecodeError) as exc:  # the schema's own text can be damaged
        return f"{exc.__class__.__name__}: {exc}"


def _changes(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]] | str) -> str:
    """What differs, briefly: the error, or the first changed row of each table."""
    if isinstance(after, str):
        return after
    out = []
    for table, rows in before.items():
        if rows != after[table]:
            pair = next(((a, b) for a, b in zip(rows, after[table]) if a != b), None)
            out.append(f"{table}: {len(rows)} -> {len(after[table])} rows, first change {pair!r:.600}")
    return "; ".join(out)


def _one_changed_row(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> tuple[str, Any] | None:
    """(table, key) when exactly one row of one table changed in place (same key, same count)."""
    changed = []
    for table in LOG_TABLES:
        old, new = before[table + " by key"], after[table + " by key"]
        if len(old) != len(new):
            return None
        changed += [(table, a, b) for a, b in zip(old, new) if a != b]
    if len(changed) != 1:
        return None
    table, a, b = changed[0]
    key_len = 2 if table == "merkle_nodes" else 1
    return (table, a[:key_len]) if a[:key_len] == b[:key_len] else None


def test_random_byte_flips_in_the_sqlite_file(base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One bit of a copy of the file flipped at random, `filiera verify --json` on it."""
    started = time.perf_counter()
    clean = tmp_path / "clean.db"
    with sqlite3.connect(base.url.split("///", 1)[1]) as src, sqlite3.connect(clean) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    original = clean.read_bytes()
    before = _log_rows(clean)
    assert isinstance(before, dict)
    rng = random.Random(f"{SEED}:flips")
    counted = detected = pinpointed = localised = unchanged = 0
    problems: list[str] = []
    for n in range(FLIPS):
        raw = bytearray(original)
        offset, bit = rng.randrange(len(raw)), rng.randrange(8)
        raw[offset] ^= 1 << bit
        path = tmp_path / f"flip{n}.db"
        path.write_bytes(bytes(raw))
        after = _log_rows(path)
        if after == before:
            unchanged += 1
            path.unlink()
            continue
        counted += 1
        where = f"seed {SEED} flip {n} (byte {offset} bit {bit})"
        try:
            result = run([*on(base.data, f"sqlite:///{path}"), "verify", "--json"])
        except Exception as exc:  # noqa: BLE001 -- a crash is a finding, reported with the rest
            problems.append(f"{where}: verify crashed: {exc.__class__.__name__}: {exc}")
            continue
        try:
            out = json.loads(result.stdout)
        except ValueError:
            problems.append(f"{where}: verify printed no JSON (exit {result.exit_code}): {result.stderr[-300:]}")
            continue
        if result.exit_code != 1 or out.get("ok") is not False:
            problems.append(f"{where}: verify exit {result.exit_code}: {out}; the log changed: {_changes(before, after)}")
            continue
        detected += 1
        one = _one_changed_row(before, after) if isinstance(after, dict) else None
        if one is not None:
            localised += 1
            table, key = one
            named = (out.get("index") == key[0]) if table == "entries" else (out.get("height") == key[0] and out.get("index") is None) if table == "blocks" else out.get("reason") == "merkle_node"
            if named:
                pinpointed += 1
            else:
                problems.append(f"{where}: only {table} row {key} changed, verify named {_where(out)}")
        path.unlink()
    say(capsys, {"test": "T2 byte flips", "backend": "sqlite", "flips": FLIPS, "unchanged_not_counted": unchanged, "counted": counted, "detected": detected, "one_row_changed": localised, "pinpointed": pinpointed, "problems": len(problems), "seconds": round(time.perf_counter() - started, 1)})
    assert not problems, "\n".join(problems)


def test_a_leaf_that_is_not_utf8_fails_verification(base: Base, tmp_path: Path) -> None:
    """What most flips of a high bit inside a leaf come to: SQLite hands back text that is not
    UTF-8. That is a damaged log (exit 1, named at the entry or as ``storage``), not a database
    that could not be reached (exit 2)."""
    path = tmp_path / "not-utf8.db"
    with sqlite3.connect(base.url.split("///", 1)[1]) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
        for (name,) in list(dst.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")):
            dst.execute(f"DROP TRIGGER {name}")
        dst.execute("UPDATE entries SET leaf_data = CAST(CAST(leaf_data AS BLOB) || X'FF' AS TEXT) WHERE idx = 7")
    src.close()
    dst.close()
    result = run([*on(base.data, f"sqlite:///{path}"), "verify", "--json"])
    out = json.loads(result.stdout)
    assert (result.exit_code, out["ok"], out["code"]) == (1, False, "chain_broken"), out
    assert out["reason"] == "storage" or (out["height"], out["index"]) == (base.height_of(7), 7), out


def test_a_row_whose_key_no_longer_matches_its_index_fails_verification(base: Base, tmp_path: Path) -> None:
    """Merkle node (0, 5) renumbered in its table row only: every read goes through the
    primary key's index and still finds the node, so only SQLite's integrity check shows it
    (reason ``storage``)."""
    path = tmp_path / "index.db"
    with sqlite3.connect(base.url.split("///", 1)[1]) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
        (node,) = dst.execute("SELECT hash FROM merkle_nodes WHERE level = 0 AND idx = 5").fetchone()
    src.close()
    dst.close()
    raw = bytearray(path.read_bytes())
    # The row's record body is idx (one byte: serial type 1), then the 32-byte hash; level 0
    # takes no body byte. The hash appears nowhere else in the file (indexes hold keys only).
    at = raw.index(bytes(node))
    assert raw.count(bytes(node)) == 1 and raw[at - 1] == 5
    raw[at - 1] = 99
    path.write_bytes(bytes(raw))
    result = run([*on(base.data, f"sqlite:///{path}"), "verify", "--json"])
    out = json.loads(result.stdout)
    assert (result.exit_code, out["code"], out["reason"]) == (1, "chain_broken", "storage"), out
