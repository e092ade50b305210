"""TESTPLAN T3's optional atheris item in ``make test``: a bounded session of the differential
fuzz of the proof verifiers (tests/fuzz/proofs.py) must end with 0 crashes and 0 mismatches,
and the same harness must catch a verifier with a planted bug (the negative control: a
harness that never fires proves nothing). ``make fuzz`` runs a longer session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("FILIERA_FUZZ_RUNS", "200000"))

# A verifier that takes equal tree sizes as consistent whatever the roots: the bug TESTPLAN
# T3's "one proof presented for two sizes" and "checkpoint root different from the proof
# root" regressions are about. Planted from outside; ledger.merkle itself is untouched.
PLANTED = """
import sys
import tests.fuzz.proofs as target
real = target.verify_consistency
def planted(**claim):
    if claim["old_size"] == claim["new_size"] and not claim["proof"]:
        return None
    return real(**claim)
target.verify_consistency = planted
target.main(sys.argv)
"""


def _fuzz(tmp_path: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    run = [sys.executable, "-c", code] if code else [sys.executable, "-m", "tests.fuzz.proofs"]
    # -seed fixes the session; crash files go to tmp_path, not the repository.
    return subprocess.run(
        [*run, "-seed=1", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", *args],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )


def test_the_verifiers_agree_with_the_naive_reference(tmp_path: Path) -> None:
    result = _fuzz(tmp_path, f"-runs={RUNS}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_a_planted_bug_is_found(tmp_path: Path) -> None:
    result = _fuzz(tmp_path, f"-runs={RUNS}", code=PLANTED)
    assert result.returncode != 0
    # atheris prints the Python exception on stdout, libFuzzer its summary on stderr.
    assert "Mismatch: verify_consistency said True, the reference False" in result.stdout + result.stderr
    assert list(tmp_path.glob("crash-*")), "libFuzzer keeps the input that found it"


@pytest.mark.parametrize("seed", [2, 3])
def test_other_seeds_find_nothing_either(tmp_path: Path, seed: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.proofs", f"-seed={seed}", f"-runs={RUNS // 4}", f"-artifact_prefix={tmp_path}/"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
