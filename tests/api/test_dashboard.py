"""The members' dashboard (docs/analytics.md, "The dashboard") through HTTP, over a
`filiera demo` ledger on SQLite and PostgreSQL: opened with a member-signed link, its figures
agree with figures computed independently from the audit bundle, a member sees only their own,
and links that should not open do not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ledger.bundle import read_records
from ledger.config import Settings
from ledger.dashboard_token import MAX_LIFETIME, make_token
from ledger.keys import SigningKey, read_key_file

from ..analytics_model import expected_facts
from ..conftest import Db, SigningClient
from ..dashboard_model import assert_figures_agree, expected_figures, shown_figures
from ..factories import Member, key_revoke

ORIGIN = "demo.filiera.example"
AUDITOR, RETAILER = "revisori-associati", "mercato-milano"


@pytest.fixture
def demo(db: Db, tmp_path: Path) -> Iterator[tuple[Flask, Settings]]:
    from api import create_app
    from api.demo import build_demo

    settings = Settings.from_env({}, data_dir=tmp_path / "data", ledger_key_file=tmp_path / "data" / "ledger.key", database_url=db.url, seal_interval=0.0)
    assert build_demo(settings, origin=ORIGIN, if_missing=False, lots=12) is not None
    app = create_app(settings, background_sealing=False)
    app.test_client_class = SigningClient
    yield app, settings
    app.extensions["filiera"].store.dispose()


def key_of(settings: Settings, who: str) -> SigningKey:
    return read_key_file(settings.data_dir / f"{who}.key").signing_key


def link(settings: Settings, who: str, *, minutes: int = 15, ledger: str = ORIGIN) -> str:
    return make_token(key_of(settings, who), ledger=ledger, expires=int(time.time()) + minutes * 60)


def open_dashboard(app: Flask, token: str) -> tuple[FlaskClient, Any]:
    browser = app.test_client()  # keeps cookies, as a browser does
    first = browser.get(f"/dashboard?token={token}", unsigned=True)
    return browser, first


def signed_reader(app: Flask, settings: Settings, who: str) -> SigningClient:
    c = app.test_client()
    assert isinstance(c, SigningClient)
    c.signer = Member(who, key_of(settings, who))
    return c


def test_the_dashboard_agrees_with_figures_computed_from_the_export(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    auditor = signed_reader(app, settings, AUDITOR)
    records = list(read_records(auditor.get("/v1/export").data.splitlines(keepends=True)))
    facts = expected_facts(records)
    # Shoppers look at two product pages: three views and two.
    lots = sorted({f["lot"] for f in facts if f["kind"] == "delivery"})[:2]
    for lot, views in zip(lots, (3, 2)):
        for _ in range(views):
            # buffered: the response is closed, as a WSGI server closes it (then it counts).
            assert app.test_client().get(f"/p/{lot}", unsigned=True, buffered=True).status_code == 200

    browser, first = open_dashboard(app, link(settings, AUDITOR))
    assert first.status_code == 303 and first.headers["Location"] == "/dashboard"
    page = browser.get("/dashboard", unsigned=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    shown = shown_figures(html)
    expected = expected_figures(facts)
    assert len(expected) > 15
    assert_figures_agree(shown, expected)
    assert shown[("engagement_total", "")] == 5
    engagement = auditor.get("/v1/analytics/engagement").json
    assert engagement["total_views"] == 5
    assert {k[1]: v for k, v in shown.items() if k[0] == "day_views"} == {engagement["counts"][0]["day"]: 5}
    # The KPIs the API serves say the same.
    kpis = auditor.get("/v1/analytics/kpis").json["groups"][0]
    assert shown[("on_time_rate", "")] == pytest.approx(kpis["on_time_rate"])
    assert shown[("certified_share", "")] == pytest.approx(kpis["certified_share"])
    assert '<svg class="chart"' in html and html.count("<rect class=\"bar") >= 8


def test_a_member_sees_only_figures_over_what_they_may_see(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    auditor = signed_reader(app, settings, AUDITOR)
    retailer = signed_reader(app, settings, RETAILER)
    records = list(read_records(auditor.get("/v1/export").data.splitlines(keepends=True)))
    everything = expected_facts(records)
    visible: dict[str, bool] = {}
    for f in everything:
        for e in f["entries"]:
            if e not in visible:
                visible[e] = retailer.get(f"/v1/entries/{e}").status_code == 200
    mine = [f for f in everything if all(visible[e] for e in f["entries"])]
    assert 0 < len(mine) < len(everything)

    browser, _ = open_dashboard(app, link(settings, RETAILER))
    shown = shown_figures(browser.get("/dashboard", unsigned=True).get_data(as_text=True))
    assert_figures_agree(shown, expected_figures(mine))


def test_the_link_leaves_a_private_cookie_and_the_page_is_locked_down(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    browser, first = open_dashboard(app, link(settings, RETAILER, minutes=10))
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("filiera_dashboard=v1.")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/dashboard"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http in the test; over https the cookie is Secure
    max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 600
    page = browser.get("/dashboard", unsigned=True)
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "style-src 'self'" in csp
    assert page.headers["Cache-Control"] == "private, no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["X-Frame-Options"] == "DENY"
    html = page.get_data(as_text=True)
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def refused(app: Flask, token: str | None) -> tuple[int, str]:
    c = app.test_client()
    resp = c.get("/dashboard" + (f"?token={token}" if token is not None else ""), unsigned=True)
    html = resp.get_data(as_text=True)
    assert resp.mimetype == "text/html"
    code = html.split('data-code="')[1].split('"')[0] if 'data-code="' in html else ""
    return resp.status_code, code


def test_links_that_should_not_open_do_not(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    key = key_of(settings, RETAILER)
    now = int(time.time())
    good = link(settings, RETAILER)
    head, payload, sig = good.split(".")
    cases = {
        "no-token-no-cookie": (None, "dashboard_token_invalid"),
        "garbage": ("nonsense", "dashboard_token_invalid"),
        "expired": (make_token(key, ledger=ORIGIN, expires=now - 1), "dashboard_token_expired"),
        "too-long-lived": (make_token(key, ledger=ORIGIN, expires=now + MAX_LIFETIME + 120), "dashboard_token_expired"),
        "other-ledger": (link(settings, RETAILER, ledger="other.example"), "dashboard_token_invalid"),
        "unknown-key": (make_token(SigningKey.generate(), ledger=ORIGIN, expires=now + 600), "dashboard_token_invalid"),
        "flipped-signature": (f"{head}.{payload}.{('A' if sig[0] != 'A' else 'B') + sig[1:]}", "dashboard_token_invalid"),
        "swapped-payload": (f"{head}.{link(settings, AUDITOR).split('.')[1]}.{sig}", "dashboard_token_invalid"),
        "v2": (f"v2.{payload}.{sig}", "dashboard_token_invalid"),
    }
    for name, (token, code) in cases.items():
        assert refused(app, token) == (401, code), name


def test_revoking_the_key_closes_its_open_dashboard(demo: tuple[Flask, Settings]) -> None:
    app, settings = demo
    browser, _ = open_dashboard(app, link(settings, RETAILER))
    assert browser.get("/dashboard", unsigned=True).status_code == 200
    member = Member(RETAILER, key_of(settings, RETAILER))
    resp = app.test_client().post("/v1/entries", json=key_revoke(member, member.key_id, origin=ORIGIN))
    assert resp.status_code == 201, resp.json
    again = browser.get("/dashboard", unsigned=True)
    assert again.status_code == 401 and "dashboard_token_invalid" in again.get_data(as_text=True)
    assert "filiera_dashboard=;" in again.headers.get("Set-Cookie", "")  # the cookie is cleared


def test_the_cli_prints_a_link_that_opens(demo: tuple[Flask, Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """`filiera dashboard-link` against the app (its one HTTP call answered in-process)."""
    from click.testing import CliRunner

    import api.commands.dashboard as command
    from api.cli import cli

    app, settings = demo
    c = app.test_client()

    def in_process(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        resp = c.open(url.split("http://ledger.test", 1)[1], method=method, unsigned=True)
        return resp.status_code, json.loads(resp.data)

    monkeypatch.setattr(command, "http_json", in_process)
    args = ["dashboard-link", "--url", "http://ledger.test/", "--key", str(settings.data_dir / f"{RETAILER}.key"), "--minutes", "5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith("http://ledger.test/dashboard?token=v1.")
    browser, first = open_dashboard(app, url.split("token=", 1)[1])
    assert first.status_code == 303 and browser.get("/dashboard", unsigned=True).status_code == 200
    too_long = CliRunner().invoke(cli, [*args[:-1], "721"])
    assert too_long.exit_code == 2
