"""`filiera audit`: the offline audit of an exported bundle, as an auditor runs it.

One demo ledger (SQLite) is exported once per module with `filiera export`; each test audits
that bundle or a copy edited as a damaged download or a forger would edit it. The broader
tamper suite (edits to the stored log, detected by both verify and audit) lives in
tests/integration/test_tamper_generator.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.keys import SigningKey
from ledger.notes import verifier_for

from .conftest import FILIERA, clean_env, run

FIXTURES = Path(__file__).parents[1] / "fixtures" / "evidence"
LOTS = 110  # about 280 entries: more than one worker task (256 lines)


class Ledger:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.url = f"sqlite:///{data / 'ledger.db'}"
        self.bundle = data / "full.ndjson"

    def cli(self, *args: str) -> Any:
        return run(["--data-dir", str(self.data), "--database-url", self.url, *args])

    @property
    def vkey(self) -> str:
        header = json.loads(self.bundle.read_bytes().split(b"\n", 1)[0])
        return str(header["verifier_key"])


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    led = Ledger(tmp_path_factory.mktemp("audit"))
    assert led.cli("demo", "--lots", str(LOTS)).exit_code == 0
    result = led.cli("export", "--out", str(led.bundle))
    assert result.exit_code == 0, result.stderr
    yield led


def audit(bundle: Path | str, vkey: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = run(["audit", str(bundle), "--verifier-key", vkey, "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def entry_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return [(i, json.loads(raw)) for i, raw in enumerate(lines(path)) if raw.startswith(b'{"type":"entry"')]


def write(path: Path, content: list[bytes]) -> Path:
    path.write_bytes(b"".join(content))
    return path


# --- clean audits ----------------------------------------------------------------------------


def test_a_clean_bundle_audits_ok_through_the_installed_command(ledger: Ledger, tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    proc = subprocess.run(
        [FILIERA, "audit", str(ledger.bundle), "--verifier-key", ledger.vkey, "--report", str(report_file)],
        capture_output=True, text=True, env=clean_env(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RESULT: OK" in proc.stdout and "first failure" not in proc.stdout
    report = json.loads(report_file.read_text())
    entries = entry_lines(ledger.bundle)
    assert report["ok"] is True and report["failure"] is None
    assert report["entries"] == len(entries) == report["tree_size"]
    sigs = sum(len(json.loads(e["leaf_data"])["signatures"]) for _, e in entries)
    assert report["signatures"] == sigs
    head = json.loads(ledger.cli("verify", "--json").stdout)
    assert report["root"] == head["root"] and report["tree_size"] == head["tree_size"]


@pytest.mark.parametrize("workers", ["0", "1", "2"])
def test_worker_count_changes_nothing_but_speed(ledger: Ledger, workers: str) -> None:
    code, report = audit(ledger.bundle, ledger.vkey, "--workers", workers)
    assert code == 0 and report["workers"] == int(workers)
    baseline = audit(ledger.bundle, ledger.vkey, "--workers", "0")[1]
    for field in ("ok", "entries", "signatures", "tree_size", "root", "checkpoint"):
        assert report[field] == baseline[field]


def test_gzip_and_stdin_and_a_key_file(ledger: Ledger, tmp_path: Path) -> None:
    gz = tmp_path / "b.ndjson.gz"
    gz.write_bytes(gzip.compress(ledger.bundle.read_bytes()))
    key_file = tmp_path / "ledger.vkey"
    key_file.write_text(ledger.vkey + "\n")
    assert audit(gz, str(key_file))[0] == 0
    result = run(["audit", "-", "--verifier-key", ledger.vkey, "--json"], input=ledger.bundle.read_text())
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"]


# --- incremental audits ------------------------------------------------------------------------


def test_next_quarter_checks_only_the_new_blocks_from_a_state_snapshot(ledger: Ledger, tmp_path: Path) -> None:
    size = len(entry_lines(ledger.bundle))
    q1 = tmp_path / "q1.ndjson"
    assert ledger.cli("export", "--to", str(size // 2), "--out", str(q1)).exit_code == 0
    state, checkpoint = tmp_path / "q1.state", tmp_path / "q1.checkpoint"
    code, first = audit(q1, ledger.vkey, "--save-state", str(state), "--save-checkpoint", str(checkpoint))
    assert code == 0 and first["state_out_sha256"]
    assert state.stat().st_mode & 0o777 == 0o600
    trusted = int(checkpoint.read_text().splitlines()[1])
    q2 = tmp_path / "q2.ndjson"
    assert ledger.cli("export", "--from", str(trusted), "--since-checkpoint", str(checkpoint), "--out", str(q2)).exit_code == 0
    code, second = audit(
        q2, ledger.vkey, "--state", str(state), "--state-sha256", first["state_out_sha256"],
        "--trusted-checkpoint", str(checkpoint),
    )
    assert code == 0, second
    assert second["consistency_checked"] is True and second["trusted_size"] == trusted
    assert second["entries"] == size - trusted and second["tree_size"] == size
    assert second["state_in_sha256"] == first["state_out_sha256"]
    assert second["root"] == audit(ledger.bundle, ledger.vkey)[1]["root"]

    # The partial bundle alone cannot be audited, nor with a snapshot that is not the one reported.
    result = run(["audit", str(q2), "--verifier-key", ledger.vkey])
    assert result.exit_code == 2 and "invalid_snapshot" in result.stderr
    result = run(["audit", str(q2), "--verifier-key", ledger.vkey, "--state", str(state), "--state-sha256", "0" * 64])
    assert result.exit_code == 2 and "invalid_snapshot" in result.stderr

    # A history rewritten after the trusted checkpoint fails on the consistency record first.
    forged = [raw for raw in lines(q2)]
    consistency = json.loads(forged[1])
    assert consistency["type"] == "consistency" and consistency["hashes"]
    consistency["hashes"][0] = "00" * 32
    forged[1] = (json.dumps(consistency) + "\n").encode()
    code, report = audit(write(tmp_path / "forged.ndjson", forged), ledger.vkey, "--state", str(state), "--trusted-checkpoint", str(checkpoint))
    assert code == 1 and report["failure"]["reason"] == "fork" and report["failure"]["line"] == 2


def test_a_trusted_checkpoint_skips_only_the_signature_work_below_it(ledger: Ledger, tmp_path: Path) -> None:
    size = len(entry_lines(ledger.bundle))
    q1 = tmp_path / "q1.ndjson"
    assert ledger.cli("export", "--to", str(size // 2), "--out", str(q1)).exit_code == 0
    checkpoint = tmp_path / "q1.checkpoint"
    assert audit(q1, ledger.vkey, "--save-checkpoint", str(checkpoint))[0] == 0
    full = audit(ledger.bundle, ledger.vkey)[1]
    code, quick = audit(ledger.bundle, ledger.vkey, "--trusted-checkpoint", str(checkpoint))
    assert code == 0 and quick["entries"] == full["entries"] and 0 < quick["signatures"] < full["signatures"]
    assert audit(ledger.bundle, ledger.vkey, "--trusted-checkpoint", str(checkpoint), "--recheck-signatures")[1]["signatures"] == full["signatures"]


def test_a_checkpoint_the_bundle_does_not_reach_is_truncation(ledger: Ledger, tmp_path: Path) -> None:
    checkpoint = tmp_path / "head.checkpoint"
    assert audit(ledger.bundle, ledger.vkey, "--save-checkpoint", str(checkpoint))[0] == 0
    size = len(entry_lines(ledger.bundle))
    short = tmp_path / "short.ndjson"
    assert ledger.cli("export", "--to", str(size - 1), "--out", str(short)).exit_code == 0
    assert audit(short, ledger.vkey)[0] == 0  # on its own, a shorter log is a valid log
    code, report = audit(short, ledger.vkey, "--trusted-checkpoint", str(checkpoint))
    assert code == 1 and report["failure"]["reason"] == "truncated"


# --- damaged or forged bundles ---------------------------------------------------------------


def _resign(entry: dict[str, Any], *, flip_signature: bool) -> dict[str, Any]:
    leaf = json.loads(entry["leaf_data"])
    sig = bytearray(base64.b64decode(leaf["signatures"][0]["sig"]))
    sig[5] ^= 0x01 if flip_signature else 0
    leaf["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    out = dict(entry)
    out["leaf_data"] = json.dumps(leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return out


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_bad_signature_deep_in_the_bundle_is_named_exactly(ledger: Ledger, tmp_path: Path, workers: str) -> None:
    content = lines(ledger.bundle)
    entries = entry_lines(ledger.bundle)
    victim_line, victim = entries[len(entries) - 5]  # past the first worker task
    content[victim_line] = (json.dumps(_resign(victim, flip_signature=True), ensure_ascii=False) + "\n").encode()
    code, report = audit(write(tmp_path / "bad.ndjson", content), ledger.vkey, "--workers", workers)
    failure = report["failure"]
    assert code == 1 and failure["reason"] == "signature" and failure["cause"] == "invalid_signature"
    assert failure["index"] == victim["index"] and failure["entry"] == victim["id"]


def test_a_cut_download_and_a_garbage_line_are_named(ledger: Ledger, tmp_path: Path) -> None:
    content = lines(ledger.bundle)
    code, report = audit(write(tmp_path / "cut.ndjson", content[:-2]), ledger.vkey)
    assert code == 1 and report["failure"]["reason"] == "incomplete_bundle"
    garbage = content[:10] + [b"{not json\n"] + content[10:]
    code, report = audit(write(tmp_path / "garbage.ndjson", garbage), ledger.vkey)
    assert code == 1 and report["failure"]["reason"] == "bundle" and report["failure"]["line"] == 11
    code, report = audit(write(tmp_path / "empty.ndjson", []), ledger.vkey)
    assert code == 1 and report["failure"]["reason"] == "bundle"


def test_another_ledgers_key_is_refused(ledger: Ledger) -> None:
    other = verifier_for("demo.filiera.example", SigningKey.generate().public_key.raw).vkey
    code, report = audit(ledger.bundle, other)
    assert code == 1 and report["failure"]["reason"] == "ledger_key"
    stranger = verifier_for("other.example", SigningKey.generate().public_key.raw).vkey
    assert audit(ledger.bundle, stranger)[1]["failure"]["reason"] == "origin"
    result = run(["audit", str(ledger.bundle), "--verifier-key", "not-a-key"])
    assert result.exit_code == 2


def test_t13_an_entry_signed_after_its_keys_revocation(tmp_path: Path) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    case = next(f for f in expected["fixtures"] if f["name"] == "revoked-key")["ledger"]
    bundle = tmp_path / "revoked.ndjson"
    shutil.copy(FIXTURES / case["bundle"], bundle)
    code, report = audit(bundle, (FIXTURES / "verifier.vkey").read_text().strip())
    failure = report["failure"]
    assert code == 1
    assert (failure["code"], failure["reason"], failure["cause"], failure["height"], failure["index"]) == (
        case["code"], case["reason"], case["cause"], case["height"], case["index"]
    )


def test_the_auditing_guide_names_real_commands_options_and_every_reason() -> None:
    from ledger.audit import AUDIT_REASONS
    from ledger.verify import REASONS

    from ..docs.test_docs import _check_invocation, _command_lines

    doc = Path(__file__).parents[2] / "docs" / "auditing.md"
    invocations = _command_lines(doc)
    assert {_check_invocation(args) for args in invocations} >= {"export", "audit", "verify"}
    options = {word for args in invocations if "audit" in args for word in args if word.startswith("--")}
    assert {"--verifier-key", "--trusted-checkpoint", "--state", "--state-sha256", "--save-state", "--save-checkpoint", "--report", "--json"} <= options
    text = doc.read_text(encoding="utf-8")
    reasons = (REASONS | AUDIT_REASONS) - {"unsealed_entry", "projection", "facts", "storage", "trusted_checkpoint", "merkle_node"}
    missing = [r for r in sorted(reasons) if f"`{r}`" not in text]
    assert not missing, missing


def test_a_state_spilled_to_scratch_files_gives_the_same_audit(ledger: Ledger, tmp_path: Path) -> None:
    """A budget far below the ledger's size makes the replay spill after every block: the
    verdict, the figures and the saved snapshot are the same as with everything in memory."""
    from ledger.audit import audit_bundle
    from ledger.notes import NoteVerifier

    verifier = NoteVerifier.parse(ledger.vkey)
    outcomes = []
    for budget in (20, 10**9):
        snapshot = tmp_path / f"state-{budget}"
        with open(ledger.bundle, "rb") as lines, open(snapshot, "wb") as out:
            report = audit_bundle(lines, verifier=verifier, workers=0, memory_budget=budget, save_state=out, scratch_dir=str(tmp_path))
        assert report.ok
        outcomes.append((report.entries, report.signatures, report.root, report.state_out, snapshot.read_bytes()))
    assert outcomes[0] == outcomes[1]
    assert not list(tmp_path.glob("filiera-audit-*.sqlite")), "scratch files are removed"

    # And a spilled run catches the same rule failure as the T13 fixture shows.
    expected = json.loads((FIXTURES / "expected.json").read_text())
    case = next(f for f in expected["fixtures"] if f["name"] == "revoked-key")["ledger"]
    with open(FIXTURES / case["bundle"], "rb") as lines:
        report = audit_bundle(lines, verifier=NoteVerifier.parse((FIXTURES / "verifier.vkey").read_text().strip()), workers=0, memory_budget=1)
    assert report.failure is not None and (report.failure.cause, report.failure.index) == (case["cause"], case["index"])
