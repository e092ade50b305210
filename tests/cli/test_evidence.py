"""`filiera evidence verify` on the named evidence fixtures (TESTPLAN T13), and the fixtures'
own stability: regenerating them gives the committed bytes, and the ledger behind the
revoked-key case fails `filiera verify` at that entry with cause `key_revoked`.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..fixtures.gen_evidence import FIXTURES, Built, build_fixtures
from .conftest import FILIERA, REPO, clean_env, on, run, run_entry_point

EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
CASES: dict[str, dict[str, Any]] = {f["name"]: f for f in EXPECTED["fixtures"]}
VKEY = (FIXTURES / "verifier.vkey").read_text(encoding="ascii").strip()
EVIDENCE_DOC = REPO / "docs" / "evidence.md"


def _args(name: str, *extra: str, lot: bool = True) -> list[str]:
    case = CASES[name]
    args = ["evidence", "verify", "--entry", str(FIXTURES / case["entry"]), "--proof", str(FIXTURES / case["proof"]), "--verifier-key", VKEY]
    if lot and case["lot"]:
        args += ["--lot", case["lot"]]
    return [*args, *extra]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_fixtures(tmp_path_factory.mktemp("evidence-fixtures"))


def test_regenerating_the_fixtures_gives_the_committed_bytes(regenerated: Built) -> None:
    committed = {p.name: p.read_bytes() for p in FIXTURES.iterdir() if p.is_file()}
    assert sorted(regenerated.files) == sorted(committed)
    changed = [name for name, data in regenerated.files.items() if committed[name] != data]
    assert changed == [], (
        f"the code now produces other bytes for {changed}. If intended, run "
        "`.venv/bin/python -m tests.fixtures.gen_evidence` and review the diff; otherwise fix the code."
    )


def test_filiera_verify_names_the_entry_signed_after_its_revocation(regenerated: Built) -> None:
    want = CASES["revoked-key"]["ledger"]
    result = run([*on(regenerated.data_dir, regenerated.database_url), "verify", "--json"])
    assert result.exit_code == want["exit"] == 1, result.stdout
    out = json.loads(result.stdout)
    assert {k: out.get(k) for k in ("code", "reason", "cause", "height", "index", "entry")} == {
        k: want[k] for k in ("code", "reason", "cause", "height", "index", "entry")
    }
    assert "revoked" in out["detail"]


@pytest.mark.parametrize("name", list(CASES))
def test_fixture_verdict_through_the_cli(name: str) -> None:
    case = CASES[name]
    result = run(_args(name, "--json"))
    assert result.exit_code == case["exit"], result.stdout + result.stderr
    out = json.loads(result.stdout)
    if case["verdict"] == "ok":
        assert out["ok"] is True
        assert (out["entry"], out["index"], out["tree_size"], out["lots"]) == (case["entry_id"], case["index"], case["tree_size"], [case["lot"]])
        assert out["origin"] == EXPECTED["origin"]
    else:
        assert (out["ok"], out["code"]) == (False, case["verdict"])
        assert out["detail"]
    assert result.stderr == ""
    text = run(_args(name))
    assert text.exit_code == case["exit"]
    first = text.stdout.splitlines()[0]
    assert first.startswith("OK: entry ") if case["verdict"] == "ok" else first.startswith(f"FAILED: {case['verdict']}: ")


def test_every_fixture_through_the_installed_entry_point() -> None:
    for name, case in CASES.items():
        proc = run_entry_point(_args(name, "--json"))
        assert proc.returncode == case["exit"], (name, proc.stdout, proc.stderr)
        out = json.loads(proc.stdout)
        assert out.get("code", "ok") == case["verdict"], name


def test_without_lot_the_other_lots_evidence_is_valid() -> None:
    """`another-lot` is sound evidence: only the question asked makes it the wrong one."""
    result = run(_args("another-lot", "--json", lot=False))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["lots"] == ["OLV-2025-002"]


def test_entry_id_option() -> None:
    good = CASES["valid"]["entry_id"]
    assert run(_args("valid", "--entry-id", good)).exit_code == 0
    result = run(_args("valid", "--json", "--entry-id", CASES["revoked-key"]["entry_id"]))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["code"] == "wrong_subject"


def test_reads_either_file_from_stdin() -> None:
    case = CASES["valid"]
    proof = (FIXTURES / case["proof"]).read_text(encoding="utf-8")
    args = _args("valid", "--json")
    args[args.index("--proof") + 1] = "-"
    result = run(args, input=proof)
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True
    entry = (FIXTURES / case["entry"]).read_text(encoding="utf-8")
    args = _args("valid", "--json")
    args[args.index("--entry") + 1] = "-"
    result = run(args, input=entry)
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda a: _replace(a, "--entry", "/nonexistent/entry.json"), "configuration_error"),
        (lambda a: _replace(a, "--proof", str(FIXTURES)), "configuration_error"),
        (lambda a: _replace(a, "--verifier-key", "not-a-vkey"), "malformed_note"),
        (lambda a: _replace(a, "--verifier-key", VKEY[:-4] + "AAA="), "malformed_note"),
        (lambda a: [*a, "--lot", "lot with spaces"], "invalid_field"),
        (lambda a: [*a, "--entry-id", "F" * 64], "invalid_field"),
        (lambda a: _replace(_replace(a, "--entry", "-"), "--proof", "-"), "configuration_error"),
    ],
    ids=["missing-entry-file", "proof-is-a-directory", "malformed-vkey", "vkey-with-wrong-key-id", "bad-lot", "bad-entry-id", "both-from-stdin"],
)
def test_what_cannot_be_checked_exits_2(change: Any, code: str) -> None:
    args = change(_args("valid", "--json", lot=False))
    result = run(args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert json.loads(result.stdout)["code"] == code
    assert result.stderr.startswith(f"error: {code}: ")


def _replace(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = value
    return out


# --- docs/evidence.md ------------------------------------------------------------------------

_SECTION = re.compile(r"^## Checking one entry's evidence\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _section() -> str:
    match = _SECTION.search(EVIDENCE_DOC.read_text(encoding="utf-8"))
    assert match is not None, "docs/evidence.md has no '## Checking one entry's evidence' section"
    return match.group(1)


def test_doc_example_runs_as_written_on_the_fixtures() -> None:
    """The section's `sh` block, run in tests/fixtures/evidence, prints its `text` block."""
    blocks = _FENCE.findall(_section())
    scripts = [body for lang, body in blocks if lang == "sh"]
    outputs = [body for lang, body in blocks if lang == "text"]
    assert len(scripts) == len(outputs) >= 2
    # The shell runs in the fixtures directory: make the repository importable from there.
    env = clean_env({"PATH": f"{Path(FILIERA).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    for script, output in zip(scripts, outputs):
        proc = subprocess.run(["bash", "-c", script], cwd=FIXTURES, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.stdout == output, (script, proc.stderr)


def test_doc_verdict_table_matches_the_fixtures() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (.*?) \| `([a-z_]+)` \| (\d) \|$", _section(), re.MULTILINE)
    assert {name: (verdict, int(status)) for name, _, verdict, status in rows} == {
        name: (case["verdict"], case["exit"]) for name, case in CASES.items()
    }


def test_doc_commands_exist() -> None:
    from api.cli import cli

    words = [shlex.split(line) for line in re.findall(r"^\s*(filiera evidence verify .*)$", EVIDENCE_DOC.read_text(encoding="utf-8"), re.MULTILINE)]
    assert words
    command = cli.commands["evidence"].commands["verify"]  # type: ignore[attr-defined]
    options = {o for p in command.params for o in p.opts}
    for line in words:
        assert line[:3] == ["filiera", "evidence", "verify"]
        assert {w for w in line if w.startswith("--")} <= options, line


# --- a receipt from the API is evidence ------------------------------------------------------


def test_an_api_receipt_is_evidence(client: Any, ledger_env: Any, tmp_path: Path) -> None:
    """What a supplier keeps from `POST /v1/entries` verifies as is, on both backends."""
    from ..factories import Member, post_entry, register
    from ..supply import lot, origin

    grove = Member("grove")
    assert post_entry(client, register(ledger_env.admin, grove, ["producer"])).status_code == 201
    env = origin(grove, lot("OLV-API-1"))
    resp = post_entry(client, env)
    assert resp.status_code == 201
    receipt = resp.json
    vkey = client.get("/v1/ledger").json["verifier_key"]
    entry_file, proof_file = tmp_path / "harvest.json", tmp_path / "harvest.proof"
    entry_file.write_text(json.dumps(env, indent=2), encoding="utf-8")
    proof_file.write_text(receipt["tlog_proof"], encoding="utf-8")
    args = ["evidence", "verify", "--entry", str(entry_file), "--proof", str(proof_file), "--verifier-key", vkey, "--lot", "OLV-API-1", "--json"]
    result = run(args)
    assert result.exit_code == 0, result.stdout
    out = json.loads(result.stdout)
    assert (out["entry"], out["index"], out["leaf_hash"]) == (receipt["id"], receipt["index"], receipt["leaf_hash"])
    assert run([*args[:-3], "--lot", "OLV-API-2", "--json"]).exit_code == 1
