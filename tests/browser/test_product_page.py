"""The public product page in a real browser (issue #5): Debian's headless Chromium loads the
page from `filiera serve` over a demo ledger (`filiera demo --lots 20`), at a phone's width
(390x844) and a desktop's (1280x800).

The screenshots are kept in tests/artifacts/ (git-ignored; the path is printed) for people to
look at. The test asserts what can be asserted without eyes: each PNG has the window's size,
is not blank, shows the stylesheet's header colour (so the Content-Security-Policy let the
stylesheet load) and, on the phone, the green of the verified badge above the fold; and the DOM
Chromium built names the lot, its origin and the badge.

`.ci/run` installs Chromium and sets FILIERA_REQUIRE_CHROMIUM=1, so in CI a missing browser
fails these tests; elsewhere they are skipped without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import pngs
from ..cli.conftest import Server, on, run, start_server, stop

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LOT = "EVO-MIL-000001"  # the demo's first bottling for its Milan retailer
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
HEADER = (0x2F, 0x5D, 0x2A)  # --accent in api/static/filiera.css
BADGE = (0x1F, 0x6B, 0x35)  # --ok-bg


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("FILIERA_REQUIRE_CHROMIUM") == "1":
        pytest.fail("Chromium is required here (FILIERA_REQUIRE_CHROMIUM=1): apt-get install chromium")
    pytest.skip("Chromium is not installed (apt-get install chromium)")


def browse(tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Headless Chromium, isolated: its own profile, no network beyond the URL it is given."""
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    chromium()
    root = tmp_path_factory.mktemp("browser")
    data, url = root / "data", f"sqlite:///{root / 'filiera.db'}"
    result = run([*on(data, url), "demo", "--lots", "20"])
    assert result.exit_code == 0, result.stderr
    srv = start_server(data, url, root, workers=1)
    try:
        yield srv
    finally:
        stop(srv.process)


def colours_near(image: pngs.Image, colour: tuple[int, ...], *, rows: range, tolerance: int = 6) -> int:
    return sum(
        1
        for y in rows
        for x in range(0, image.width, 2)
        if all(abs(a - b) <= tolerance for a, b in zip(image.pixel(x, y)[:3], colour))
    )


@pytest.mark.parametrize("device", sorted(SIZES))
def test_screenshots_at_phone_and_desktop_widths(server: Server, tmp_path: Path, device: str) -> None:
    width, height = SIZES[device]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"product-page-{device}-{width}x{height}.png"
    shot.unlink(missing_ok=True)
    browse(tmp_path, f"--window-size={width},{height}", f"--screenshot={shot}", f"{server.url}/p/{LOT}")
    print(f"\nscreenshot kept at {shot}")
    image = pngs.read(shot.read_bytes())
    assert (image.width, image.height) == (width, height)
    greys = [image.grey(x, y) for y in range(0, height, 4) for x in range(0, width, 4)]
    mean = sum(greys) / len(greys)
    variance = sum((g - mean) ** 2 for g in greys) / len(greys)
    assert variance > 500, f"the screenshot looks blank (luma variance {variance:.0f})"
    colours = {image.pixel(x, y)[:3] for y in range(0, height, 3) for x in range(0, width, 3)}
    assert len(colours) > 32, "too few colours for a page of text, badges and a QR code"
    # The stylesheet loaded: the header band has its colour across the top of the window.
    assert colours_near(image, HEADER, rows=range(2, 12)) > width // 3
    if device == "phone":
        # The verified badge is above the fold on a phone.
        assert colours_near(image, BADGE, rows=range(0, height)) > 500


def test_the_dom_chromium_builds_names_the_lot_its_origin_and_the_badge(server: Server, tmp_path: Path) -> None:
    dom = browse(tmp_path, "--window-size=390,844", "--dump-dom", f"{server.url}/p/{LOT}").stdout.decode()
    assert f'<span class="lot">{LOT}</span>' in dom
    assert "Masseria degli Ulivi" in dom and "Bitonto, Puglia, IT" in dom
    status, view = server.get_json(f"/v1/lots/{LOT}/provenance")
    assert status == 200
    assert 'href="#verify">' in dom
    assert f"Verified against checkpoint {view['checkpoint']['tree_size']}</a>" in dom
    assert "Origin certified" in dom


def test_an_unknown_lot_is_a_page_in_the_browser_too(server: Server, tmp_path: Path) -> None:
    dom = browse(tmp_path, "--window-size=390,844", "--dump-dom", f"{server.url}/p/NO-SUCH-LOT").stdout.decode()
    assert "<h1>Product not found</h1>" in dom and "NO-SUCH-LOT" in dom
