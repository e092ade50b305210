"""The public product page (issue #5) and its view counts (issue #6), through HTTP on SQLite and
PostgreSQL: what a shopper sees and never sees, the security headers, accessibility structure,
HTML 404s, GS1 Digital Link with its check digit, QR codes that encode the label URL, counts
per day and lot that hold nothing about the viewer, and the members' engagement figures.

The page in a real browser is tests/browser/test_product_page.py.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import segno
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api import create_app
from api.routes import public
from ledger.clock import FixedClock
from ledger.config import Settings
from ledger.errors import ConfigurationError, IntegrityFailure, InvalidProof
from ledger.notes import verifier_for
from ledger.page import verify_view
from ledger.storage import schema as t
from ledger.storage.public import count_view
from ledger.storage.stories import read_view

from .. import conftest, pngs
from ..conftest import BACKENDS, LedgerEnv
from ..factories import Member, post_batch, post_entry, register
from ..supply import STORY_CAST, attestation, fresh_ledger, lineage_story, lot, origin, payment

GTIN = "09506000134352"
OTHER_GTIN = "04006381333931"
CAST = {**STORY_CAST, "other": ["retailer"]}


@dataclass
class World:
    env: LedgerEnv
    app: Flask
    client: FlaskClient
    clock: FixedClock
    m: dict[str, Member]
    stories: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ok(self, envelope: dict[str, Any]) -> str:
        resp = post_entry(self.client, envelope)
        assert resp.status_code == 201, resp.json
        entry_id: str = resp.json["id"]
        return entry_id

    def get(self, path: str, **kw: Any) -> Any:
        """An anonymous GET, as a shopper's phone sends it; the response is closed, as a WSGI
        server closes it once sent (which is when a view is counted)."""
        return self.client.get(path, unsigned=True, buffered=True, **kw)  # type: ignore[call-arg]

    def today(self) -> str:
        return self.clock.now().date().isoformat()

    def gtin_lot(self) -> str:
        """A new bottled lot whose product carries the GTIN, its organic claim attested."""
        g = uid("G")
        o = self.ok(origin(self.m["farm"], lot(g, f"extra virgin olive oil 750 ml, GTIN {GTIN}", "600", "bottle"), claims=["organic"]))
        self.ok(attestation(self.m["cert"], o, ["organic"]))
        return g


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with fresh_ledger(request.param, tmp_path_factory.mktemp(f"page-{request.param}")) as env:
        clock = FixedClock(datetime.now(timezone.utc))
        app = create_app(env.settings, clock=clock, background_sealing=False)
        app.test_client_class = conftest.SigningClient
        client = app.test_client()
        client.signer = env.admin  # type: ignore[attr-defined]
        members = {pid: Member(pid) for pid in CAST}
        resp = post_batch(client, [register(env.admin, members[pid], roles) for pid, roles in CAST.items()])
        assert [r["status"] for r in resp.json["results"]] == [201] * len(CAST), resp.json
        w = World(env, app, client, clock, members)
        # A story sold under a contract and paid for: the page must show neither.
        cid = uid("C")
        s = lineage_story(w.ok, members, uid("P"), steps=2, contract_id=cid)
        s["contract"], s["payment"] = cid, w.ok(payment(members["shop"], members["bottler"], contract=cid))
        w.stories["sold"] = s
        # A bottled lot whose product carries a GTIN, and one that is still on its way.
        w.stories["gtin"] = {"final": w.gtin_lot()}
        w.stories["transit"] = lineage_story(w.ok, members, uid("T"), steps=1, receive_last=False)
        try:
            yield w
        finally:
            svc = app.extensions["filiera"]
            svc.sealer.stop_background()
            svc.store.dispose()


# --- reading the HTML ----------------------------------------------------------------------


_BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "dt", "dd", "div", "section", "ul", "ol", "header",
           "footer", "main", "figcaption", "pre", "title", "article", "dl", "figure"}


class Page(HTMLParser):
    """The parts of a page the tests look at: headings, landmarks, links, images, the text of
    each section and of elements with a class."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.headings: list[tuple[int, str]] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.sections: dict[str, str] = {}
        self.classes: dict[str, list[str]] = {}
        self.text = ""
        self._open: list[tuple[str, dict[str, str], int]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in _BLOCKS:
            self.text += " "
        if tag == "html":
            self.lang = a.get("lang")
        self.tags.append((tag, a))
        if tag not in ("meta", "link", "img", "br", "path", "input"):
            self._open.append((tag, a, len(self.text)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.text += " "
        if tag not in (name for name, _, _ in self._open):
            return  # a void or self-closing element (<img>, <path/>)
        while self._open:
            name, a, start = self._open.pop()
            if name == tag:
                chunk = " ".join(self.text[start:].split())
                if re.fullmatch(r"h[1-6]", tag):
                    self.headings.append((int(tag[1]), chunk))
                if tag == "section":
                    self.sections[a.get("aria-labelledby", "")] = chunk
                for cls in a.get("class", "").split():
                    self.classes.setdefault(cls, []).append(chunk)
                break

    def handle_data(self, data: str) -> None:
        self.text += data

    def all(self, tag: str) -> list[dict[str, str]]:
        return [a for name, a in self.tags if name == tag]


def page_of(resp: Any) -> Page:
    assert resp.status_code == 200, resp.data[:500]
    assert resp.mimetype == "text/html"
    return Page(resp.get_data(as_text=True))


def provenance(w: World, lot_id: str) -> dict[str, Any]:
    resp = w.client.get(f"/v1/lots/{lot_id}/provenance", unsigned=True)  # type: ignore[call-arg]
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json
    return body


# --- what the page shows -------------------------------------------------------------------


def test_the_page_tells_origin_claims_journey_and_the_checkpoint_it_was_verified_against(world: World) -> None:
    s = world.stories["sold"]
    page = page_of(world.get(f"/p/{s['final']}"))
    view = provenance(world, s["final"])
    assert page.headings[0] == (1, "oil")
    assert s["final"] in page.classes["eyebrow"][0]
    assert "held by shop S.p.A." in page.classes["facts"][0]
    origin_text = page.sections["origin-h"]
    for producer in ("farm S.p.A.", "farm2 S.p.A."):
        assert producer in origin_text
    assert "Puglia, IT" in origin_text and "15 Oct 2026" in origin_text
    assert "organic: attested by cert S.p.A." in origin_text
    assert page.sections["claims-h"].startswith("Claims organic, attested by cert S.p.A.")
    # One event per origin, attestation, handoff and transform, in log order; receipts are told
    # by their handoffs.
    told = [e for e in view["entries"] if e["type"] != "receipt"]
    kinds = {"origin": "event-harvest", "attestation": "event-attestation", "handoff": "event-handoff", "transform": "event-transform"}
    events = [a["class"].split()[1] for a in page.all("li") if "event" in a.get("class", "").split()]
    assert events == [kinds[e["type"]] for e in told]
    assert "Received on the spot: both signed the handover." in page.sections["journey-h"]
    assert "Cold pressing at Frantoio: 3 lots made into oil, 100 l" in page.sections["journey-h"]
    # The badge names the checkpoint the page's entries were checked against, and links to how
    # to verify it; that section links the signed certificate and gives the verifier key.
    n = view["checkpoint"]["tree_size"]
    assert page.classes["ok"][0] == f"Verified against checkpoint {n}"
    badge = next(a for a in page.all("a") if "badge" in a.get("class", ""))
    assert badge["href"] == "#verify"
    assert f"checkpoint {n} of ledger {view['ledger']}" in page.sections["verify-h"]
    assert {"href": f"/v1/lots/{s['final']}/certificate"} in page.all("a")
    vkey = world.client.get("/v1/ledger").json["verifier_key"]
    assert f"filiera certificate verify certificate.json --verifier-key {vkey}" in page.text
    assert page.classes["ok"][1] == "Origin certified"


def test_the_journey_names_only_this_lots_lineage(world: World) -> None:
    s = world.stories["sold"]
    a1, a2 = s["harvest"][0], s["harvest"][1]
    page = page_of(world.get(f"/p/{a1}"))
    journey = page.sections["journey-h"]
    assert a2 not in journey and s["made"][0] not in journey
    assert "(lot " + a1 + "), with 1 other lot" in journey  # harvested with A2, and shipped with it
    assert journey.count("with 1 other lot") == 2
    assert "Cold pressing at Frantoio: 3 lots made into 1 new lot" in journey
    assert "used to make another product" in page.classes["facts"][0]


def test_the_page_shows_no_contract_price_or_payment(world: World) -> None:
    s = world.stories["sold"]
    html = world.get(f"/p/{s['final']}").get_data(as_text=True)
    for secret in (s["contract"], s["payment"], "4250.00", "2026-12-20", "deliver_by", "price"):
        assert secret not in html, secret


def test_a_lot_in_transit_is_not_certified_and_says_why(world: World) -> None:
    s = world.stories["transit"]
    page = page_of(world.get(f"/p/{s['final']}"))
    assert "in transit" in page.classes["facts"][0]
    assert page.classes["warn"] == ["Not certified"]
    assert page.classes["notice"][0].endswith(f"lot {s['final']} was shipped and its arrival is not recorded yet")
    assert "In transit: no receipt recorded yet." in page.sections["journey-h"]
    assert page.classes["ok"][0].startswith("Verified against checkpoint")


def test_a_page_whose_entries_do_not_verify_vouches_for_nothing(world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    s = world.stories["sold"]
    real = read_view

    def altered(store: Any, lot_id: str, **kw: Any) -> Any:
        view = real(store, lot_id, **kw)
        first = view.entries[0]
        env = {**first.envelope, "payload": {**first.envelope["payload"], "site": "Somewhere else"}}
        return dataclasses.replace(view, entries=(dataclasses.replace(first, envelope=env), *view.entries[1:]))

    monkeypatch.setattr(public, "read_view", altered)
    with caplog.at_level(logging.ERROR, logger="filiera.public"):
        page = page_of(world.get(f"/p/{s['final']}"))
    assert "Verified against" not in page.text
    assert page.classes["warn"][0] == "Not verified against a checkpoint"
    assert "could not check its entries" in page.sections["verify-h"]
    assert any("does not verify" in r.getMessage() for r in caplog.records)


def test_verify_view_refuses_an_altered_entry_root_or_key(world: World) -> None:
    store = world.app.extensions["filiera"].store
    view = read_view(store, world.stories["sold"]["final"], viewer=None)
    assert view is not None
    verifier = verifier_for(view.ledger, world.env.ledger_key.public_key.raw)
    assert verify_view(view, verifier) == view.tree_size
    e = view.entries[2]
    flipped = dataclasses.replace(e, hashes=(bytes([e.hashes[0][0] ^ 1]) + e.hashes[0][1:], *e.hashes[1:]))
    with pytest.raises(InvalidProof):
        verify_view(dataclasses.replace(view, entries=(*view.entries[:2], flipped, *view.entries[3:])), verifier)
    with pytest.raises(InvalidProof):
        verify_view(dataclasses.replace(view, root="00" * 32), verifier)
    stranger = verifier_for(view.ledger, Member("x").key.public_key.raw)
    with pytest.raises(IntegrityFailure):
        verify_view(view, stranger)


# --- headers, structure, errors ------------------------------------------------------------


def check_headers(resp: Any) -> None:
    csp = resp.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "script-src" not in directives and "unsafe-inline" not in csp
    assert directives["style-src"] == directives["img-src"] == "'self'"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in resp.headers


def test_security_headers_and_no_script_cookie_or_outside_resource(world: World) -> None:
    s = world.stories["sold"]
    for path in (f"/p/{s['final']}", f"/p/{s['final']}/qr.svg", f"/p/{s['final']}/qr.png", "/p/no-such-lot"):
        check_headers(world.get(path))
    resp = world.get(f"/p/{s['final']}", headers={"Cookie": "session=abc"})
    page = page_of(resp)
    assert page.all("script") == [] and page.all("iframe") == [] and page.all("form") == []
    assert not any(k.startswith("on") for _, a in page.tags for k in a)  # no inline handlers
    assert not any("style" in a for _, a in page.tags)  # CSP forbids inline styles
    for tag, attr in (("link", "href"), ("img", "src")):
        for a in page.all(tag):
            if a.get("rel") != "canonical":
                assert a[attr].startswith("/") and not a[attr].startswith("//"), a
    css = world.get("/static/filiera.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    assert "@import" not in css.get_data(as_text=True) and "url(" not in css.get_data(as_text=True)


def test_text_from_the_ledger_is_escaped(world: World) -> None:
    x = uid("X")
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "oil"'
    world.ok(origin(world.m["farm"], lot(x, hostile, "1", "l")))
    resp = world.get(f"/p/{x}")
    page = page_of(resp)
    assert page.all("script") == [] and all(a.get("src") != "x" for a in page.all("img"))
    assert page.headings[0] == (1, hostile)  # shown as text, exactly
    assert "&lt;script&gt;" in resp.get_data(as_text=True)


def test_the_page_is_structured_for_assistive_technology(world: World) -> None:
    page = page_of(world.get(f"/p/{world.stories['sold']['final']}"))
    assert page.lang == "en"
    assert [name for name, _ in page.tags if name in ("header", "main", "footer")][:3] == ["header", "main", "header"]
    assert len(page.all("main")) == 1 and page.all("main")[0]["id"] == "main"
    assert {"class": "skip", "href": "#main"} in page.all("a")
    levels = [lv for lv, _ in page.headings]
    assert levels.count(1) == 1 and page.headings[0][0] == 1
    # Headings are closed in document order, so compare the order they were opened in.
    opened = [int(name[1]) for name, _ in page.tags if re.fullmatch(r"h[1-6]", name)]
    assert opened[0] == 1 and all(b <= a + 1 for a, b in zip(opened, opened[1:])), opened
    for img in page.all("img"):
        assert img["alt"].startswith("QR code that opens http")
    for svg in page.all("svg"):
        assert svg["aria-hidden"] == "true"  # the badge icons say nothing the text does not
    sections = page.all("section")
    assert len(sections) == 5 and all(s["aria-labelledby"] for s in sections)
    assert all(any(a.get("id") == s["aria-labelledby"] for _, a in page.tags) for s in sections)
    assert page.all("title") and "oil" in page.text


@pytest.mark.parametrize("path", ["/p/no-such-lot", "/p/-malformed", "/p/a%20b", "/p/no-such-lot/qr.svg", "/p/no-such-lot/qr.png"])
def test_an_unknown_lot_is_an_html_404_that_says_so(world: World, path: str) -> None:
    resp = world.get(path)
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    page = Page(resp.get_data(as_text=True))
    assert page.headings[0] == (1, "Product not found")
    assert page.lang == "en"
    check_headers(resp)


def test_nothing_is_counted_for_a_404(world: World) -> None:
    world.get("/p/never-made-1")
    world.get(f"/01/{GTIN}/10/never-made-1")
    assert counts(world, "never-made-1") == []


# --- GS1 Digital Link ----------------------------------------------------------------------


def test_digital_link_checks_the_check_digit_and_the_lots_gtin(world: World) -> None:
    g, s = world.stories["gtin"]["final"], world.stories["sold"]["final"]
    full = page_of(world.get(f"/01/{GTIN}/10/{g}"))
    assert f"GTIN {GTIN}" in full.classes["eyebrow"][0]
    assert {"rel": "canonical", "href": f"http://localhost/01/{GTIN}/10/{g}"} in full.all("link")
    page_of(world.get(f"/01/{GTIN[1:]}/10/{g}"))  # the GTIN-13 form names the same product
    for path, why in (
        (f"/01/{GTIN[:-1]}3/10/{g}", "check digit"),
        (f"/01/{OTHER_GTIN}/10/{g}", f"not of the product with GTIN {OTHER_GTIN}"),
        (f"/01/0950600013435A/10/{g}", "is not a GTIN"),
        (f"/01/{GTIN}/10/no-such-lot", "No product with lot"),
    ):
        resp = world.get(path)
        assert resp.status_code == 404 and resp.mimetype == "text/html", path
        assert why in resp.get_data(as_text=True), path
    # A lot whose product carries no GTIN answers to any valid one, and names /p/ as canonical.
    other = page_of(world.get(f"/01/{OTHER_GTIN}/10/{s}"))
    assert {"rel": "canonical", "href": f"http://localhost/p/{s}"} in other.all("link")


# --- QR codes ------------------------------------------------------------------------------


def qr_matrix(png: bytes) -> tuple[list[list[int]], pngs.Image]:
    """The modules of a segno PNG (12-pixel modules inside a 4-module quiet zone)."""
    image = pngs.read(png)
    n = image.width // 12 - 8
    assert image.width == image.height == (n + 8) * 12
    quiet = [image.grey(x, y) for y in (0, 47) for x in range(0, image.width, 6)]
    assert min(quiet) > 200, "the quiet zone must be light"
    return [[1 if image.grey((c + 4) * 12 + 6, (r + 4) * 12 + 6) < 128 else 0 for c in range(n)] for r in range(n)], image


def format_information(m: list[list[int]]) -> tuple[str, int]:
    """The error correction level and mask of a QR symbol, from the format information around
    its top-left finder pattern (ISO/IEC 18004 §7.9), checked against the 32 valid BCH codes."""
    bits = 0
    for row, col in [(8, c) for c in range(6)] + [(8, 7), (8, 8), (7, 8)] + [(r, 8) for r in range(5, -1, -1)]:
        bits = bits << 1 | m[row][col]

    def bch(v: int) -> int:
        for i in range(14, 9, -1):
            if v >> i & 1:
                v ^= 0x537 << (i - 10)
        return v

    codes = {((d << 10) | bch(d << 10)) ^ 0x5412: d for d in range(32)}
    assert bits in codes, f"format information {bits:015b} is not a valid BCH code"
    return "MLHQ"[codes[bits] >> 3], codes[bits] & 7


def finder_at(m: list[list[int]], top: int, left: int) -> bool:
    return all(
        m[top + r][left + c] == (0 if r in (1, 5) and 1 <= c <= 5 or c in (1, 5) and 1 <= r <= 5 else 1)
        for r in range(7) for c in range(7)
    )


def test_the_qr_code_encodes_the_label_url(world: World) -> None:
    for lot_id, url in (
        (world.stories["gtin"]["final"], f"http://localhost/01/{GTIN}/10/{world.stories['gtin']['final']}"),
        (world.stories["sold"]["final"], f"http://localhost/p/{world.stories['sold']['final']}"),
    ):
        png = world.get(f"/p/{lot_id}/qr.png")
        assert png.status_code == 200 and png.mimetype == "image/png"
        m, image = qr_matrix(png.data)
        n = len(m)
        assert (n - 17) % 4 == 0 and 1 <= (n - 17) // 4 <= 10
        assert finder_at(m, 0, 0) and finder_at(m, 0, n - 7) and finder_at(m, n - 7, 0)
        level, mask = format_information(m)
        assert level in "MQH"  # at least M: a label survives a scuff
        expected = segno.make(url, error="m", micro=False)
        assert m == [list(row) for row in expected.matrix], "the QR code does not encode " + url
        assert (level, mask) == (expected.error, expected.mask)
        assert image.dpi is not None and round(image.dpi) == 600
        svg = world.get(f"/p/{lot_id}/qr.svg")
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
        root = ET.fromstring(svg.data)
        ns = "{http://www.w3.org/2000/svg}"
        assert root.tag == f"{ns}svg"
        assert root.attrib["width"] == root.attrib["height"] == f"{(n + 8) * 0.5:g}mm"
        assert root.find(f"{ns}title") is not None and root.find(f"{ns}title").text == f"QR code of {url}"  # type: ignore[union-attr]
        assert not any(el.tag.endswith("script") for el in root.iter())


def test_the_qr_code_uses_the_configured_public_url(world: World) -> None:
    app = create_app(dataclasses.replace(world.env.settings, public_url="https://trace.example.com"), background_sealing=False)
    try:
        lot_id = world.stories["gtin"]["final"]
        resp = app.test_client().get(f"/p/{lot_id}/qr.png")
        m, _ = qr_matrix(resp.data)
        url = f"https://trace.example.com/01/{GTIN}/10/{lot_id}"
        assert m == [list(r) for r in segno.make(url, error="m", micro=False).matrix]
        page = Page(app.test_client().get(f"/p/{lot_id}").get_data(as_text=True))
        assert {"rel": "canonical", "href": url} in page.all("link")
    finally:
        app.extensions["filiera"].store.dispose()


# --- view counts (issue #6) ----------------------------------------------------------------


def counts(w: World, lot_id: str) -> list[dict[str, Any]]:
    store = w.app.extensions["filiera"].store
    with store.read() as conn:
        rows = conn.execute(select(t.engagement_daily).where(t.engagement_daily.c.lot == lot_id).order_by(t.engagement_daily.c.day))
        return [dict(r._mapping) for r in rows]


VIEWER = {
    "User-Agent": "Mozilla/5.0 (Phone; Marker-UA-7f3e)",
    "Referer": "https://shop.example/marker-ref-91c2",
    "Cookie": "tracker=marker-cookie-55ab",
    "X-Forwarded-For": "203.0.113.77",
    "Accept-Language": "it-IT",
}
MARKERS = ("Marker-UA-7f3e", "marker-ref-91c2", "marker-cookie-55ab", "203.0.113.77", "198.51.100.23", "it-IT")


def test_views_are_counted_per_day_and_lot_with_nothing_about_the_viewer(world: World) -> None:
    g = world.gtin_lot()
    environ = {"REMOTE_ADDR": "198.51.100.23"}
    for path in (f"/p/{g}", f"/p/{g}", f"/01/{GTIN}/10/{g}"):
        resp = world.get(path, headers=VIEWER, environ_base=environ)
        assert resp.status_code == 200 and "Set-Cookie" not in resp.headers
    world.get(f"/p/{g}/qr.svg", headers=VIEWER)  # printing a label is not a view
    world.client.head(f"/p/{g}", unsigned=True, buffered=True)  # type: ignore[call-arg]
    assert counts(world, g) == [
        {"day": world.today(), "lot": g, "product": f"extra virgin olive oil 750 ml, GTIN {GTIN}",
         "country": "IT", "region": "Puglia", "views": 3},
    ]
    # Nothing about the viewer reached any table of the database, this one or another.
    store = world.app.extensions["filiera"].store
    assert set(t.engagement_daily.c.keys()) == {"day", "lot", "product", "country", "region", "views"}
    with store.read() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                text = " ".join(str(v) for v in row)
                assert not [m for m in MARKERS if m in text], table.name


def test_counts_roll_over_at_midnight_utc(world: World) -> None:
    s = world.gtin_lot()
    world.get(f"/p/{s}")
    first = world.today()
    world.clock.advance(timedelta(days=1))
    try:
        world.get(f"/p/{s}")
        world.get(f"/p/{s}")
        assert [(r["day"], r["views"]) for r in counts(world, s)] == [(first, 1), (world.today(), 2)]
    finally:
        world.clock.advance(timedelta(days=-1))


def test_a_failure_to_count_never_fails_the_page(world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(public, "count_view", broken)
    lot_id = world.stories["sold"]["final"]
    before = counts(world, lot_id)
    with caplog.at_level(logging.WARNING, logger="filiera.public"):
        page_of(world.get(f"/p/{lot_id}"))
    assert counts(world, lot_id) == before
    assert [r.getMessage() for r in caplog.records] == [f"could not count a view of lot {lot_id}: RuntimeError"]


def test_concurrent_views_lose_no_count(world: World) -> None:
    store = world.app.extensions["filiera"].store
    lot_id, day = uid("race"), world.clock.now().date()
    errors: list[BaseException] = []

    def view(n: int) -> None:
        try:
            for _ in range(n):
                count_view(store, day=day, lot=lot_id, product="oil", country="IT", region="Puglia")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=view, args=(25,)) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert [r["views"] for r in counts(world, lot_id)] == [200]


# --- the members' figures ------------------------------------------------------------------


def test_members_read_the_counts_and_nobody_else(world: World) -> None:
    s = world.stories["sold"]["final"]
    for _ in range(2):
        world.get(f"/p/{s}")
    today = world.today()
    resp = world.client.as_member(world.m["farm"]).get(f"/v1/analytics/engagement?lot={s}")  # type: ignore[attr-defined]
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert (body["to"], body["lot"], body["next"]) == (today, s, None)
    assert body["from"] == (world.clock.now().date() - timedelta(days=29)).isoformat()
    assert [(c["day"], c["lot"], c["views"]) for c in body["counts"]] == [(today, s, body["total_views"])]
    assert body["total_views"] >= 2
    assert set(body["counts"][0]) == {"day", "lot", "product", "country", "region", "views"}
    anonymous = world.client.get("/v1/analytics/engagement", unsigned=True)  # type: ignore[call-arg]
    assert anonymous.status_code == 401 and anonymous.mimetype == "application/problem+json"


def test_engagement_pages_with_a_cursor(world: World) -> None:
    lots = sorted(uid("page") for _ in range(3))
    store = world.app.extensions["filiera"].store
    day = world.clock.now().date()
    for lot_id in lots:
        count_view(store, day=day, lot=lot_id, product="oil", country="IT", region="")
    seen: list[str] = []
    query = f"from={day}&to={day}&limit=1"
    total = None
    while True:
        body = world.client.get(f"/v1/analytics/engagement?{query}").json
        total = body["total_views"]
        seen += [c["lot"] for c in body["counts"]]
        if body["next"] is None:
            break
        query = f"from={day}&to={day}&limit=1&after={body['next']}"
    assert seen == sorted(seen) and set(lots) <= set(seen)
    assert total == sum(r["views"] for lot_id in seen for r in counts(world, lot_id) if r["day"] == day.isoformat())


@pytest.mark.parametrize(
    "query,field",
    [("from=2026-02-30", "from"), ("to=tomorrow", "to"), ("from=2026-05-02&to=2026-05-01", "from"),
     ("lot=-bad", "lot"), ("after=nope", "after"), ("limit=0", "limit"), ("limit=1000000", None), ("colour=red", "colour")],
)
def test_bad_engagement_queries_are_refused(world: World, query: str, field: str | None) -> None:
    resp = world.client.get(f"/v1/analytics/engagement?{query}")
    assert resp.status_code == 400 and resp.json["code"] == "invalid_page"
    if field is not None:
        assert field in resp.json.get("fields", [field])


def test_the_openapi_document_describes_the_pages(world: World) -> None:
    spec = world.client.get("/openapi.json").json
    for path in ("/p/{lot}", "/01/{gtin}/10/{lot}"):
        op = spec["paths"][path]["get"]
        assert set(op["responses"]["200"]["content"]) == {"text/html"}
        # An unknown lot gets the HTML page; a path no route matches gets the API's problem.
        assert set(op["responses"]["404"]["content"]) == {"text/html", "application/problem+json"}
        assert "security" not in op
    assert set(spec["paths"]["/p/{lot}/qr.svg"]["get"]["responses"]["200"]["content"]) == {"image/svg+xml"}
    assert set(spec["paths"]["/p/{lot}/qr.png"]["get"]["responses"]["200"]["content"]) == {"image/png"}
    engagement = spec["paths"]["/v1/analytics/engagement"]["get"]
    assert engagement["security"] == [{"memberSignature": []}]


@pytest.mark.parametrize("value", ["trace.example.com", "ftp://trace.example.com", "https://", "https://t.example/?q=1", "https://t.example/#x"])
def test_a_public_url_that_cannot_go_on_a_label_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"FILIERA_PUBLIC_URL": value})
    assert Settings.from_env({"FILIERA_PUBLIC_URL": "https://trace.example.com/"}).public_url == "https://trace.example.com"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2.2 contrast ratio of two colours (#rrggbb)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_text_colours_meet_wcag_aa_contrast(world: World) -> None:
    css = world.get("/static/filiera.css").get_data(as_text=True)
    var = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6});", css))
    assert len(var) >= 10
    white = "#ffffff"
    pairs = {
        "body text": (var["ink"], var["paper"]), "page text": (var["ink"], var["wash"]),
        "muted text": (var["muted"], var["paper"]), "footer": (var["muted"], var["wash"]),
        "links": (var["link"], var["paper"]), "header": (white, var["accent"]),
        "verified badge": (white, var["ok-bg"]), "warning badge": (white, var["warn-bg"]),
        "warning text": (var["warn-ink"], var["paper"]), "notice": (var["ink"], "#fff6ef"),
    }
    low = {name: round(contrast(*pair), 2) for name, pair in pairs.items() if contrast(*pair) < 4.5}
    assert low == {}
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)


# --- docs/privacy.md stays true ------------------------------------------------------------

PRIVACY_DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"


def test_the_privacy_doc_lists_every_table() -> None:
    text = PRIVACY_DOC.read_text(encoding="utf-8")
    table_rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    named = {n for ln in table_rows for n in re.findall(r"`([a-z_]+)`", ln.split("|")[2])}
    assert set(t.metadata.tables) <= named, f"tables missing from docs/privacy.md: {set(t.metadata.tables) - named}"


def test_the_privacy_docs_erasing_statements_run(app: Flask) -> None:
    store = app.extensions["filiera"].store
    day = datetime.now(timezone.utc).date()
    for lot_id in ("EVO-MIL-000001", "OTHER-1"):
        count_view(store, day=day, lot=lot_id, product="oil", country="IT", region="Puglia")
    now = int(datetime.now(timezone.utc).timestamp())
    with store.write() as conn:  # directly: remember_nonce itself prunes now and then
        conn.execute(t.request_nonces.insert(), [
            {"nonce": "n" * 20 + "old", "key_id": "0" * 16, "seen_at": now - 3600},
            {"nonce": "n" * 20 + "new", "key_id": "0" * 16, "seen_at": now - 5},
        ])
    block = PRIVACY_DOC.read_text(encoding="utf-8").split("```sql\n", 1)[1].split("```", 1)[0]
    other = "PostgreSQL" if store.dialect == "sqlite" else "SQLite"
    statements = [ln.split(";")[0] for ln in block.splitlines() if ln.startswith("DELETE") and not ln.endswith(other)]
    assert len(statements) == 5
    with store.write() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    with store.read() as conn:
        assert conn.execute(select(t.engagement_daily)).all() == []
        assert [r.nonce for r in conn.execute(select(t.request_nonces))] == ["n" * 20 + "new"]
