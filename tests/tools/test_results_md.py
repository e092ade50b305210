"""bench/results_md.py's splice: a partial bench run replaces only its own subsection of the
generated part of bench/results.md, marked with its run, and leaves the rest as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.results_md import BEGIN, END, splice_sections

BEFORE = f"""# results

{BEGIN}
## Benchmark run of 2026-01-01T00:00:00+00:00

### Offline audit throughput and memory (`filiera audit`)

old audit table

### Provenance on a realistic demo ledger

| backend | tree size | entries | p50 / p95 / p99 ms |
|---|---|---|---|
| SQLite | 10 | 5 | 9.0 / 9.0 / 9.0 ❌ |

### Load: public GETs and signed POSTs (TESTPLAN T14)

old load table
{END}

## Observations (hand-written)

kept
"""


def _run() -> dict[str, Any]:
    return {
        "started": "2026-02-02T00:00:00+00:00",
        "config": {"only": "provenance"},
        "targets": {"provenance_p95_ms": 20},
        "provenance": {"sqlite": {"tree_size": 1000, "entries": 23, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}},
    }


def test_only_the_named_subsection_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(BEFORE, encoding="utf-8")
    assert splice_sections(_run(), path, ["provenance"]) == ["### Provenance on a realistic demo ledger"]
    after = path.read_text(encoding="utf-8")
    assert "| SQLite | 1,000 | 23 | 1.0 / 2.0 / 3.0 ✅ |" in after
    assert "9.0 / 9.0 / 9.0" not in after
    assert "`python -m bench --only provenance` of 2026-02-02T00:00:00+00:00" in after
    # Everything else is as it was, in its place.
    for kept in ("## Benchmark run of 2026-01-01", "old audit table", "old load table", "kept"):
        assert kept in after
    assert after.index("old audit table") < after.index("1.0 / 2.0") < after.index("### Load:") < after.index(END)


@pytest.mark.parametrize("sections, message", [
    (["nosuch"], "no subsection"),
    (["audit"], "has no 'audit' figures"),
])
def test_refusals_leave_the_file_alone(tmp_path: Path, sections: list[str], message: str) -> None:
    path = tmp_path / "results.md"
    path.write_text(BEFORE, encoding="utf-8")
    with pytest.raises(SystemExit, match=message):
        splice_sections(_run(), path, sections)
    assert path.read_text(encoding="utf-8") == BEFORE
