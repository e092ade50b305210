"""docs/security.md cannot rot: every test it cites exists, and every threat cites some.

A citation is ``tests/<path>.py::<function>`` (the function must be defined in that file) or
"case `name`" (a row of the hostile-input table, tests/api/test_hostile_input.py).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
HOSTILE = ROOT / "tests" / "api" / "test_hostile_input.py"
THREATS = [
    "A malicious member",
    "A stolen member key",
    "A compromised server operator",
    "A network attacker",
    "A malicious bundle or evidence file handed to an auditor",
    "A forking ledger (split view)",
]
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
CASE = re.compile(r"\bcase `([a-z0-9-]+)`")


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {part.splitlines()[0]: part for part in parts[1:]}


def test_every_cited_test_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    cited = set(CITATION.findall(text))
    assert len(cited) >= 60, len(cited)
    missing = [
        f"{path}::{name}"
        for path, name in sorted(cited)
        if not (ROOT / path).is_file()
        or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert missing == []


def test_every_cited_hostile_case_exists() -> None:
    cases = set(CASE.findall(DOC.read_text(encoding="utf-8")))
    assert len(cases) >= 10
    table = HOSTILE.read_text(encoding="utf-8")
    assert [c for c in sorted(cases) if f'Case("{c}"' not in table] == []


def test_every_threat_has_defences_shown_and_says_what_is_not_defended() -> None:
    sections = _sections()
    for number, threat in enumerate(THREATS, start=1):
        body = sections[f"{number}. {threat}"]
        assert len(CITATION.findall(body)) >= 4, threat
        assert "**Not defended" in body, threat


def test_a_missing_test_would_be_noticed() -> None:
    """Negative control: the citation pattern finds a made-up name, which no file defines."""
    ((path, name),) = CITATION.findall("see `tests/api/test_problems.py::test_no_such_thing`")
    assert not re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.MULTILINE)
