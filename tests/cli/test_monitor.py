"""`filiera monitor` against real servers (TESTPLAN T10, CLI level).

One ledger is built and copied (the SQLite file, as an operator or an intruder with the ledger
key would) at size 9; the copies grow differently under the same ledger key file and each is
served by `filiera serve`:

  base    the copy at size 9, never grown      (a rollback, seen from `honest`)
  honest  9 + 3 registrations -> 12
  same    9 + 3 other registrations -> 12     (a fork of the same size)
  longer  9 + 6 other registrations -> 15     (a fork that is larger)
  live    a copy of `base` that one test grows through the API (honest growth across polls)

The monitor follows `honest` until it has a state, then is pointed at another server with the
same state file, as when DNS is switched to the forger.
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import api.commands.monitor as monitor_module
from api.cli import init_ledger
from ledger.client import http_json
from ledger.config import Settings
from ledger.keys import SigningKey, read_key_file
from ledger.monitor import MonitorState, verify_evidence
from ledger.notes import NoteVerifier, verifier_for, verify_checkpoint
from ledger.sealing import Sealer
from ledger.storage.store import Store

from ..docs.test_docs import _check_invocation, _command_lines
from ..factories import ORIGIN, Member, register
from .conftest import Server, error_code, free_port, run, run_entry_point, start_server, stop

REPO = Path(__file__).resolve().parents[2]
SIZES = {"base": 9, "honest": 12, "same": 12, "longer": 15, "live": 9}


@dataclass
class Forks:
    vkey: str
    admin: Member
    servers: dict[str, Server]

    def url(self, name: str) -> str:
        return self.servers[name].url


def _seal(settings: Settings, key: SigningKey, admin: Member, *batches: list[str]) -> None:
    store = Store.open(settings)
    try:
        sealer = Sealer(store, signing_key=key)
        for batch in batches:
            outcomes = sealer.submit_batch([register(admin, Member(m), ["producer"]) for m in batch])
            assert [o.status for o in outcomes] == ["created"] * len(batch), [o.error for o in outcomes]
    finally:
        store.dispose()


def _copy(source: Path, target: Path) -> str:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forks]:
    root = tmp_path_factory.mktemp("monitor")
    data = root / "data"

    def settings(url: str) -> Settings:
        return Settings.from_env({}, data_dir=data, ledger_key_file=data / "ledger.key", database_url=url, seal_interval=0.0)

    base = root / "base.db"
    init_ledger(settings(f"sqlite:///{base}"), origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    admin = Member("admin", read_key_file(data / "admin.key").signing_key)
    key = read_key_file(data / "ledger.key").signing_key
    _seal(settings(f"sqlite:///{base}"), key, admin, ["b01", "b02", "b03", "b04"], ["b05", "b06", "b07", "b08"])
    urls = {name: _copy(base, root / f"{name}.db") for name in ("honest", "same", "longer", "live")}
    urls["base"] = f"sqlite:///{base}"
    _seal(settings(urls["honest"]), key, admin, ["h01", "h02", "h03"])
    _seal(settings(urls["same"]), key, admin, ["f01", "f02", "f03"])
    _seal(settings(urls["longer"]), key, admin, ["g01", "g02", "g03"], ["g04", "g05", "g06"])
    servers: dict[str, Server] = {}
    try:
        for name, url in urls.items():
            servers[name] = start_server(data, url, root, workers=1)
            assert servers[name].get_json("/v1/ledger")[1]["tree_size"] == SIZES[name]
        yield Forks(verifier_for(ORIGIN, key.public_key.raw).vkey, admin, servers)
    finally:
        for server in servers.values():
            stop(server.process)


def monitor(url: str, state: Path, *extra: str) -> Any:
    return run(["monitor", url, "--state", str(state), *extra])


def pinned_on_honest(forks: Forks, tmp_path: Path) -> Path:
    state = tmp_path / "monitor.json"
    result = monitor(forks.url("honest"), state, "--verifier-key", forks.vkey, "--once")
    assert result.exit_code == 0, result.stderr
    assert json.loads(state.read_text())["tree_size"] == SIZES["honest"]
    return state


def check_evidence(forks: Forks, path: Path, *, reason: str, url: str) -> dict[str, Any]:
    """Both checkpoints verify under the ledger's key alone, for the same origin, and differ."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    verifier = NoteVerifier.parse(forks.vkey)
    previous = verify_checkpoint(doc["previous"]["note"], verifier=verifier, origin=ORIGIN)
    current = verify_checkpoint(doc["current"]["note"], verifier=verifier, origin=ORIGIN)
    assert previous.tree_size == SIZES["honest"]
    assert (doc["previous"]["source"], doc["current"]["source"], doc["url"]) == (forks.url("honest"), url, url)
    assert doc["reason"] == reason and doc["observed_at"].endswith("Z")
    assert verify_evidence(doc, verifier_key=forks.vkey).reason == reason
    if reason == "same_size":
        assert previous.tree_size == current.tree_size and previous.root != current.root
    return doc


