"""docs/provenance.md runs as written: its shell commands and its Python example, against a
fresh demo ledger served as `make run` serves it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .gen_vectors import ROOT
from .test_docs import _clean_env, demo_server  # noqa: F401  (the fixture)

DOC = ROOT / "docs" / "provenance.md"
_SH = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_PY = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_URL = "URL=http://127.0.0.1:8000"
_PY_URL = 'URL = "http://127.0.0.1:8000"'


def test_the_provenance_doc_runs_against_a_demo_ledger(demo_server: tuple[Path, int]) -> None:  # noqa: F811
    workdir, port = demo_server
    text = DOC.read_text(encoding="utf-8")
    blocks = _SH.findall(text)
    assert len(blocks) == 2
    script = "\n".join(blocks)
    assert script.count(_URL) == 1
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script.replace(_URL, f"URL=http://127.0.0.1:{port}")],
        cwd=workdir, env=_clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["certified", "mercato-milano"]
    assert lines[2].startswith("VALID and CERTIFIED: lot EVO-MIL-000001 (extra virgin olive oil")
    report = json.loads(lines[3])
    assert (report["valid"], report["certified"], report["lot"]) == (True, False, "EVO-MUC-000006")
    assert [f["reason"] for f in report["failures"]] == ["receipt_missing"]
    assert lines[4:] == ["exit 1: valid, but not certified"]
    milano = json.loads((workdir / "var" / "EVO-MIL-000001.milano.json").read_text(encoding="utf-8"))
    assert milano["contracts"][0]["contract"] == "CTR-MIL-000001"
    assert milano["checks"][-1] == {"check": "contract_requirements", "passed": True, "failures": []}

    (example,) = _PY.findall(text)
    assert example.count(_PY_URL) == 1
    run = subprocess.run(
        [sys.executable, "-c", example.replace(_PY_URL, f'URL = "http://127.0.0.1:{port}"')],
        cwd=workdir, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
