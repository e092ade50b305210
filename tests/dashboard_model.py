"""The members' dashboard, independently: the figures it must show, computed from an audit
bundle's facts (``tests/analytics_model.py``, which shares no code with the projection) with
plain Python and ``statistics``, and the figures a dashboard page shows, read from its DOM.
"""

from __future__ import annotations

import statistics
from html.parser import HTMLParser
from typing import Any

# The transit bins docs/analytics.md names, hours [low, high).
BINS = ((0, 6), (6, 12), (12, 24), (24, 48), (48, 96), (96, None))


def expected_figures(facts: list[dict[str, Any]]) -> dict[tuple[str, str], float | None]:
    """(figure, key) -> value, as the dashboard's data-figure attributes name them."""
    ships = [f for f in facts if f["kind"] == "shipment"]
    dels = [f for f in facts if f["kind"] == "delivery"]
    out: dict[tuple[str, str], float | None] = {}

    def rate(group: list[dict[str, Any]]) -> float | None:
        deadline = [s for s in group if s["on_time"] is not None]
        return sum(1 for s in deadline if s["on_time"]) / len(deadline) if deadline else None

    def certified(group: list[dict[str, Any]]) -> float | None:
        quantity = sum(d["quantity"] for d in group)
        return sum(d["quantity"] * d["certified"] for d in group) / quantity if quantity else None

    months = sorted({f["day"][:7] for f in ships + dels})
    for month in months:
        s = [f for f in ships if f["day"][:7] == month]
        d = [f for f in dels if f["day"][:7] == month]
        out[("month_shipments", month)] = len(s)
        out[("month_on_time_rate", month)] = rate(s)
        out[("month_delivered_quantity", month)] = float(sum(x["quantity"] for x in d))
        out[("month_certified_share", month)] = certified(d)
    transit = sorted(s["transit_hours"] for s in ships if s["receipt"] is not None)
    for low, high in BINS:
        out[("transit_bin", str(low))] = sum(
            1 for h in transit if h >= low and (high is None or h < high)
        )
    out[("shipments", "")] = len(ships)
    out[("on_time_rate", "")] = rate(ships)
    out[("certified_share", "")] = certified(dels)
    out[("transit_hours_median", "")] = statistics.median(transit) if transit else None
    out[("transit_hours_p90", "")] = (
        statistics.quantiles(transit, n=10, method="inclusive")[8] if len(transit) > 1 else (transit[0] if transit else None)
    )
    quantity = sum(d["quantity"] for d in dels)
    shares: dict[str, float] = {}
    for d in dels:
        for region, share in d["origins"].items():
            shares[region] = shares.get(region, 0.0) + d["quantity"] * share / quantity
    for region, share in shares.items():
        out[("origin_share", region)] = share
    return out


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[tuple[str, str], str] = {}
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if a.get("data-figure"):
            key = (str(a["data-figure"]), str(a.get("data-key") or ""))
            assert key not in self.found, f"figure {key} shown twice"
            self.found[key] = str(a.get("data-value") or "")


def shown_figures(html: str) -> dict[tuple[str, str], float | None]:
    """(figure, key) -> the exact value a dashboard page carries (None where it shows none)."""
    parser = _Figures()
    parser.feed(html)
    assert parser.scripts == 0, "the dashboard runs no script"
    return {k: (float(v) if v else None) for k, v in parser.found.items()}


def assert_figures_agree(shown: dict[tuple[str, str], float | None], expected: dict[tuple[str, str], float | None]) -> None:
    import pytest

    for key, want in expected.items():
        assert key in shown, f"the dashboard does not show {key}"
        got = shown[key]
        if want is None:
            assert got is None, (key, got)
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (key, got, want)
    # And it shows nothing the independent model does not know about (day views aside).
    extra = {k for k in shown if k not in expected and k[0] not in ("day_views", "engagement_total", "tree_size")}
    assert extra == set(), extra
