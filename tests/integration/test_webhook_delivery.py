"""Webhook delivery (docs/webhooks.md) by the worker in this process, against receivers on
loopback, over a `filiera demo` ledger, on SQLite and PostgreSQL.

The worker runs with a fixed clock (``step()`` is one pass), so retries are checked against
the schedule exactly: an attempt never comes before its time, and the pauses grow. Every
delivery is verified by the receiver with docs/webhooks.md's own function and with the
Standard Webhooks reference library; what arrives is compared with the facts feed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from ledger.clock import FixedClock
from ledger.config import Settings
from ledger.keys import read_key_file
from ledger.storage import webhooks as wh
from ledger.webhook_secrets import SecretBox
from ledger.webhook_worker import WebhookWorker
from ledger.webhooks import retry_delay

from ..conftest import Db, SigningClient
from ..factories import Member, post_entry
from ..factories import register as register_member
from ..webhooks import Receiver, dead_url, position, receiver, register, signed

AUDITOR, RETAILER = "revisori-associati", "mercato-milano"


@dataclasses.dataclass
class Demo:
    app: Flask
    settings: Settings
    clock: FixedClock

    @property
    def store(self) -> Any:
        return self.app.extensions["filiera"].store

    def member(self, who: str) -> Member:
        return Member(who, read_key_file(self.settings.data_dir / f"{who}.key").signing_key)

    def client(self) -> SigningClient:
        self.app.test_client_class = SigningClient
        c = self.app.test_client()
        assert isinstance(c, SigningClient)
        return c

    def subscribe(self, who: str, r: Receiver, types: list[str], **extra: Any) -> dict[str, Any]:
        created = register(self.client(), self.member(who), r.url, types, **extra)
        r.secret = created["secret"]
        return created

    def worker(self, **overrides: Any) -> WebhookWorker:
        options: dict[str, Any] = {
            "allow_private": True, "timeout": 0.5, "retry_base": 2.0, "retry_max": 8.0,
            "clock": self.clock, "jitter": lambda: 0.5,
        }
        options.update(overrides)
        return WebhookWorker(self.store, SecretBox.open(self.settings.webhook_key_file), **options)

    def feed(self, who: str, kinds: str = "") -> list[dict[str, Any]]:
        c = self.client().as_member(self.member(who))
        query = f"/v1/analytics/facts?limit=1000{'&kind=' + kinds if kinds else ''}"
        facts: list[dict[str, Any]] = c.get(query).json["facts"]
        return facts


@pytest.fixture
def demo(db: Db, tmp_path: Path) -> Iterator[Demo]:
    from api import create_app
    from api.demo import build_demo

    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", ledger_key_file=tmp_path / "data" / "ledger.key",
        database_url=db.url, seal_interval=0.0, webhook_allow_private=True,
    )
    assert build_demo(settings, origin="demo.filiera.example", if_missing=False, lots=6) is not None
    app = create_app(settings, background_sealing=False)
    yield Demo(app, settings, FixedClock(datetime.now(timezone.utc).replace(microsecond=0)))
    app.extensions["filiera"].store.dispose()


def drain(worker: WebhookWorker, rounds: int = 20) -> None:
    for _ in range(rounds):
        if worker.step() == 0:
            return
    raise AssertionError("the worker kept delivering")


def test_each_fact_arrives_once_in_order_signed_and_only_to_those_who_may_see_it(demo: Demo) -> None:
    with receiver() as everything, receiver() as shipments:
        demo.subscribe(AUDITOR, everything, ["shipment", "dwell", "delivery", "contract", "payment"], after="0")
        demo.subscribe(RETAILER, shipments, ["shipment"], after="0")
        drain(demo.worker())
        assert everything.bad == [] and shipments.bad == []

        expected_all = demo.feed(AUDITOR)
        assert len(expected_all) > 50
        assert [a.payload["data"] for a in everything.arrivals] == expected_all
        assert [a.payload["type"] for a in everything.arrivals] == [f"fact.{f['kind']}" for f in expected_all]
        # The retailer gets its own shipments, as its feed shows them, and nothing else.
        expected_mine = demo.feed(RETAILER, "shipment")
        assert 0 < len(expected_mine) < sum(f["kind"] == "shipment" for f in expected_all)
        assert [a.payload["data"] for a in shipments.arrivals] == expected_mine

        ids = [a.msg_id for a in everything.arrivals]
        assert len(set(ids)) == len(ids)
        assert [position(i) for i in ids] == [(f["index"], f["seq"]) for f in expected_all]
        # The event's timestamp is when the fact's block was made.
        c = demo.client().as_member(demo.member(AUDITOR))
        first = everything.arrivals[0].payload
        blocks = [b["header"] for b in c.get("/v1/blocks?limit=1000").json["blocks"]]
        (sealing,) = [b for b in blocks if b["tree_size"] == first["data"]["tree_size"]]
        assert first["timestamp"] == sealing["time"]

        # Nothing new: nothing more is sent.
        assert demo.worker().step() == 0
        assert len(everything.arrivals) == len(expected_all)


def test_a_failing_endpoint_is_retried_on_a_growing_schedule_until_it_recovers(demo: Demo) -> None:
    # Three 500s, then an answer slower than the timeout, then all is well.
    def script(n: int, msg: str) -> tuple[int | None, float]:
        return (500, 0.0) if n <= 3 else (200, 2.0) if n == 4 else (200, 0.0)

    with receiver(script) as r:
        demo.subscribe(RETAILER, r, ["shipment", "payment"], after="0")
        worker = demo.worker()
        expected = demo.feed(RETAILER, "shipment,payment")
        pauses: list[float] = []
        for attempt in range(1, 5):
            assert worker.step() == 0
            assert len(r.arrivals) == attempt
            (sub,) = demo_subs(demo)
            head = wh.head_delivery(demo.store, sub.id)
            assert head is not None and head.attempts == attempt
            assert head.last_result == ("HTTP 500" if attempt <= 3 else "no answer within 0.5 s")
            pause_ms = head.next_attempt_at - head.last_attempt_at
            assert pause_ms == int(retry_delay(attempt, base=2.0, cap=8.0, jitter=0.5) * 1000)
            pauses.append(pause_ms / 1000)
            # Not a moment early: a pass just before the time sends nothing.
            demo.clock.advance(timedelta(milliseconds=pause_ms - 1))
            assert worker.step() == 0 and len(r.arrivals) == attempt
            demo.clock.advance(timedelta(milliseconds=1))
        assert pauses == [1.5, 3.0, 6.0, 6.0]  # doubling with half jitter, then capped at 8 s
        drain(worker)
        assert r.bad == []
        # The same message four times (same id, a fresh timestamp each attempt), then the rest.
        first_id = r.arrivals[0].msg_id
        assert [a.msg_id for a in r.arrivals[:5]] == [first_id] * 5
        assert len({a.timestamp for a in r.arrivals[:5]}) == 5
        # After the recovery, every other fact once, in log order.
        assert [a.msg_id for a in r.arrivals[5:]] == r.first_arrivals()[1:]
        assert [r.arrivals[0].payload["data"]] + [a.payload["data"] for a in r.arrivals[5:]] == expected


def demo_subs(demo: Demo) -> list[wh.Subscription]:
    with demo.store.read() as conn:
        return wh.active_subscriptions(conn)


def test_a_dead_endpoint_does_not_hold_up_another_subscription(demo: Demo) -> None:
    with receiver() as alive:
        created = register(demo.client(), demo.member(AUDITOR), dead_url(), ["shipment"], after="0")
        demo.subscribe(RETAILER, alive, ["shipment"], after="0")
        worker = demo.worker()
        assert worker.step() == len(demo.feed(RETAILER, "shipment"))
        listed = signed(demo.client(), "GET", "/v1/webhooks", demo.member(AUDITOR)).json["webhooks"]
        (dead,) = [w for w in listed if w["id"] == created["id"]]
        assert dead["attempts"] == 1 and "ConnectionRefused" in dead["last_result"]
        assert dead["pending"] == len(demo.feed(AUDITOR, "shipment")) and dead["next_attempt_at"] is not None


def test_a_hanging_endpoint_blocks_neither_other_subscriptions_nor_ingest(demo: Demo) -> None:
    def hold(n: int, msg: str) -> tuple[int | None, float]:
        return None, 0.0

    with receiver(hold) as stuck, receiver() as alive:
        demo.subscribe(AUDITOR, stuck, ["delivery"], after="0")
        demo.subscribe(RETAILER, alive, ["shipment"], after="0")
        worker = demo.worker(timeout=30.0)
        worker.interval = 0.02
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            assert stuck.holding.wait(30), "the worker never called the stuck endpoint"
            expected = len(demo.feed(RETAILER, "shipment"))
            for _ in range(1500):
                if len(alive.acknowledged()) >= expected:
                    break
                threading.Event().wait(0.02)
            assert len(alive.acknowledged()) == expected
            # Ingest goes on while a delivery hangs: an entry is sealed as ever.
            c = demo.client()
            resp = post_entry(c, register_member(demo.member("admin"), Member("nuovo-frantoio"), ["processor"], origin="demo.filiera.example"))
            assert resp.status_code == 201, resp.json
        finally:
            stuck.release.set()
            worker.stop.set()
            thread.join(30)
        assert not thread.is_alive()


def test_410_gone_stops_the_subscription(demo: Demo) -> None:
    with receiver(lambda n, msg: (410, 0.0)) as r:
        created = demo.subscribe(RETAILER, r, ["shipment"], after="0")
        worker = demo.worker()
        assert worker.step() == 0
        demo.clock.advance(timedelta(hours=1))
        assert worker.step() == 0
        assert len(r.arrivals) == 1
        listed = signed(demo.client(), "GET", "/v1/webhooks", demo.member(RETAILER)).json["webhooks"]
        assert [(w["id"], w["status"]) for w in listed] == [(created["id"], "gone")]


def test_retry_after_lengthens_the_pause(demo: Demo) -> None:
    with receiver(lambda n, msg: (503, 0.0)) as r:
        r.retry_after = "7"
        demo.subscribe(RETAILER, r, ["shipment"], after="0")
        demo.worker().step()
        (sub,) = demo_subs(demo)
        head = wh.head_delivery(demo.store, sub.id)
        assert head is not None and head.next_attempt_at - head.last_attempt_at == 7000  # not 1.5 s


def test_filling_twice_from_the_same_cursor_queues_nothing_twice(demo: Demo) -> None:
    with receiver() as r:
        demo.subscribe(RETAILER, r, ["shipment", "payment"], after="0")
        (stale,) = demo_subs(demo)
        first = wh.fill(demo.store, stale, window=100, now_ms=0)
        assert first == len(demo.feed(RETAILER, "shipment,payment")) > 0
        # A second filler that read the subscription before the first moved its cursor (a
        # crash and restart, or a second worker) queues nothing.
        assert wh.fill(demo.store, stale, window=100, now_ms=0) == 0
        (moved,) = demo_subs(demo)
        assert wh.fill(demo.store, moved, window=100, now_ms=0) == 0
        with demo.store.read() as conn:
            queued = wh.deliveries(conn, moved.id)
        assert len(queued) == first
        assert json.loads(queued[0].body)["data"]["cursor"] == demo.feed(RETAILER, "shipment,payment")[0]["cursor"]


def test_the_outbox_holds_a_window_and_the_cursor_keeps_the_rest(demo: Demo) -> None:
    with receiver(lambda n, msg: (500, 0.0)) as r:
        demo.subscribe(AUDITOR, r, ["shipment", "dwell"], after="0")
        worker = demo.worker(window=5)
        worker.step()
        (sub,) = demo_subs(demo)
        with demo.store.read() as conn:
            assert len(wh.deliveries(conn, sub.id)) == 5
        # The endpoint recovers: the rest follows from the projection, in order.
        r.script = lambda n, msg: (200, 0.0)
        demo.clock.advance(timedelta(seconds=10))
        drain(worker)
        expected = demo.feed(AUDITOR, "shipment,dwell")
        assert [a.payload["data"] for a in r.acknowledged()] == expected
