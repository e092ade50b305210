"""docs/witnessing.md stays true: its example policy parses and names the keys of its example
cosigned checkpoint, and its Python check runs as written against that checkpoint (and fails
on an altered one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ledger.notes import split_note
from ledger.witness_policy import WitnessPolicy

DOC = Path(__file__).resolve().parents[2] / "docs" / "witnessing.md"
_FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return _FENCE.findall(DOC.read_text(encoding="utf-8"))


def _policy() -> str:
    (text,) = [body for _, body in _blocks() if body.startswith("# /etc/filiera/witnesses.txt")]
    return text


def _note() -> str:
    (text,) = [body for lang, body in _blocks() if lang == "" and body.startswith("ledger.example/olive-oil\n")]
    return text


def _python() -> str:
    (code,) = [body for lang, body in _blocks() if lang == "python"]
    return code


def test_example_policy_names_the_example_keys() -> None:
    policy = WitnessPolicy.parse(_policy())
    assert [w.name for w in policy.witnesses] == ["alpha", "beta"]
    assert policy.satisfied({"alpha", "beta"}) and not policy.satisfied({"alpha"})
    _, lines = split_note(_note())
    assert [line.name for line in lines] == [policy.logs[0].name, *(w.verifier.name for w in policy.witnesses)]
    assert [line.key_id for line in lines] == [policy.logs[0].key_id, *(w.verifier.key_id for w in policy.witnesses)]


def test_python_check_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoint.txt").write_text(_note(), encoding="utf-8")
    exec(compile(_python(), str(DOC), "exec"), {})
    assert capsys.readouterr().out.startswith("1284 [('witness.alpha.example/w1', ")


def test_python_check_refuses_an_altered_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.errors import LedgerError

    monkeypatch.chdir(tmp_path)
    # Drop the beta line: the log signature still verifies, the quorum does not.
    (tmp_path / "checkpoint.txt").write_text("".join(_note().splitlines(keepends=True)[:-1]), encoding="utf-8")
    with pytest.raises(AssertionError, match="quorum not met"):
        exec(compile(_python(), str(DOC), "exec"), {})
    # A witness line that does not verify rejects the note.
    lines = _note().splitlines(keepends=True)
    lines[-1] = lines[-1].replace("f982WQ", "f982WR")
    (tmp_path / "checkpoint.txt").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(LedgerError):
        exec(compile(_python(), str(DOC), "exec"), {})
