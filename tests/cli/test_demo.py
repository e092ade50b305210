"""`filiera demo`: the olive-oil consortium that `make run` serves (PROTOCOL §4 entry types).

The demo must be a ledger a new user can explore and `filiera verify` accepts: every entry
type, lots that move through the whole chain, deliveries late against their contract, exactly
one refused pallet, paid and closed contracts, and a run still under way. It runs in-process
(CliRunner) on both backends, and as the installed command on a terminal for the progress bar.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ledger.config import Settings
from ledger.keys import read_key_file
from ledger.payloads import EntryType
from ledger.storage.store import Store

from ..conftest import Db
from .conftest import FILIERA, REPO, clean_env, error_code, on, run

MEMBERS = {
    "masseria-ulivi", "tenuta-coratina", "uliveto-terlizzi", "frantoio-bari", "oleificio-sud",
    "trasporti-adriatica", "mercato-milano", "feinkost-muenchen", "bio-cert-italia", "revisori-associati",
}


@dataclass
class Logged:
    id: str
    type: str
    payload: dict[str, Any]
    signers: list[str]


def _log(data: Path, url: str) -> list[Logged]:
    """Every sealed entry, in log order."""
    store = Store.open(Settings.from_env({}, data_dir=data, database_url=url))
    try:
        with store.read() as conn:
            head = store.head(conn)
            assert head is not None
            rows = store.entries_range(conn, 0, head.tree_size)
    finally:
        store.dispose()
    out = []
    for row in rows:
        env = json.loads(row.leaf_data)
        out.append(Logged(row.id, row.type, env["payload"], [s["signer"] for s in env["signatures"]]))
    return out


def _verify(data: Path, url: str) -> dict[str, Any]:
    result = run([*on(data, url), "verify", "--json"])
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["ok"] is True
    return report


def _late_deliveries(log: list[Logged]) -> list[str]:
    """Receipts of contract deliveries received after the contract's deliver_by."""
    deadline = {e.payload["contract"]: date.fromisoformat(e.payload["terms"]["deliver_by"]) for e in log if e.type == "contract"}
    contract_of = {e.id: e.payload["contract"] for e in log if e.type == "handoff" and "contract" in e.payload}
    late = []
    for e in log:
        if e.type == "receipt" and e.payload["handoff"] in contract_of:
            received = date.fromisoformat(e.payload["received_at"][:10])
            if received > deadline[contract_of[e.payload["handoff"]]]:
                late.append(e.id)
    return late


def _harvested(log: list[Logged]) -> int:
    return sum(len(e.payload["lots"]) for e in log if e.type == "origin")


