"""docs/analytics.md runs as written: its shell commands against a fresh demo ledger served
as `make run` serves it, and every `filiera` command line in it exists."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

from .gen_vectors import ROOT
from .test_docs import _clean_env, _command_lines, demo_server  # noqa: F401  (the fixture)

DOC = ROOT / "docs" / "analytics.md"
_SH = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_URL = "URL=http://127.0.0.1:8000"


def test_the_analytics_doc_runs_against_a_demo_ledger(demo_server: tuple[Path, int]) -> None:  # noqa: F811
    workdir, port = demo_server
    script = _SH.findall(DOC.read_text(encoding="utf-8"))[0]
    assert script.count(_URL) == 1
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script.replace(_URL, f"URL=http://127.0.0.1:{port}")],
        cwd=workdir, env=_clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    var = workdir / "var"
    page = json.loads((var / "facts.json").read_text(encoding="utf-8"))
    assert len(page["facts"]) == 2 and page["next"] == page["facts"][-1]["cursor"]
    groups = {g["group"]["customer"]: g for g in json.loads((var / "kpis.json").read_text(encoding="utf-8"))["groups"]}
    assert groups["mercato-milano"]["rejected"] == 1
    assert 0 < groups["feinkost-muenchen"]["on_time_rate"] < 1
    grove = json.loads((var / "kpis-grove.json").read_text(encoding="utf-8"))["groups"]
    assert grove and {g["group"]["supplier"] for g in grove if g["shipments"]} == {"tenuta-coratina"}
    with (var / "shipments.csv").open(encoding="utf-8", newline="") as f:
        shipments = list(csv.DictReader(f))
    assert sum(g["shipments"] for g in groups.values()) == len(shipments)
    assert (var / "deliveries.parquet").read_bytes()[:4] == b"PAR1"
    assert json.loads((var / "verify.json").read_text(encoding="utf-8"))["ok"] is True


def _resolve(args: list[str]) -> str:
    """The command path of one `filiera` line (through groups such as `facts`), checking that
    every option it uses exists."""
    import click

    from api.cli import cli

    command: click.Command = cli
    path: list[str] = []
    words = iter(args)
    for word in words:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            path.append(word)
        elif word.startswith("--"):
            options = {o for p in command.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}
            assert word.split("=", 1)[0] in options, f"`filiera {' '.join(path)}` has no option {word}"
    return " ".join(path)


def test_the_documented_command_lines_exist() -> None:
    lines = _command_lines(DOC)
    assert len(lines) == 8
    assert {_resolve(args) for args in lines} == {"get", "facts export", "facts rebuild", "verify", "dashboard-link"}
