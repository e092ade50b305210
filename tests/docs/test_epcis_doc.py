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

from ..conftest import Db
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


def _section(heading: str) -> str:
    """The text under ``heading`` (a line of the doc), up to the next heading of its level."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n" + heading + "\n") + len(heading) + 2
    level = heading.split(" ")[0]
    end = text.find("\n" + level + " ", start)
    return text[start : end if end >= 0 else len(text)]


def _command(args: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def test_command_lines_exist() -> None:
    invocations = _invocations()
    assert len(invocations) == 11
    used = set()
    for args in invocations:
        command, rest = _command(args)
        assert not isinstance(command, click.Group), args
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word in options, f"`filiera {' '.join(args)}`: no option {word}"
        used.add(command.name)
    assert {"import", "export", "get", "verify"} <= used


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
        line for block in _FENCE.findall(_section("## Commands"))
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


def test_worked_example_runs_as_written(db: Db, tmp_path: Path) -> None:
    """The partner import walk-through: its command lines, run against a ledger set up as it
    describes, print exactly the import output it shows, and the export validates."""
    from ledger.epcis import validate_document

    from ..cli.conftest import run, stop
    from ..cli.test_epcis_gs1 import new_ledger

    section = _section("### Worked example: GS1's error declaration and corrective event")
    [commands] = _FENCE.findall(section)
    [shown] = re.findall(r"^```text\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    ledger = new_ledger(tmp_path, db.url)
    try:
        results = []
        for line in commands.splitlines():
            words = []
            for word in shlex.split(line)[1:]:
                if word.startswith(("docs/", "tests/")):
                    word = str(ROOT / word)
                elif word.startswith("var/gs1/"):
                    word = str(ledger.data / word.removeprefix("var/gs1/"))
                elif word.endswith(".jsonld") and "/" not in word:
                    word = str(tmp_path / word)
                words.append(word.replace("http://127.0.0.1:8000", ledger.server.url))
            results.append(run(words))
        assert [r.exit_code for r in results] == [0, 1, 1, 0, 0], [r.stdout + r.stderr for r in results]
        dry, real = results[1], results[2]
        summary = [ln for ln in real.stderr.splitlines() if re.fullmatch(r"\d+ events: .*", ln)]
        assert real.stdout.splitlines() + summary == shown.splitlines(), real.stdout + real.stderr
        assert dry.stdout.replace("not submitted (--dry-run)", "X").splitlines() == [
            re.sub(r"sealed at index \d+", "X", ln) for ln in real.stdout.splitlines()
        ]
        doc = json.loads((tmp_path / "maker-044444.jsonld").read_text(encoding="utf-8"))
        validate_document(doc)
        events = doc["epcisBody"]["eventList"]
        assert [e["type"] for e in events] == ["ObjectEvent", "TransformationEvent"]
        outputs = sorted((q["quantity"], q.get("uom")) for q in events[1]["outputQuantityList"])
        assert outputs == [(1, None), (500, "KGM")]
        products = {e["id"]: {a["id"]: a["attribute"] for a in e["attributes"]} for e in doc["epcisHeader"]["epcisMasterData"]["vocabularyList"][0]["vocabularyElementList"]}
        assert "04012345444445" in json.dumps(products)
    finally:
        stop(ledger.server.process)
