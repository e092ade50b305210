"""The shape STYLE.md asks for: ledger/ never imports Flask; the verifier loads no database."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ledger_never_imports_flask_or_api() -> None:
    modules = sorted((ROOT / "ledger").rglob("*.py"))
    assert len(modules) >= 15
    offenders = {str(p.relative_to(ROOT)) for p in modules if _imports(p) & {"flask", "werkzeug", "api"}}
    assert offenders == set()


def test_only_storage_and_sealing_touch_sqlalchemy() -> None:
    allowed = {"sealing.py"}
    offenders = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "ledger").rglob("*.py")
        if "sqlalchemy" in _imports(p) and p.name not in allowed and "storage" not in p.parts
    }
    assert offenders == set()


def test_importing_the_verifier_loads_neither_flask_nor_sqlalchemy() -> None:
    code = (
        "import sys, ledger.verify, ledger.notes, ledger.merkle; "
        "bad = [m for m in ('flask', 'sqlalchemy', 'werkzeug') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"loaded: {proc.stdout.strip()} {proc.stderr[-500:]}"
