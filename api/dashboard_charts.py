"""Chart geometry for the members' dashboard: bars as rectangles in an SVG coordinate space,
computed here and drawn by ``templates/dashboard.html`` as inline SVG (no script, no external
resource: the page's Content-Security-Policy allows neither). Text is left to the template,
whose autoescaping keeps ledger strings inert.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bar", "Chart", "columns", "rows"]

WIDTH = 640
HEIGHT = 220
_TOP, _BOTTOM, _LEFT, _RIGHT = 16, 36, 44, 8


@dataclass(frozen=True, slots=True)
class Bar:
    key: str  # what the bar is of: a month, a bin, a region, a day
    label: str  # shown under (or beside) the bar
    text: str  # the value, as shown
    value: float | None  # None: nothing to draw (no data)
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    grid: list[tuple[float, str]]  # (y, label) of horizontal grid lines
    baseline: float
    label_every: int = 1  # label every n-th bar (many days do not fit)


def _grid(top: float, bottom: float, maximum: float, percent: bool) -> list[tuple[float, str]]:
    lines = []
    for i in range(5):
        frac = i / 4
        y = bottom - (bottom - top) * frac
        value = maximum * frac
        lines.append((round(y, 2), f"{value * 100:.0f}%" if percent else f"{value:g}"))
    return lines


def _nice(maximum: float) -> float:
    """A round axis maximum at or above ``maximum`` (at least 1)."""
    if maximum <= 1:
        return 1.0
    if maximum <= 40:
        return float(-(-int(-(-maximum // 1)) // 4) * 4)  # whole numbers on the four grid lines
    step = 10 ** (len(str(int(maximum))) - 1)
    return float(-(-maximum // step) * step) if maximum / step > 2 else float(-(-maximum // (step / 2)) * (step / 2))


def columns(items: list[tuple[str, str, float | None, str]], *, percent: bool = False) -> Chart:
    """Vertical bars of ``(key, label, value, text)``; ``percent`` values are 0..1."""
    top, bottom = _TOP, HEIGHT - _BOTTOM
    maximum = 1.0 if percent else _nice(max((v for _, _, v, _ in items if v is not None), default=0.0))
    slot = (WIDTH - _LEFT - _RIGHT) / max(1, len(items))
    width = max(2.0, slot * 0.7)
    bars = []
    for i, (key, label, value, text) in enumerate(items):
        h = 0.0 if value is None else (bottom - top) * min(value, maximum) / maximum
        x = _LEFT + i * slot + (slot - width) / 2
        bars.append(Bar(key, label, text, value, round(x, 2), round(bottom - h, 2), round(width, 2), round(h, 2)))
    every = max(1, -(-len(items) // 12))
    return Chart(WIDTH, HEIGHT, bars, _grid(top, bottom, maximum, percent), bottom, every)


def rows(items: list[tuple[str, str, float, str]]) -> Chart:
    """Horizontal bars of ``(key, label, share 0..1, text)``, one row each."""
    row_h = 26
    height = max(1, len(items)) * row_h + 8
    left, right = 180, 64
    bars = []
    for i, (key, label, value, text) in enumerate(items):
        w = (WIDTH - left - right) * max(0.0, min(value, 1.0))
        bars.append(Bar(key, label, text, value, left, 4 + i * row_h, round(w, 2), row_h - 8))
    return Chart(WIDTH, height, bars, [], 0)
