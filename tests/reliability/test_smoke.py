"""A short T1 run in ``make test``, so that the harness itself is exercised: SQLite, 4 clients,
24 s, a kill every 3-5 s (at least 3). The full run is ``make reliability`` (docs/reliability.md).

Then the negative controls on that real run: the same evidence with one acknowledgement whose
entry is not in the log, and with one stored row duplicated, must turn lost and dup red.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .checker import LogRow, analyse
from .controls import SHORT
from .hammer import run_backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    evidence: dict[str, Any] = {}
    # Seed 7 draws worker, worker, group: three kills fit in 24 s even on a loaded machine,
    # where a restart of the whole server can take 10 s. The same plan as the negative
    # controls (test_controls.py), which run it against broken servers.
    result = run_backend(SHORT, Path(tmp_path_factory.mktemp("t1")), quiet=True, evidence=evidence)
    return result, evidence


def test_a_short_crash_hammer_on_sqlite_loses_nothing(smoke: tuple[dict[str, Any], dict[str, Any]]) -> None:
    result, _ = smoke
    summary = {k: result[k] for k in ("kills", "lost", "dup", "gaps", "forks", "phantom", "bad_proofs", "verify_ok")}
    assert result["ok"], (summary, result["findings"]["examples"], result["verify"], result["kill_log"])
    assert result["kills"] >= 3
    assert result["verify"]["report"]["entries"] == result["findings"]["log_entries"]
    # The run checked something: acknowledgements, and checkpoints to compare.
    outcomes = result["findings"]["outcomes"]
    assert outcomes.get("sealed", 0) > 0 and outcomes.get("queued", 0) > 0, outcomes
    assert result["findings"]["checkpoints_seen"] > 0
    # No kill of a server that holds its append lock makes it answer 5xx: the figure the
    # append-lock controls turn red (controls.py).
    assert result["errors_5xx"] == 0, result["errors_5xx_by_problem"]


def test_the_checker_fires_on_the_real_run(smoke: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, evidence = smoke
    sent, log = evidence["sent"], evidence["log"]
    acknowledged = next(s for s in sent if s.outcome == "sealed")
    # An acknowledgement the log never took: the same receipt under an id that is not stored.
    forged = replace(acknowledged, id=hashlib.sha256(b"acknowledged, never stored").hexdigest())
    f = analyse(**{**evidence, "sent": [*sent, forged]})
    assert (f.lost, f.dup, f.gaps, f.forks, f.bad_proofs) == (1, 0, 0, 0, 0), f.examples
    # A stored row twice (at the next index, so the indices stay contiguous).
    row = next(r for r in log if r.id == acknowledged.id)
    f = analyse(**{**evidence, "log": [*log, LogRow(len(log), row.id, row.leaf_hash)]})
    assert f.dup == 1 and f.lost == 1 and f.gaps == 0, f.examples
