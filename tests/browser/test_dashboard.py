"""The members' dashboard in a real browser: Debian's headless Chromium opens the link
`filiera dashboard-link` prints (a token, then a redirect that keeps it in a cookie) on
`filiera serve` over a demo ledger, after shoppers viewed some product pages.

The screenshot is kept in tests/artifacts/ (git-ignored) for people to look at; the test
asserts what can be asserted without eyes: the PNG has the window's size, is not blank, and
shows the stylesheet's header and bar colours (so the Content-Security-Policy let the
stylesheets load and the inline SVG drew). The DOM Chromium built carries the figures, which
must equal figures computed independently from the ledger's export bundle.
"""

from __future__ import annotations

import http.client
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.bundle import read_records
from ledger.httpsig import sign_request
from ledger.keys import read_key_file

from .. import pngs
from ..analytics_model import expected_facts
from ..cli.conftest import Server, on, run, run_entry_point, start_server, stop
from ..dashboard_model import assert_figures_agree, expected_figures, shown_figures
from .test_product_page import ARTIFACTS, HEADER, browse, chromium, colours_near

AUDITOR = "revisori-associati"
BAR = (0x2F, 0x5D, 0x2A)  # svg.chart .bar: --accent


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, str]]:
    chromium()
    root = tmp_path_factory.mktemp("dashboard")
    data, url = root / "data", f"sqlite:///{root / 'filiera.db'}"
    result = run([*on(data, url), "demo", "--lots", "20"])
    assert result.exit_code == 0, result.stderr
    srv = start_server(data, url, root, workers=1)
    try:
        yield srv, data, url
    finally:
        stop(srv.process)


def view(server: Server, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()


def dashboard_link(server: Server, data: Path, url: str) -> str:
    result = run_entry_point([*on(data, url), "dashboard-link", "--url", server.url, "--key", str(data / f"{AUDITOR}.key")])
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    assert link.startswith(f"{server.url}/dashboard?token=v1.")
    return link


def test_the_dashboard_in_chromium_shows_the_figures_of_the_export(served: tuple[Server, Path, str], tmp_path: Path) -> None:
    server, data, url = served
    for _ in range(4):
        view(server, "/p/EVO-MIL-000001")
    key = read_key_file(data / f"{AUDITOR}.key").signing_key
    req = urllib.request.Request(f"{server.url}/v1/export")
    for name, value in sign_request("GET", f"{server.url}/v1/export", key).items():
        req.add_header(name, value)
    with urllib.request.urlopen(req, timeout=60) as resp:
        records = list(read_records(resp.read().splitlines(keepends=True)))

    dom = browse(tmp_path, "--window-size=1280,900", "--dump-dom", dashboard_link(server, data, url)).stdout.decode()
    assert "<h1>Revisori Associati</h1>" in dom
    shown = shown_figures(dom)
    assert_figures_agree(shown, expected_figures(expected_facts(records)))
    assert shown[("engagement_total", "")] == 4


@pytest.mark.parametrize(("device", "size"), [("desktop", (1280, 1600)), ("phone", (390, 1600))])
def test_screenshot_of_the_dashboard(served: tuple[Server, Path, str], tmp_path: Path, device: str, size: tuple[int, int]) -> None:
    server, data, url = served
    width, height = size
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"dashboard-{device}-{width}x{height}.png"
    shot.unlink(missing_ok=True)
    browse(tmp_path, f"--window-size={width},{height}", f"--screenshot={shot}", dashboard_link(server, data, url))
    print(f"\nscreenshot kept at {shot}")
    image = pngs.read(shot.read_bytes())
    assert (image.width, image.height) == (width, height)
    greys = [image.grey(x, y) for y in range(0, height, 4) for x in range(0, width, 4)]
    mean = sum(greys) / len(greys)
    assert sum((g - mean) ** 2 for g in greys) / len(greys) > 500, "the screenshot looks blank"
    # The stylesheet loaded (the header band), and the charts drew their bars below it.
    assert colours_near(image, HEADER, rows=range(2, 12)) > width // 3
    assert colours_near(image, BAR, rows=range(120, height)) > 2000
