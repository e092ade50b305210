"""Analytics over the facts projection (docs/analytics.md), through HTTP as members read it,
on SQLite and PostgreSQL, over a `filiera demo` ledger.

The facts the feed serves and the KPIs are compared with figures computed independently from
the ledger's audit bundle (``GET /v1/export``) by ``tests/analytics_model.py``, which follows
the documented definitions and shares no code with the projection.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from ledger.bundle import read_records
from ledger.config import Settings
from ledger.keys import read_key_file

from ..analytics_model import DIMENSIONS, expected_facts, expected_kpis
from ..conftest import Db, SigningClient
from ..factories import Member

NDJSON = "application/x-ndjson"
KPI_FIELDS = (
    "shipments", "on_time_rate", "rejected", "transit_hours_median", "transit_hours_p90", "delivered_lots",
    "delivered_quantity", "certified_share", "payments", "days_to_pay_mean", "days_to_pay_median",
    "contracts_closed", "fulfilment_mean",
)


@pytest.fixture
def demo(db: Db, tmp_path: Path) -> Iterator[tuple[Flask, Settings]]:
    """A `filiera demo` ledger with 12 harvested lots, served by an app (no background sealing)."""
    from api import create_app
    from api.demo import build_demo

    settings = Settings.from_env({}, data_dir=tmp_path / "data", ledger_key_file=tmp_path / "data" / "ledger.key", database_url=db.url, seal_interval=0.0)
    assert build_demo(settings, origin="demo.filiera.example", if_missing=False, lots=12) is not None
    app = create_app(settings, background_sealing=False)
    yield app, settings
    app.extensions["filiera"].store.dispose()


def reader(app: Flask, settings: Settings, who: str) -> SigningClient:
    """A client signing its reads with ``who``'s key file from the demo's data directory."""
    app.test_client_class = SigningClient
    c = app.test_client()
    assert isinstance(c, SigningClient)
    c.signer = Member(who, read_key_file(settings.data_dir / f"{who}.key").signing_key)
    return c


def all_facts(c: SigningClient, limit: int, **params: str) -> list[dict[str, Any]]:
    """Page through the feed with ``limit`` per page, following ``next``, until a page is empty."""
    facts: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(10_000):
        query = "&".join([f"limit={limit}", *(f"{k}={v}" for k, v in params.items()), *([f"after={after}"] if after else [])])
        resp = c.get(f"/v1/analytics/facts?{query}")
        assert resp.status_code == 200, resp.json
        page = resp.json["facts"]
        assert len(page) <= limit
        if not page:
            assert resp.json["next"] == after
            return facts
        assert resp.json["next"] == page[-1]["cursor"]
        facts.extend(page)
        after = resp.json["next"]
    raise AssertionError("the feed never ended")


def bundle(c: SigningClient) -> list[Any]:
    resp = c.get("/v1/export")
    assert resp.status_code == 200
    return list(read_records(resp.data.splitlines(keepends=True)))


def comparable(f: dict[str, Any]) -> dict[str, Any]:
    """A served fact without what the independent model does not compute."""
    return {k: v for k, v in f.items() if k not in ("cursor", "tree_size")}


def assert_same_facts(served: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(f["index"], f["seq"], f["kind"]) for f in served] == [(f["index"], f["seq"], f["kind"]) for f in expected]
    for got, want in zip(served, expected):
        got = comparable(got)
        assert set(got) == set(want), (got, want)
        for k, v in want.items():
            if k == "origins":
                assert json.loads(got[k]) == pytest.approx(v, rel=1e-9), (got, want)
            elif isinstance(v, float):
                assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), (k, got, want)
            else:
                assert got[k] == v, (k, got, want)


def assert_same_kpis(served: dict[str, Any], expected: dict[tuple[Any, ...], dict[str, Any]], group_by: list[str]) -> None:
    got = {tuple(g["group"][d] for d in group_by): g for g in served["groups"]}
    assert set(got) == set(expected)
    for key, want in expected.items():
        for k in KPI_FIELDS:
            if want[k] is None:
                assert got[key][k] is None, (key, k)
            else:
                assert got[key][k] == pytest.approx(want[k], rel=1e-9, abs=1e-9), (key, k, got[key], want)


# --- the feed ---------------------------------------------------------------------------


def test_the_feed_pages_through_every_fact_once_in_log_order(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    admin = reader(app, settings, "admin")
    facts = all_facts(admin, 7)
    assert {f["kind"] for f in facts} == {"shipment", "dwell", "delivery", "contract", "payment"}
    positions = [(f["index"], f["seq"]) for f in facts]
    assert positions == sorted(set(positions)), "facts repeated or out of order"
    assert [f["cursor"] for f in facts] == [f"{i}.{s}" for i, s in positions]
    # Another page size, and a page that starts at a cursor taken mid-way, see the same facts.
    assert all_facts(admin, 1000) == facts
    mid = facts[len(facts) // 2]
    rest = admin.get(f"/v1/analytics/facts?after={mid['cursor']}&limit=1000").json["facts"]
    assert rest == facts[len(facts) // 2 + 1 :]
    # A bare index as cursor: after every fact of that entry.
    after_entry = admin.get(f"/v1/analytics/facts?after={mid['index']}&limit=1000").json["facts"]
    assert after_entry == [f for f in facts if f["index"] > mid["index"]]


def test_every_fact_names_entries_that_exist_and_the_block_that_sealed_it(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    admin = reader(app, settings, "admin")
    blocks = admin.get("/v1/blocks?from=0&limit=1000").json["blocks"]
    sizes = {b["header"]["tree_size"]: b["header"]["first_index"] for b in blocks}
    index_of = {}
    for f in all_facts(admin, 100):
        assert f["tree_size"] in sizes, "tree_size is not the size of a block"
        assert sizes[f["tree_size"]] <= f["index"] < f["tree_size"], "the fact's entry is not in that block"
        assert 1 <= len(f["entries"]) <= 3
        for e in f["entries"]:
            if e not in index_of:
                resp = admin.get(f"/v1/entries/{e}")
                assert resp.status_code == 200, e
                index_of[e] = resp.json["index"]
            assert index_of[e] <= f["index"], "a fact names an entry sealed after it"
    assert len(index_of) > 50


def test_the_cursor_is_stable_across_a_restart(demo: tuple[Flask, Settings]) -> None:
    from api import create_app

    app, settings = demo
    before = all_facts(reader(app, settings, "admin"), 50)
    restarted = create_app(settings, background_sealing=False)
    try:
        c = reader(restarted, settings, "admin")
        assert all_facts(c, 50) == before
        cut = before[17]["cursor"]
        assert c.get(f"/v1/analytics/facts?after={cut}&limit=1000").json["facts"] == before[18:]
    finally:
        restarted.extensions["filiera"].store.dispose()


def test_ndjson_pages_carry_the_same_facts(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    admin = reader(app, settings, "admin")
    page = admin.get("/v1/analytics/facts?limit=20&after=30").json
    for how in ({"query": "&format=ndjson", "headers": {}}, {"query": "", "headers": {"Accept": NDJSON}}):
        resp = admin.get("/v1/analytics/facts?limit=20&after=30" + how["query"], headers=how["headers"])
        assert resp.status_code == 200 and resp.mimetype == NDJSON
        lines = [json.loads(x) for x in resp.data.decode().splitlines()]
        assert lines == page["facts"]
        assert resp.headers["Filiera-Next-Cursor"] == page["next"]


def test_kinds_filter_the_feed(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    admin = reader(app, settings, "admin")
    facts = all_facts(admin, 1000)
    only = all_facts(admin, 9, kind="payment,contract")
    assert only == [f for f in facts if f["kind"] in ("payment", "contract")]


# --- agreement with the independent model ---------------------------------------------


def test_facts_and_kpis_agree_with_figures_computed_from_the_export(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    admin = reader(app, settings, "admin")
    expected = expected_facts(bundle(admin))
    served = all_facts(admin, 100)
    assert_same_facts(served, expected)
    # The demo's story shows in the figures: late deliveries, one refused pallet, payments.
    overall = admin.get("/v1/analytics/kpis").json["groups"]
    assert len(overall) == 1 and overall[0]["group"] == {}
    assert 0 < overall[0]["on_time_rate"] < 1 and overall[0]["rejected"] == 1
    assert overall[0]["days_to_pay_median"] > 0 and overall[0]["certified_share"] == pytest.approx(1.0)
    for group_by in ([], *([d] for d in DIMENSIONS), ["customer", "month"], ["supplier", "region", "product"]):
        resp = admin.get(f"/v1/analytics/kpis?group_by={','.join(group_by)}")
        assert resp.status_code == 200
        assert resp.json["group_by"] == group_by
        assert_same_kpis(resp.json, expected_kpis(expected, group_by), group_by)


def test_date_filters_select_the_facts_of_those_days(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    admin = reader(app, settings, "admin")
    expected = expected_facts(bundle(admin))
    days = sorted({f["day"] for f in expected})
    first, last = days[len(days) // 4], days[3 * len(days) // 4]
    inside = [f for f in expected if first <= f["day"] <= last]
    assert 0 < len(inside) < len(expected)
    resp = admin.get(f"/v1/analytics/kpis?group_by=customer&from={first}&to={last}")
    assert_same_kpis(resp.json, expected_kpis(inside, ["customer"]), ["customer"])


# --- visibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["tenuta-coratina", "oleificio-sud", "mercato-milano"])
def test_members_see_only_facts_over_entries_they_may_see(demo: tuple[Flask, Settings], who: str) -> None:
    app, settings = demo
    admin, member = reader(app, settings, "admin"), reader(app, settings, who)
    everything = all_facts(admin, 1000)
    visible: dict[str, bool] = {}
    for f in everything:
        for e in f["entries"]:
            if e not in visible:
                visible[e] = member.get(f"/v1/entries/{e}").status_code == 200
    mine = [f for f in everything if all(visible[e] for e in f["entries"])]
    assert 0 < len(mine) < len(everything)
    assert all_facts(member, 13) == mine
    for group_by in (["supplier"], ["customer", "month"]):
        resp = member.get(f"/v1/analytics/kpis?group_by={','.join(group_by)}")
        assert_same_kpis(resp.json, expected_kpis(mine, group_by), group_by)


def test_a_supplier_sees_only_its_own_figures(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    grove = reader(app, settings, "tenuta-coratina")
    groups = grove.get("/v1/analytics/kpis?group_by=supplier").json["groups"]
    assert [g["group"]["supplier"] for g in groups if g["shipments"]] == ["tenuta-coratina"]
    assert all(g["group"]["supplier"] == "tenuta-coratina" or g["group"]["supplier"] is None or g["shipments"] == 0 for g in groups)
    resp = grove.get("/v1/analytics/export/payment")
    assert resp.status_code == 200
    rows = list(csv.DictReader(io.StringIO(resp.data.decode())))
    assert rows and {r["supplier"] for r in rows} == {"tenuta-coratina"}


# --- exports ------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["shipment", "dwell", "delivery", "contract", "payment"])
def test_csv_and_parquet_exports_parse_back_to_the_facts(demo: tuple[Flask, Settings], table: str) -> None:
    from arro3.io import read_parquet

    app, settings = demo
    admin = reader(app, settings, "admin")
    facts = [f for f in all_facts(admin, 1000) if f["kind"] == table]
    days = sorted({f["day"] for f in facts})
    first, last = days[1], days[-2]
    want = [f for f in facts if first <= f["day"] <= last]
    assert want

    resp = admin.get(f"/v1/analytics/export/{table}?from={first}&to={last}")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"] == f"attachment; filename={table}-{first}-{last}.csv"
    rows = list(csv.DictReader(io.StringIO(resp.data.decode("utf-8"))))
    assert [(int(r["index"]), int(r["seq"])) for r in rows] == [(f["index"], f["seq"]) for f in want]
    for r, f in zip(rows, want):
        assert r["entries"].split() == f["entries"] and int(r["tree_size"]) == f["tree_size"] and r["day"] == f["day"]
        for k, v in f.items():
            if k in ("cursor", "kind", "index", "seq", "tree_size", "entries", "day"):
                continue
            text = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
            if isinstance(v, float):
                assert float(r[k]) == v
            else:
                assert r[k] == text, (k, r[k], v)

    resp = admin.get(f"/v1/analytics/export/{table}?format=parquet&from={first}&to={last}")
    assert resp.status_code == 200 and resp.mimetype == "application/vnd.apache.parquet"
    parsed = read_parquet(io.BytesIO(resp.data)).read_all()
    columns = {name: col.to_pylist() for name, col in zip(parsed.column_names, parsed.columns)}
    assert columns["index"] == [f["index"] for f in want]
    assert columns["entries"] == [f["entries"] for f in want]
    assert columns["day"] == [date.fromisoformat(f["day"]) for f in want]
    for k in want[0]:
        if k in ("cursor", "kind", "index", "seq", "tree_size", "entries", "day"):
            continue
        if k.endswith("_at"):
            # Times are UTC timestamps (microseconds).
            assert columns[k] == [None if f[k] is None else datetime.fromisoformat(f[k].replace("Z", "+00:00")) for f in want], k
        else:
            assert columns[k] == [f[k] for f in want], k


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, status, code",
    [
        ("/v1/analytics/facts?after=12.x", 400, "invalid_page"),
        ("/v1/analytics/facts?after=-1", 400, "invalid_page"),
        ("/v1/analytics/facts?limit=0", 400, "invalid_page"),
        ("/v1/analytics/facts?limit=100000", 400, "invalid_page"),
        ("/v1/analytics/facts?kind=shipment,nope", 400, "invalid_page"),
        ("/v1/analytics/facts?colour=red", 400, "invalid_page"),
        ("/v1/analytics/kpis?group_by=colour", 400, "invalid_analytics_query"),
        ("/v1/analytics/kpis?group_by=month,month", 400, "invalid_analytics_query"),
        ("/v1/analytics/kpis?from=2026-02-30", 400, "invalid_analytics_query"),
        ("/v1/analytics/kpis?from=2026-03-01&to=2026-02-01", 400, "invalid_analytics_query"),
        ("/v1/analytics/export/shipment?format=xlsx", 400, "invalid_analytics_query"),
        ("/v1/analytics/export/lots", 404, "route_not_found"),
    ],
)
def test_bad_queries_are_refused_with_their_code(demo: tuple[Flask, Settings], path: str, status: int, code: str) -> None:
    app, settings = demo
    resp = reader(app, settings, "admin").get(path)
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json" and resp.json["code"] == code


@pytest.mark.parametrize("path", ["/v1/analytics/facts", "/v1/analytics/kpis", "/v1/analytics/export/shipment"])
def test_analytics_are_for_members(demo: tuple[Flask, Settings], path: str) -> None:
    app, settings = demo
    resp = reader(app, settings, "admin").get(path, unsigned=True)
    assert resp.status_code == 401 and resp.json["code"] == "signature_required"
