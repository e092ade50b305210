"""The facts projection survives crashes and is rebuilt from the log (docs/analytics.md).

Facts are written in the transaction of the block that seals their entries. A `filiera demo`
process killed by SIGKILL at a random moment of its sealing, then restarted (the entries it
had queued sealed by a new sealer), leaves a projection that `filiera verify` finds equal,
fact for fact, to the one the log makes, and that `filiera facts rebuild` rewrites unchanged:
no fact lost, none duplicated. An edit to the projection behind the ledger's back is named
by `filiera verify` and repaired by a rebuild. `filiera facts export` writes CSV and Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from ledger.config import Settings
from ledger.sealing import Sealer
from ledger.storage import schema as t
from ledger.storage.store import Store

from .conftest import FILIERA, REPO, ModuleDbs, clean_env, on, run

PROJECTION = [*t.fact_tables.values(), t.fact_lot_traces, t.fact_contract_progress]


def _settings(data: Path, url: str) -> Settings:
    return Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=url)


def _snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projection, table by table, in key order."""
    store = Store.open(settings)
    try:
        with store.read() as conn:
            return {
                table.name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
                for table in PROJECTION
            }
    finally:
        store.dispose()


def _head(settings: Settings) -> int:
    try:
        store = Store.open(settings)
    except Exception:  # noqa: BLE001 - not created yet
        return -1
    try:
        with store.read() as conn:
            head = store.head(conn)
            return head.height if head else -1
    finally:
        store.dispose()


def _verify(data: Path, url: str) -> dict[str, Any]:
    result = run([*on(data, url), "verify", "--json"])
    report: dict[str, Any] = json.loads(result.stdout)
    report["exit"] = result.exit_code
    return report


def _rebuild(data: Path, url: str) -> dict[str, Any]:
    result = run([*on(data, url), "facts", "rebuild", "--json"])
    report: dict[str, Any] = json.loads(result.stdout)
    report["exit"] = result.exit_code
    return report


@pytest.mark.parametrize("round_", range(2))
def test_a_crash_mid_sealing_loses_and_duplicates_no_fact(module_dbs: ModuleDbs, tmp_path: Path, round_: int) -> None:
    data, url = tmp_path / "data", module_dbs.new(f"crash{round_}")
    settings = _settings(data, url)
    proc = subprocess.Popen(
        [FILIERA, *on(data, url), "demo", "--lots", "2000"],
        env=clean_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        # Once a few blocks are in, kill it at a random moment of the rest of its sealing.
        deadline = time.monotonic() + 120
        while _head(settings) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(random.Random(round_).uniform(0, 0.8))
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the demo ended before it could be killed"
    assert _head(settings) >= 2

    report = _verify(data, url)
    assert report["exit"] == 0 and report["ok"], report
    before = _snapshot(settings)
    assert before["fact_shipments"] and before["fact_dwell"]

    rebuilt = _rebuild(data, url)
    assert rebuilt["exit"] == 0 and rebuilt["ok"] and rebuilt["tree_size"] == report["tree_size"], rebuilt
    assert rebuilt["facts"] == sum(len(before[t.fact_tables[k].name]) for k in t.fact_tables)
    assert _snapshot(settings) == before

    # The service restarts: whatever the dead process had queued is sealed, facts with it.
    from api import load_ledger_key

    store = Store.open(settings)
    try:
        Sealer(store, signing_key=load_ledger_key(settings)).seal_pending()
    finally:
        store.dispose()
    after = _verify(data, url)
    assert after["exit"] == 0 and after["ok"] and after["tree_size"] >= report["tree_size"], after


EDITS = {
    "value-changed": ("UPDATE fact_shipments SET transit_hours = transit_hours + 1 WHERE idx = (SELECT MIN(idx) FROM fact_shipments)", "shipment"),
    "fact-deleted": ("DELETE FROM fact_payments WHERE idx = (SELECT MAX(idx) FROM fact_payments)", "payment"),
    "fact-forged": ("INSERT INTO fact_contracts (idx, seq, tree_size, entries, entry_1, day) VALUES (3, 0, 4, '[]', 3, '2026-01-01')", "contract"),
    "trace-changed": ("UPDATE fact_lot_traces SET hops = hops + 5", "fact_lot_traces"),
    "projection-emptied": ("DELETE FROM fact_dwell", "dwell"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_verify_names_an_edited_projection_and_rebuild_repairs_it(module_dbs: ModuleDbs, tmp_path: Path, edit: str) -> None:
    data, url = tmp_path / "data", module_dbs.new(f"edit_{edit.replace('-', '_')}")
    assert run([*on(data, url), "demo", "--lots", "12"]).exit_code == 0
    settings = _settings(data, url)
    good = _snapshot(settings)
    assert _verify(data, url)["ok"]

    sql, kind = EDITS[edit]
    store = Store.open(settings)
    try:
        with store.write() as conn:
            conn.execute(text(sql))
    finally:
        store.dispose()
    report = _verify(data, url)
    assert report["exit"] == 1 and report["ok"] is False
    assert report["code"] == "chain_broken" and report["reason"] == "facts" and report["kind"] == kind, report

    rebuilt = _rebuild(data, url)
    assert rebuilt["exit"] == 0 and rebuilt["ok"], rebuilt
    assert _snapshot(settings) == good
    assert _verify(data, url)["ok"]


def test_rebuild_text_output_and_progress(module_dbs: ModuleDbs, tmp_path: Path) -> None:
    data, url = tmp_path / "data", module_dbs.new("rebuild_text")
    assert run([*on(data, url), "demo", "--lots", "8"]).exit_code == 0
    result = run([*on(data, url), "facts", "rebuild"])
    assert result.exit_code == 0
    assert result.stdout.startswith("OK: ") and "facts rebuilt from" in result.stdout
    assert "rebuilding facts" in result.stderr


def test_rebuild_without_a_ledger_exits_2(tmp_path: Path) -> None:
    result = run([*on(tmp_path / "data", f"sqlite:///{tmp_path / 'none.db'}"), "facts", "rebuild"])
    assert result.exit_code == 2 and "not_initialised" in result.stderr


def test_facts_export_writes_csv_and_parquet(module_dbs: ModuleDbs, tmp_path: Path) -> None:
    from arro3.io import read_parquet

    data, url = tmp_path / "data", module_dbs.new("export_files")
    assert run([*on(data, url), "demo", "--lots", "12"]).exit_code == 0
    rows = _snapshot(_settings(data, url))["fact_shipments"]
    days = sorted({r[7] for r in rows})  # idx, seq, tree_size, entries, entry_1..3, day
    first, last = days[1], days[-2]
    want = [r for r in rows if first <= r[7] <= last]

    out = tmp_path / "shipments.csv"
    result = run([*on(data, url), "facts", "export", "shipment", "--from", first, "--to", last, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    parsed = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(int(r["index"]), int(r["seq"])) for r in parsed] == [(r[0], r[1]) for r in want]

    out = tmp_path / "shipments.parquet"
    result = run([*on(data, url), "facts", "export", "shipment", "--format", "parquet", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    table = read_parquet(str(out)).read_all()
    assert table.num_rows == len(rows)
    assert table.column("index").to_pylist() == [r[0] for r in rows]
