"""One of TESTPLAN T1's server-side negative controls in ``make test`` (the others, on
PostgreSQL, run in ``make reliability``): the smoke run's plan (test_smoke.py, which must lose
nothing) against a server that acknowledges before COMMIT must lose acknowledged entries.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from .controls import CONTROLS, SHORT, judge
from .hammer import Plan, _kinds

pytestmark = pytest.mark.slow


def test_a_server_that_acknowledges_before_commit_loses_entries_under_the_hammer(tmp_path: Path) -> None:
    control = next(c for c in CONTROLS if c.name == "ack_before_commit")
    # The healthy twin of this run is test_smoke.py's: the fault is the only difference.
    assert replace(control.plan, fault="") == SHORT and control.plan.fault == "ack_before_commit"
    from .hammer import run_backend

    result = judge(control, run_backend(control.plan, tmp_path, quiet=True))
    figures = {k: result.get(k) for k in ("kills", "lost", "dup", "gaps", "forks", "fault_installed", "attempts_by_status")}
    # Every server process started (one per start of `filiera serve`) ran with the fault.
    assert result["fault_installed"] >= result["server_starts"] >= 1, figures
    assert result["lost"] > 0, figures
    assert result["turned_red"] and result["control_ok"] and not result["ok"], figures
    # What was lost is what was acknowledged: the log itself still verifies.
    assert result["verify_ok"], result["verify"]


def test_killing_every_postgres_process_needs_a_private_cluster() -> None:
    # The shared server is never signalled: without a cluster of its own, no pg_cluster kill.
    with pytest.raises(ValueError, match="no kind of kill left"):
        _kinds(Plan(backend="postgresql", kinds=("pg_cluster",)))
    assert _kinds(Plan(backend="postgresql", kinds=("pg_cluster",), private_pg=())) == ["pg_cluster"]
    assert "pg_cluster" not in _kinds(Plan(backend="postgresql"))