# --- forks and rollbacks --------------------------------------------------------------------


def test_a_fork_of_the_same_size_is_caught_with_both_checkpoints(forks: Forks, tmp_path: Path) -> None:
    state = pinned_on_honest(forks, tmp_path)
    before = state.read_bytes()
    evidence = tmp_path / "evidence.json"
    # The real entry point, as cron or systemd runs it.
    proc = run_entry_point(["monitor", forks.url("same"), "--state", str(state), "--once", "--evidence", str(evidence)])
    assert proc.returncode == 1, proc.stderr
    assert error_code(proc.stderr) == "split_view"
    assert str(evidence) in proc.stderr
    check_evidence(forks, evidence, reason="same_size", url=forks.url("same"))
    assert state.read_bytes() == before  # the state still holds the honest checkpoint
    # Every later run raises the same alarm, and never overwrites evidence already saved.
    again = monitor(forks.url("same"), state, "--once", "--evidence", str(evidence))
    assert again.exit_code == 1 and error_code(again.stderr) == "split_view"
    check_evidence(forks, tmp_path / "evidence-2.json", reason="same_size", url=forks.url("same"))


def test_a_larger_fork_fails_its_consistency_proof(forks: Forks, tmp_path: Path) -> None:
    state = pinned_on_honest(forks, tmp_path)
    result = monitor(forks.url("longer"), state, "--interval", "0", "--json")
    assert result.exit_code == 1, result.stderr
    assert error_code(result.stderr) == "split_view"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["ok"], out["code"], out["reason"]) == (False, "split_view", "not_consistent")
    assert (out["previous_size"], out["current_size"]) == (12, 15)
    # No --evidence: the file goes beside the state file.
    path = Path(out["evidence_file"])
    assert path.parent == tmp_path and path.name.startswith("monitor.evidence-")
    doc = check_evidence(forks, path, reason="not_consistent", url=forks.url("longer"))
    assert (doc["consistency_proof"]["from"], doc["consistency_proof"]["to"]) == (12, 15)
    assert doc["proof_failure"]


def test_a_rollback_is_caught(forks: Forks, tmp_path: Path) -> None:
    state = pinned_on_honest(forks, tmp_path)
    evidence = tmp_path / "rollback.json"
    result = monitor(forks.url("base"), state, "--once", "--evidence", str(evidence))
    assert result.exit_code == 1, result.stderr
    assert error_code(result.stderr) == "rollback"
    doc = check_evidence(forks, evidence, reason="smaller_size", url=forks.url("base"))
    assert (doc["code"], doc["current"]["tree_size"]) == ("rollback", SIZES["base"])


