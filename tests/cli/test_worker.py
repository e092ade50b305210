"""`filiera worker` as a real process (docs/webhooks.md), beside `filiera serve`, on SQLite and
PostgreSQL: subscriptions made with `filiera webhooks add`, an endpoint that fails and
recovers, a worker killed with SIGKILL mid-delivery and restarted (nothing lost; the message
in flight comes again with the same webhook-id), ingest going on while an endpoint hangs, and
a graceful stop on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.client import http_json
from ledger.keys import read_key_file

from ..conftest import Db
from ..factories import Member, register
from ..webhooks import Receiver, position, receiver
from .conftest import FILIERA, REPO, Server, clean_env, on, run, run_entry_point

AUDITOR = "revisori-associati"
FAST = {
    "FILIERA_WEBHOOK_ALLOW_PRIVATE": "1",
    "FILIERA_WEBHOOK_RETRY_BASE": "0.05",
    "FILIERA_WEBHOOK_RETRY_MAX": "0.4",
    "FILIERA_WEBHOOK_TIMEOUT": "1",
    "FILIERA_LOG_LEVEL": "WARNING",
}
WAIT_LIMIT_S = 90.0


@dataclass
class Ledger:
    data: Path
    url: str
    server: Server
    log_dir: Path

    def key(self, who: str) -> Path:
        return self.data / f"{who}.key"

    def subscribe(self, r: Receiver, types: list[str]) -> dict[str, Any]:
        args = [*on(self.data, self.url), "webhooks", "add", r.url, "--after", "0", "--url", self.server.url, "--key", str(self.key(AUDITOR))]
        for kind in types:
            args += ["--type", kind]
        result = run_entry_point(args, env=FAST)
        assert result.returncode == 0, result.stderr
        created: dict[str, Any] = json.loads(result.stdout)
        r.secret = created["secret"]
        return created

    def facts(self, kinds: str) -> list[dict[str, Any]]:
        key = read_key_file(self.key(AUDITOR)).signing_key
        status, body = http_json("GET", f"{self.server.url}/v1/analytics/facts?limit=1000&kind={kinds}", key=key)
        assert status == 200
        facts: list[dict[str, Any]] = body["facts"]
        return facts

    def listed(self) -> list[dict[str, Any]]:
        result = run_entry_point([*on(self.data, self.url), "webhooks", "list", "--url", self.server.url, "--key", str(self.key(AUDITOR))])
        assert result.returncode == 0, result.stderr
        webhooks: list[dict[str, Any]] = json.loads(result.stdout)["webhooks"]
        return webhooks

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"worker-{name}.log").open("wb") as log:
            return subprocess.Popen(
                [FILIERA, *on(self.data, self.url), "worker", "--interval", "0.05"],
                env=clean_env(FAST), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            )


@pytest.fixture
def ledger(db: Db, tmp_path: Path, servers: Callable[..., Server]) -> Iterator[Ledger]:
    data = tmp_path / "data"
    result = run([*on(data, db.url), "demo", "--lots", "6"])
    assert result.exit_code == 0, result.stderr
    yield Ledger(data, db.url, servers(data, db.url, workers=1, env=FAST), tmp_path)


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def stop_gracefully(proc: subprocess.Popen[bytes]) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(30)


def in_log_order(r: Receiver) -> bool:
    """Every arrival at or after the one before it in the log: retries repeat, never skip back."""
    positions = [position(a.msg_id) for a in r.arrivals]
    return positions == sorted(positions)


def test_an_endpoint_that_fails_then_recovers_gets_every_fact_in_order(ledger: Ledger, workers: list[Any]) -> None:
    # Four 500s, an answer slower than the 1 s timeout, then all is well.
    def script(n: int, msg: str) -> tuple[int | None, float]:
        return (500, 0.0) if n <= 4 else (200, 2.5) if n == 5 else (200, 0.0)

    with receiver(script) as r:
        ledger.subscribe(r, ["shipment", "payment"])
        expected = ledger.facts("shipment,payment")
        workers.append(proc := ledger.worker("recover"))
        wait_for("every fact acknowledged", lambda: len(r.first_arrivals()) == len(expected) and r.arrivals[-1].status == 200)
        wait_for("the outbox drained", lambda: ledger.listed()[0]["pending"] == 0)
        assert stop_gracefully(proc) == 0
        assert r.bad == []
        assert in_log_order(r)
        assert [position(m) for m in r.first_arrivals()] == [(f["index"], f["seq"]) for f in expected]
        # The first fact was tried six times under one webhook-id, then each other fact once.
        first = r.arrivals[0].msg_id
        assert [a.msg_id for a in r.arrivals[:6]] == [first] * 6
        assert len(r.arrivals) == len(expected) + 5
        (listed,) = ledger.listed()
        assert listed["last_delivered_at"] is not None and listed["attempts"] == 0


def test_a_worker_killed_mid_delivery_loses_nothing_when_restarted(ledger: Ledger, workers: list[Any]) -> None:
    def script(n: int, msg: str) -> tuple[int | None, float]:
        return (None, 0.0) if n == 3 else (200, 0.0)  # the third delivery hangs

    with receiver(script) as r:
        ledger.subscribe(r, ["shipment", "dwell"])
        expected = ledger.facts("shipment,dwell")
        workers.append(first := ledger.worker("killed"))
        assert r.holding.wait(WAIT_LIMIT_S)
        in_flight = r.arrivals[2].msg_id
        os.killpg(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        r.release.set()
        workers.append(second := ledger.worker("restarted"))
        wait_for("every fact acknowledged", lambda: len(r.first_arrivals()) == len(expected) and len(r.arrivals) > len(expected))
        wait_for("the outbox drained", lambda: ledger.listed()[0]["pending"] == 0)
        assert stop_gracefully(second) == 0
        assert r.bad == []
        # At least once: the message in flight came again, with the same id; nothing is missing.
        assert [a.msg_id for a in r.arrivals].count(in_flight) == 2
        assert [position(m) for m in r.first_arrivals()] == [(f["index"], f["seq"]) for f in expected]
        assert in_log_order(r)


def test_ingest_goes_on_while_an_endpoint_hangs(ledger: Ledger, workers: list[Any]) -> None:
    with receiver(lambda n, msg: (None, 0.0)) as r:
        ledger.subscribe(r, ["shipment"])
        workers.append(proc := ledger.worker("hanging"))
        assert r.holding.wait(WAIT_LIMIT_S)
        admin = Member("admin", read_key_file(ledger.key("admin")).signing_key)
        entry = register(admin, Member("nuovo-frantoio"), ["processor"], origin="demo.filiera.example")
        status, body = http_json("POST", f"{ledger.server.url}/v1/entries", body=entry)
        assert status == 201, body
        # Stopping waits for the hanging delivery to time out (1 s), then exits cleanly.
        assert stop_gracefully(proc) == 0
        (listed,) = ledger.listed()
        assert listed["pending"] > 0 and listed["attempts"] == 1 and listed["last_result"].startswith("no answer")


def test_a_second_worker_waits_for_the_first(ledger: Ledger, workers: list[Any]) -> None:
    procs = {name: ledger.worker(name) for name in ("one", "two")}
    workers.extend(procs.values())
    logs = {name: ledger.log_dir / f"worker-{name}.log" for name in procs}
    wait_for("one worker to say it waits", lambda: any(b"waiting" in log.read_bytes() for log in logs.values()))
    waiting = [name for name, log in logs.items() if b"waiting" in log.read_bytes()]
    assert len(waiting) == 1 and all(p.poll() is None for p in procs.values())
    (holder,) = set(procs) - set(waiting)
    assert stop_gracefully(procs[waiting[0]]) == 0  # SIGTERM while waiting for the lock
    assert stop_gracefully(procs[holder]) == 0
