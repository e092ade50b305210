"""``make audit-deps`` decides from pip-audit's JSON report (tests/audit_deps.py): a known
vulnerability fails, and an audit the service could not answer is never a silent pass."""

from __future__ import annotations

from typing import Any

from tests.audit_deps import verdict


def _dep(name: str, *, vulns: list[dict[str, Any]] | None = None, skip: str | None = None) -> dict[str, Any]:
    if skip is not None:
        return {"name": name, "skip_reason": skip}
    return {"name": name, "version": "1.0", "vulns": vulns or []}


NOT_FOUND = "Dependency not found on PyPI and could not be audited: x (1.0)"
EDITABLE = "distribution marked as editable"


def test_clean_environment_passes() -> None:
    code, message = verdict({"dependencies": [_dep("flask"), _dep("pynacl"), _dep("filiera", skip=EDITABLE)]}, required=True)
    assert code == 0
    assert "no known vulnerabilities in 2 audited dependencies" in message


def test_a_known_vulnerability_fails_and_names_the_fix() -> None:
    vuln = {"id": "PYSEC-2099-1", "fix_versions": ["3.1.4"]}
    code, message = verdict({"dependencies": [_dep("flask", vulns=[vuln]), _dep("pynacl")]}, required=False)
    assert code == 1
    assert "VULNERABLE flask 1.0: PYSEC-2099-1 (fixed in 3.1.4)" in message


def test_an_unanswered_audit_is_reported_not_passed() -> None:
    # What this machine's PyPI access gives: every per-version JSON lookup answers 404, and
    # pip-audit alone would print "No known vulnerabilities found" and exit 0.
    report = {"dependencies": [_dep("flask", skip=NOT_FOUND), _dep("pynacl", skip=NOT_FOUND), _dep("filiera", skip=EDITABLE)]}
    code, message = verdict(report, required=False)
    assert code == 0
    assert "could not audit 2 of 2 dependencies" in message
    assert "audit NOT performed" in message
    assert verdict(report, required=True)[0] == 2


def test_a_partial_audit_fails_when_required() -> None:
    report = {"dependencies": [_dep("flask"), _dep("pynacl", skip=NOT_FOUND)]}
    assert verdict(report, required=False)[0] == 0
    code, message = verdict(report, required=True)
    assert code == 2
    assert "could not audit 1 of 2" in message