def test_the_documented_evidence_check_runs(forks: Forks, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = pinned_on_honest(forks, tmp_path)
    evidence = tmp_path / "rollback.json"
    assert monitor(forks.url("base"), state, "--once", "--evidence", str(evidence)).exit_code == 1
    text = (REPO / "docs" / "monitoring.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^ *```python\n(.*?)^ *```$", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1
    code = textwrap.dedent(blocks[0])
    placeholders = {"state.evidence-20250301T091500Z.json": str(evidence), "ledger.example.com/olive-oil+8a3f1c2d+AWf0...": forks.vkey}
    for placeholder, value in placeholders.items():
        assert placeholder in code
        code = code.replace(placeholder, value)
    exec(compile(code, "docs/monitoring.md", "exec"), {})
    assert capsys.readouterr().out == "smaller_size\n"


# --- honest use -----------------------------------------------------------------------------


def test_honest_growth_across_polls_passes(forks: Forks, tmp_path: Path) -> None:
    url, state = forks.url("live"), tmp_path / "live.json"
    first = monitor(url, state, "--verifier-key", forks.vkey, "--once")
    assert first.exit_code == 0, first.stderr
    assert "pinned test.filiera.example at size 9" in first.stderr
    for batch in (["l01", "l02"], ["l03"]):
        status, body = http_json("POST", f"{url}/v1/entries/batch", {"entries": [register(forks.admin, Member(m), ["producer"]) for m in batch]})
        assert status == 200 and {r["status"] for r in body["results"]} == {201}, body
        result = monitor(url, state, "--count", "2", "--interval", "0", "--json", "--verbose")
        assert result.exit_code == 0, result.stderr
        polls = [json.loads(line) for line in result.stdout.splitlines()]
        assert [p["outcome"] for p in polls] == ["advanced", "same"]
        assert len([ln for ln in result.stderr.splitlines() if f"{url}: size" in ln]) == 2
    saved = json.loads(state.read_text())
    assert saved["tree_size"] == 12 and saved["source"] == url
    assert MonitorState.from_json(saved).current.tree_size == 12
    quiet = monitor(url, state, "--once")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("OK: test.filiera.example at size 12")


def test_first_use_without_a_key_trusts_the_ledger_and_says_so(forks: Forks, tmp_path: Path) -> None:
    state = tmp_path / "tofu.json"
    result = monitor(forks.url("honest"), state, "--once")
    assert result.exit_code == 0, result.stderr
    assert "WARNING: no --verifier-key given" in result.stderr and forks.vkey in result.stderr
    assert json.loads(state.read_text())["verifier_key"] == forks.vkey


# --- refusals -------------------------------------------------------------------------------


def test_a_checkpoint_not_signed_by_the_pinned_key_fails(forks: Forks, tmp_path: Path) -> None:
    state = tmp_path / "other-key.json"
    stranger = verifier_for(ORIGIN, SigningKey.generate().public_key.raw).vkey
    result = monitor(forks.url("honest"), state, "--verifier-key", stranger, "--once")
    assert result.exit_code == 1
    assert error_code(result.stderr) == "no_trusted_signature"
    assert not state.exists()


def test_another_key_than_the_pinned_one_is_a_usage_error(forks: Forks, tmp_path: Path) -> None:
    state = pinned_on_honest(forks, tmp_path)
    stranger = verifier_for(ORIGIN, SigningKey.generate().public_key.raw).vkey
    result = monitor(forks.url("honest"), state, "--verifier-key", stranger, "--once")
    assert result.exit_code == 2 and error_code(result.stderr) == "configuration_error"


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: "not json",
        lambda doc: json.dumps({**doc, "tree_size": doc["tree_size"] + 1}),
        lambda doc: json.dumps({**doc, "checkpoint": doc["checkpoint"].replace("\n12\n", "\n13\n")}),
    ],
    ids=["not-json", "summary-edited", "checkpoint-edited"],
)
def test_a_damaged_state_file_is_a_usage_error(forks: Forks, tmp_path: Path, damage: Any) -> None:
    state = pinned_on_honest(forks, tmp_path)
    state.write_text(damage(json.loads(state.read_text())), encoding="utf-8")
    result = monitor(forks.url("honest"), state, "--once")
    assert result.exit_code == 2 and error_code(result.stderr) == "configuration_error"


def test_once_and_count_exclude_each_other(tmp_path: Path) -> None:
    result = monitor("http://127.0.0.1:9", tmp_path / "s.json", "--once", "--count", "2")
    assert result.exit_code == 2 and error_code(result.stderr) == "configuration_error"


# --- an unreachable ledger ------------------------------------------------------------------


def test_unreachable_with_once_exits_2(tmp_path: Path) -> None:
    result = monitor(f"http://127.0.0.1:{free_port()}", tmp_path / "s.json", "--once", "--json")
    assert result.exit_code == 2
    assert error_code(result.stderr) == "unavailable"
    assert json.loads(result.stdout)["ok"] is False
    assert not (tmp_path / "s.json").exists()


def test_network_errors_are_retried_with_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            raise KeyboardInterrupt  # the operator stops it

    monkeypatch.setattr(monitor_module, "_sleep", sleep)
    result = monitor(f"http://127.0.0.1:{free_port()}", tmp_path / "s.json", "--interval", "10")
    assert result.exit_code == 130
    assert waits == [1, 2, 4, 8, 10, 10]
    assert len([ln for ln in result.stderr.splitlines() if "could not check" in ln and "unavailable" in ln]) == 6


def test_a_monitor_recovers_when_the_ledger_answers_again(forks: Forks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = pinned_on_honest(forks, tmp_path)
    answers = iter([monitor_module.Unavailable("connection refused"), None, None])
    real = monitor_module._fetch_checkpoint

    def flaky(url: str) -> str:
        failure = next(answers)
        if failure is not None:
            raise failure
        return real(url)

    monkeypatch.setattr(monitor_module, "_fetch_checkpoint", flaky)
    monkeypatch.setattr(monitor_module, "_sleep", lambda seconds: None)
    result = monitor(forks.url("honest"), state, "--count", "2")
    assert result.exit_code == 0, result.stderr
    assert "retry 1 in 1 s" in result.stderr and "answers again after 1 failed attempt" in result.stderr


# --- docs -----------------------------------------------------------------------------------


def test_monitoring_doc_command_lines_exist() -> None:
    doc = REPO / "docs" / "monitoring.md"
    invocations = _command_lines(doc)
    # A crontab line starts with five time fields, which the shell-line parser does not skip.
    cron = re.findall(r"^(?:\S+ ){5}\S*/filiera (.*?)(?: >.*)?$", doc.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(invocations) == 2 and len(cron) == 1
    assert {_check_invocation(args) for args in [*invocations, *map(shlex.split, cron)]} == {"monitor"}