def test_demo_is_a_living_ledger_that_verifies(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run([*on(data, db.url), "demo"])
    assert result.exit_code == 0, result.output
    assert "30 harvested lots" in result.stdout
    assert "sealing the demo" in result.stderr and "sealing" not in result.stdout

    report = _verify(data, db.url)
    log = _log(data, db.url)
    assert report["entries"] == len(log) > 100
    assert report["blocks"] > 3  # sealed in several batches, as a ledger grows
    assert f"{len(log)} entries in {report['blocks']} blocks" in result.stdout
    types = Counter(e.type for e in log)
    assert set(types) == {t.value for t in EntryType}, types
    assert _harvested(log) == 30
    assert {e.payload["participant"]["id"] for e in log if e.type == "participant.register"} == MEMBERS

    # Entry times are signing times, never ahead of the ledger; the story's times are past.
    for e in log:
        for field in ("dispatched_at", "received_at", "paid_at"):
            if field in e.payload:
                assert e.payload[field] < e.payload["time"], (e.type, field)

    # Exactly one pallet refused at the door; it goes back to the bottler, whose contract
    # with the buyer is terminated.
    rejected = [e for e in log if e.type == "receipt" and e.payload["status"] == "rejected"]
    assert len(rejected) == 1
    handoffs = {e.id: e for e in log if e.type == "handoff"}
    refused = handoffs[rejected[0].payload["handoff"]]
    returned = [h for h in handoffs.values() if h.payload["lots"] == refused.payload["lots"] and h.payload["to"] == "oleificio-sud"]
    assert returned and sorted(returned[-1].signers) == ["oleificio-sud", "trasporti-adriatica"]
    closes = {e.payload["contract"]: e.payload["status"] for e in log if e.type == "contract.close"}
    assert closes[refused.payload["contract"]] == "terminated"
    assert "fulfilled" in closes.values()

    assert _late_deliveries(log), "no delivery arrived after its deliver_by"

    # Still under way: a pallet on the road (no receipt), an unconfirmed payment, open contracts.
    received = {e.payload["handoff"] for e in log if e.type == "receipt"}
    in_transit = [h for h in handoffs.values() if len(h.signers) == 1 and h.id not in received]
    assert in_transit
    confirmed = {e.payload["payment"] for e in log if e.type == "payment.confirm"}
    assert [e for e in log if e.type == "payment" and e.id not in confirmed]
    assert types["payment.confirm"] > 0 and any("contract" not in e.payload for e in log if e.type == "payment")
    assert [e for e in log if e.type == "contract" and e.payload["contract"] not in closes]

    # Every member's key file (0600) holds a key the ledger accepts now: the carrier's is the
    # one it rotated to, and its first key is revoked.
    keys = sorted(p.name for p in data.glob("*.key"))
    assert keys == sorted(["ledger.key", "admin.key", *(f"{m}.key" for m in MEMBERS)])
    assert all(stat.S_IMODE(os.stat(data / k).st_mode) == 0o600 for k in keys)
    store = Store.open(Settings.from_env({}, data_dir=data, database_url=db.url))
    try:
        with store.read() as conn:
            for member in MEMBERS:
                kf = read_key_file(data / f"{member}.key")
                assert kf.participant == member
                active = [k.key_id for k in store.keys_of(conn, member) if k.revoked_index is None]
                assert active == [kf.key_id], member
            carrier = store.keys_of(conn, "trasporti-adriatica")
            assert [k.reason for k in carrier] == ["scheduled rotation", None]
    finally:
        store.dispose()


def test_demo_if_missing_is_a_no_op_the_second_time(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run([*on(data, db.url), "demo", "--if-missing"])
    assert first.exit_code == 0, first.output
    report = _verify(data, db.url)
    keys = {p.name: p.read_bytes() for p in data.glob("*.key")}

    second = run([*on(data, db.url), "demo", "--if-missing"])
    assert second.exit_code == 0, second.output
    assert "leaving it as it is" in second.stdout
    assert second.stderr == ""  # no progress bar for work not done
    assert _verify(data, db.url) == report
    assert {p.name: p.read_bytes() for p in data.glob("*.key")} == keys

    third = run([*on(data, db.url), "demo"])
    assert third.exit_code == 2
    assert error_code(third.stderr) == "ledger_exists"
    assert _verify(data, db.url) == report


def test_demo_lots_scales_with_a_progress_bar_on_stderr(tmp_path: Path) -> None:
    """--lots 500 through the installed command, stderr on a terminal: the bar is drawn
    there with its count, stdout carries only the summary."""
    data, url = tmp_path / "data", f"sqlite:///{tmp_path / 'f.db'}"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [FILIERA, *on(data, url), "demo", "--lots", "500"],
        stdout=subprocess.PIPE, stderr=follower, env=clean_env(), cwd=REPO,
    )
    os.close(follower)
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read().decode()
    terminal = _read_pty(leader, proc).decode()
    os.close(leader)
    assert proc.returncode == 0, terminal
    assert "sealing the demo" in terminal and "500/500" in terminal
    assert "sealing" not in stdout
    assert "500 harvested lots" in stdout and "entries/s" in stdout

    report = _verify(data, url)
    log = _log(data, url)
    assert report["entries"] == len(log)
    assert report["blocks"] >= 5
    assert _harvested(log) == 500
    assert {e.type for e in log} == {t.value for t in EntryType}
    assert sum(1 for e in log if e.type == "receipt" and e.payload["status"] == "rejected") == 1
    assert len(_late_deliveries(log)) > 5


def test_demo_refuses_too_few_lots(tmp_path: Path) -> None:
    result = run([*on(tmp_path / "data", f"sqlite:///{tmp_path / 'f.db'}"), "demo", "--lots", "3"])
    assert result.exit_code == 2
    assert "--lots" in result.stderr
    assert not (tmp_path / "f.db").exists()


def _read_pty(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    return out
