"""docs/epcis.md stays true: its command lines name `filiera epcis` commands and options that
exist, and its refusal table lists exactly the codes the mapping gives."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import click

from api.cli import cli
from ledger.epcis import REFUSAL_CODES

from .gen_vectors import ROOT
from .test_docs import _clean_env, demo_server  # noqa: F401  (the README tour's demo ledger)

DOC = ROOT / "docs" / "epcis.md"
_FENCE = re.compile(r"^```(?:sh|bash)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _invocations() -> list[list[str]]:
    found = []
    for block in _FENCE.findall(DOC.read_text(encoding="utf-8")):
        for line in block.splitlines():
            if line.startswith("filiera "):
                words = shlex.split(line, comments=True)
                found.append(words[1 : words.index(">")] if ">" in words else words[1:])
    return found


def _command(args: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def test_command_lines_exist() -> None:
    invocations = _invocations()
    assert len(invocations) == 5
    used = set()
    for args in invocations:
        command, rest = _command(args)
        assert not isinstance(command, click.Group), args
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word in options, f"`filiera {' '.join(args)}`: no option {word}"
        used.add(command.name)
    assert {"import", "export", "get"} <= used


def test_refusal_table_lists_every_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Refusals") :]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert rows == list(REFUSAL_CODES)


def test_export_commands_run_against_the_demo(demo_server: tuple[Path, int]) -> None:
    """The doc's export and get lines, as written, against the demo `make run` serves."""
    from ledger.epcis import validate_document

    workdir, port = demo_server
    lines = [
        line for block in _FENCE.findall(DOC.read_text(encoding="utf-8"))
        for line in block.splitlines() if line.startswith("filiera ") and " import " not in line
    ]
    assert len(lines) == 3
    script = "\n".join(lines).replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
    script = script.replace("filiera ", f"{ROOT / '.venv' / 'bin' / 'filiera'} ")
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=workdir, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    mine = json.loads((workdir / "evo-mil.jsonld").read_text(encoding="utf-8"))
    full = json.loads((workdir / "evo-mil-full.jsonld").read_text(encoding="utf-8"))
    for doc in (mine, full):
        validate_document(doc)
    assert len(mine["epcisBody"]["eventList"]) < len(full["epcisBody"]["eventList"])
    assert json.loads(result.stdout)["epcisBody"] == full["epcisBody"]
