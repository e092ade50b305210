"""The `filiera` command (PROTOCOL §8): init, keygen, sign, submit, serve, verify, demo.

Commands run in-process through click's CliRunner, and as the installed entry point where a
real process matters: `filiera serve` (which execs gunicorn), the progress bar on a terminal,
and the exit status a shell sees. Every command that touches a database runs on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.entries import parse_envelope, verify_entry_signature
from ledger.keys import write_key_file, SigningKey, read_key_file
from ledger.notes import NoteVerifier, TlogProof
from ledger.rules import verify_signatures
from ledger.state import KeyRecord, LedgerState

from ..conftest import Db
from ..factories import ORIGIN
from .conftest import (
    FILIERA,
    REPO,
    ModuleDbs,
    Server,
    clean_env,
    error_code,
    free_port,
    on,
    run,
    run_entry_point,
    start_server,
    stop,
)


def _init(data_dir: Path, url: str, admin: str = "alice") -> str:
    """`filiera init`; returns the verifier key it prints."""
    result = run([*on(data_dir, url), "init", "--origin", ORIGIN, "--admin", admin])
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.stdout.splitlines() if ln.strip().startswith("verifier key")]
    return line.split()[-1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _verify_json(args: list[str]) -> tuple[int, dict[str, Any]]:
    result = run([*args, "verify", "--json"])
    return result.exit_code, json.loads(result.stdout)


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _register_payload(pid: str, public_key: str) -> dict[str, Any]:
    return {
        "ledger": ORIGIN,
        "type": "participant.register",
        "participant": {"id": pid, "name": f"{pid} S.r.l.", "roles": ["producer"], "keys": [{"public_key": public_key}]},
    }


# --- init --------------------------------------------------------------------------------


def test_init_writes_private_key_files_and_prints_the_verifier_key(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    vkey = _init(data, db.url)

    ledger_file, admin_file = data / "ledger.key", data / "alice.key"
    assert _mode(ledger_file) == 0o600
    assert _mode(admin_file) == 0o600
    ledger, alice = read_key_file(ledger_file), read_key_file(admin_file)
    assert (ledger.participant, alice.participant) == ("ledger", "alice")
    verifier = NoteVerifier.parse(vkey)
    assert verifier.name == ORIGIN
    assert bytes(verifier.public_key) == ledger.public_key.raw

    code, report = _verify_json(on(data, db.url))
    assert code == 0
    assert (report["ok"], report["origin"], report["entries"], report["blocks"]) == (True, ORIGIN, 1, 1)


def test_second_init_refuses_and_keeps_the_key_files(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _init(data, db.url)
    before = {p.name: p.read_bytes() for p in data.glob("*.key")}
    assert set(before) == {"ledger.key", "alice.key"}

    again = run([*on(data, db.url), "init", "--origin", ORIGIN, "--admin", "alice"])
    assert again.exit_code == 2
    assert error_code(again.stderr) == "ledger_exists"
    # Another admin id would write a new file: refused all the same, nothing written.
    other = run([*on(data, db.url), "init", "--origin", ORIGIN, "--admin", "bob"])
    assert other.exit_code == 2
    assert error_code(other.stderr) == "ledger_exists"
    assert {p.name: p.read_bytes() for p in data.glob("*.key")} == before


def test_init_on_a_fresh_database_never_replaces_existing_key_files(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run(["keygen", "--participant", "ledger", "--out", str(data / "ledger.key")])
    before = (data / "ledger.key").read_bytes()

    result = run([*on(data, db.url), "init", "--origin", ORIGIN, "--admin", "alice"])
    assert result.exit_code == 2
    assert error_code(result.stderr) == "invalid_key_file"
    assert (data / "ledger.key").read_bytes() == before
    assert not (data / "alice.key").exists()  # refused before writing either key
    code, out = _verify_json(on(data, db.url))
    assert (code, out["ok"], out["reason"]) == (1, False, "empty")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["--admin", "Alice Smith"], "invalid_field", id="admin-id-with-space"),
        pytest.param(["--admin", "ledger"], "participant_reserved", id="admin-id-reserved"),
        pytest.param(["--origin", "two words"], "malformed_note", id="origin-not-a-key-name"),
    ],
)
def test_init_refuses_bad_names(tmp_path: Path, args: list[str], code: str) -> None:
    data = tmp_path / "data"
    opts = {"--origin": ORIGIN, "--admin": "alice"}
    opts.update(dict(zip(args[::2], args[1::2])))
    result = run([*on(data, f"sqlite:///{tmp_path / 'f.db'}"), "init", *[x for kv in opts.items() for x in kv]])
    assert result.exit_code == 2
    assert error_code(result.stderr) == code
    assert not list(data.glob("*.key"))


# --- keygen ------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_and_prints_its_public_key(tmp_path: Path) -> None:
    out = tmp_path / "m1.key"
    result = run(["keygen", "--participant", "m1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    kf = read_key_file(out)
    assert _mode(out) == 0o600
    assert printed == {"participant": "m1", "key_id": kf.key_id, "public_key": kf.public_key.b64}


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "m1.key"
    run(["keygen", "--participant", "m1", "--out", str(out)])
    before = out.read_bytes()

    again = run(["keygen", "--participant", "m1", "--out", str(out)])
    assert again.exit_code == 2
    assert error_code(again.stderr) == "invalid_key_file"
    assert out.read_bytes() == before

    forced = run(["keygen", "--participant", "m1", "--out", str(out), "--force"])
    assert forced.exit_code == 0
    assert out.read_bytes() != before
    assert _mode(out) == 0o600
    assert json.loads(forced.stdout)["key_id"] == read_key_file(out).key_id


@pytest.mark.parametrize("participant", ["Upper", "has space", "", "x" * 200], ids=["uppercase", "space", "empty", "too-long"])
def test_keygen_refuses_a_bad_participant_id(tmp_path: Path, participant: str) -> None:
    out = tmp_path / "bad.key"
    result = run(["keygen", "--participant", participant, "--out", str(out)])
    assert result.exit_code == 2
    assert error_code(result.stderr) == "invalid_field"
    assert not out.exists()


# --- sign --------------------------------------------------------------------------------


@pytest.fixture
def alice(tmp_path: Path) -> Path:
    path = tmp_path / "alice.key"
    assert run(["keygen", "--participant", "alice", "--out", str(path)]).exit_code == 0
    return path


def test_sign_wraps_a_bare_payload(tmp_path: Path, alice: Path) -> None:
    newcomer = SigningKey.generate()
    payload = _write(tmp_path / "p.json", _register_payload("m1", newcomer.public_key.b64))
    result = run(["sign", str(payload), "--key", str(alice)])
    assert result.exit_code == 0, result.output

    env = json.loads(result.stdout)
    p = env["payload"]
    assert p["author"] == "alice"
    assert p["nonce"] and p["time"].endswith("Z")
    parsed = parse_envelope(env, origin=ORIGIN)
    (sig,) = parsed.signatures
    kf = read_key_file(alice)
    assert (sig.signer, sig.key_id) == ("alice", kf.key_id)
    verify_entry_signature(parsed, sig, kf.public_key.raw)

    # Signing the same bare payload again makes a new entry (fresh nonce), never a replay.
    again = json.loads(run(["sign", str(payload), "--key", str(alice)]).stdout)
    assert again["payload"]["nonce"] != p["nonce"]


def test_sign_keeps_what_the_payload_already_says(tmp_path: Path, alice: Path) -> None:
    doc = {**_register_payload("m1", SigningKey.generate().public_key.b64), "author": "alice", "nonce": "fixed-nonce-0123456789", "time": "2026-01-02T03:04:05.000000Z"}
    result = run(["sign", "-", "--key", str(alice)], input=json.dumps(doc))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["payload"] == doc


def test_sign_adds_a_second_signature_to_an_envelope(tmp_path: Path, alice: Path) -> None:
    # key.add: the owner signs, then the new key co-signs (proof of possession).
    new_key = tmp_path / "alice-2.key"
    run(["keygen", "--participant", "alice", "--out", str(new_key)])
    added = read_key_file(new_key)
    payload = _write(tmp_path / "add.json", {"ledger": ORIGIN, "type": "key.add", "participant": "alice", "public_key": added.public_key.b64})
    first = tmp_path / "add.signed.json"
    assert run(["sign", str(payload), "--key", str(alice), "--out", str(first)]).exit_code == 0
    result = run(["sign", str(first), "--key", str(new_key)])
    assert result.exit_code == 0, result.output

    env = json.loads(result.stdout)
    assert env["payload"] == json.loads(first.read_text())["payload"]
    parsed = parse_envelope(env, origin=ORIGIN)
    assert sorted(s.key_id for s in parsed.signatures) == sorted([read_key_file(alice).key_id, added.key_id])
    # Both signatures verify against the keys they name (the rules' own check).
    state = LedgerState()
    owner = read_key_file(alice)
    state.put_key(KeyRecord(owner.key_id, "alice", owner.public_key.raw, added_index=0, added_height=0))
    assert len(verify_signatures(state, parsed)) == 2

    # Co-signing twice with the same key leaves one signature per key.
    twice = run(["sign", "-", "--key", str(new_key)], input=result.stdout)
    assert len(json.loads(twice.stdout)["signatures"]) == 2


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        pytest.param({"ledger": ORIGIN, "type": "lot.create"}, "unknown_type", id="unknown-type"),
        pytest.param({"type": "key.revoke", "participant": "alice", "key_id": "0" * 16, "reason": "lost"}, "missing_field", id="no-ledger"),
        pytest.param({"ledger": ORIGIN, "type": "key.revoke", "participant": "alice", "key_id": "0" * 16, "reason": "call +39 06 1234 5678"}, "personal_data", id="phone-number"),
        pytest.param([1, 2], "configuration_error", id="not-an-object"),
    ],
)
def test_sign_refuses_what_no_ledger_would_accept(tmp_path: Path, alice: Path, doc: Any, code: str) -> None:
    result = run(["sign", str(_write(tmp_path / "p.json", doc)), "--key", str(alice)])
    assert result.exit_code == 2
    assert error_code(result.stderr) == code
    assert result.stdout == ""


def test_sign_refuses_a_key_file_others_can_read(tmp_path: Path, alice: Path) -> None:
    os.chmod(alice, 0o644)
    payload = _write(tmp_path / "p.json", _register_payload("m1", SigningKey.generate().public_key.b64))
    result = run(["sign", str(payload), "--key", str(alice)])
    assert result.exit_code == 2
    assert error_code(result.stderr) == "unsafe_key_file"
    assert result.stdout == ""


# --- submit and verify against a real server ---------------------------------------------


@dataclass
class Served:
    data: Path
    url: str
    vkey: str
    server: Server
    work: Path

    @property
    def admin_key(self) -> Path:
        return self.data / "alice.key"

    def member(self, pid: str) -> tuple[Path, Path]:
        """A new member's key file and the admin-signed registration of it."""
        key = self.work / f"{pid}.key"
        assert run(["keygen", "--participant", pid, "--out", str(key)]).exit_code == 0
        payload = _write(self.work / f"{pid}.register.json", _register_payload(pid, read_key_file(key).public_key.b64))
        signed = self.work / f"{pid}.register.signed.json"
        assert run(["sign", str(payload), "--key", str(self.admin_key), "--out", str(signed)]).exit_code == 0
        return key, signed


@pytest.fixture(scope="module")
def served(module_dbs: ModuleDbs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ledger made by `filiera init` and served by `filiera serve --workers 2`."""
    work = tmp_path_factory.mktemp("served")
    data, url = work / "data", module_dbs.new("served")
    vkey = _init(data, url)
    server = start_server(data, url, work)
    try:
        yield Served(data, url, vkey, server, work)
    finally:
        stop(server.process)


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in stdout.splitlines()]


def test_submit_seals_each_file_and_prints_receipts(served: Served) -> None:
    _, f1 = served.member("sub-a")
    _, f2 = served.member("sub-b")
    result = run(["submit", str(f1), str(f2), "--url", served.server.url])
    assert result.exit_code == 0, result.output

    receipts = _lines(result.stdout)
    assert [(r["file"], r["status"]) for r in receipts] == [(str(f1), 201), (str(f2), 201)]
    verifier = NoteVerifier.parse(served.vkey)
    for r, f in zip(receipts, (f1, f2)):
        assert r["id"] == parse_envelope(json.loads(f.read_text()), origin=ORIGIN).id
        TlogProof.parse(r["tlog_proof"]).verify(leaf_hash=bytes.fromhex(r["leaf_hash"]), verifier=verifier, origin=ORIGIN)
    assert receipts[1]["index"] == receipts[0]["index"] + 1
    assert result.stderr.splitlines()[-1] == "2 sealed, 0 already present, 0 refused"

    # The same files again: already present (200, the same receipt), nothing new sealed.
    again = run(["submit", str(f1), str(f2), "--url", served.server.url])
    assert again.exit_code == 0
    assert [(r["status"], r["index"]) for r in _lines(again.stdout)] == [(200, r["index"]) for r in receipts]
    assert again.stderr.splitlines()[-1] == "0 sealed, 2 already present, 0 refused"


def test_submit_exits_1_when_one_file_is_refused(served: Served) -> None:
    key, ok = served.member("sub-c")
    # A member may not register anyone: refused with 403, the other file still sealed.
    refused = served.work / "by-member.json"
    payload = _write(served.work / "by-member.payload.json", _register_payload("sub-x", SigningKey.generate().public_key.b64))
    assert run(["sign", str(payload), "--key", str(key), "--out", str(refused)]).exit_code == 0
    missing = served.work / "no-such-file.json"

    result = run(["submit", str(ok), str(refused), str(missing), "--url", served.server.url])
    assert result.exit_code == 1
    out = _lines(result.stdout)
    assert [o["status"] for o in out] == [201, 403, None]
    assert out[1]["code"] == "role_not_allowed"
    assert out[2]["code"] == "unreadable_file"
    assert result.stderr.splitlines()[-1] == "1 sealed, 0 already present, 1 refused, 1 unreadable"


def test_cosigned_entry_is_accepted_by_the_server(served: Served) -> None:
    key, reg = served.member("sub-d")
    assert run(["submit", str(reg), "--url", served.server.url]).exit_code == 0
    new_key = served.work / "sub-d-2.key"
    run(["keygen", "--participant", "sub-d", "--out", str(new_key)])
    payload = _write(served.work / "sub-d.add.json", {"ledger": ORIGIN, "type": "key.add", "participant": "sub-d", "public_key": read_key_file(new_key).public_key.b64})
    owner_signed = served.work / "sub-d.add.1.json"
    cosigned = served.work / "sub-d.add.2.json"
    run(["sign", str(payload), "--key", str(key), "--out", str(owner_signed)])
    run(["sign", str(owner_signed), "--key", str(new_key), "--out", str(cosigned)])

    # Without the new key's signature the server refuses (no proof of possession) ...
    alone = run(["submit", str(owner_signed), "--url", served.server.url])
    assert (alone.exit_code, _lines(alone.stdout)[0]["code"]) == (1, "missing_signature")
    # ... with it, the entry is sealed.
    both = run(["submit", str(cosigned), "--url", served.server.url])
    assert both.exit_code == 0, both.output
    assert _lines(both.stdout)[0]["status"] == 201


def test_submit_to_an_unreachable_server_exits_2(served: Served) -> None:
    _, f = served.member("sub-e")
    result = run(["submit", str(f), "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2
    assert "cannot reach" in result.stderr


def test_verify_the_local_database_and_the_server(served: Served) -> None:
    _, f = served.member("ver-a")
    assert run(["submit", str(f), "--url", served.server.url]).exit_code == 0
    local = on(served.data, served.url)

    human = run([*local, "verify"])
    assert human.exit_code == 0, human.output
    assert human.stdout.startswith(f"OK: {ORIGIN}: ")

    code, report = _verify_json(local)
    assert code == 0
    status, head = served.server.get_json("/v1/ledger")
    assert status == 200
    assert (report["ok"], report["tree_size"], report["entries"]) == (True, head["tree_size"], head["tree_size"])

    remote = run(["verify", "--json", "--url", served.server.url, "--key", str(served.admin_key)])
    assert remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == report


def test_verify_against_another_ledger_key_fails(served: Served) -> None:
    other = SigningKey.generate().public_key.b64
    for args in (on(served.data, served.url), ["--url", served.server.url, "--key", str(served.admin_key)]):
        if args[0] == "--url":
            result = run(["verify", "--json", "--ledger-key", other, *args])
        else:
            result = run([*args, "verify", "--json", "--ledger-key", other])
        assert result.exit_code == 1
        out = json.loads(result.stdout)
        assert (out["ok"], out["code"], out["reason"], out["height"], out["index"]) == (False, "chain_broken", "ledger_key", 0, 0)

    bad = run([*on(served.data, served.url), "verify", "--ledger-key", "not-base64!"])
    assert bad.exit_code == 2
    assert error_code(bad.stderr) == "invalid_key"


def test_verify_a_server_that_is_not_there_exits_2(tmp_path: Path) -> None:
    key = tmp_path / "auditor.key"
    write_key_file(key, participant="auditor", signing_key=SigningKey.generate())
    result = run(["verify", "--json", "--url", f"http://127.0.0.1:{free_port()}", "--key", str(key)])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["code"] == "unavailable"


def test_verify_url_needs_an_auditor_or_admin_key(served: Served) -> None:
    key, signed = served.member("plain-producer")
    assert run(["submit", str(signed), "--url", served.server.url]).exit_code == 0
    result = run(["verify", "--json", "--url", served.server.url, "--key", str(key)])
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["code"] == "configuration_error" and "auditor" in out["detail"]


def test_verify_url_needs_a_member_key() -> None:
    result = run(["verify", "--json", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["code"] == "configuration_error"


# --- demo --------------------------------------------------------------------------------


def test_demo_if_missing_creates_the_demo_once(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run([*on(data, db.url), "demo", "--if-missing"])
    assert first.exit_code == 0, first.output
    code, report = _verify_json(on(data, db.url))
    assert code == 0 and report["entries"] > 100  # a living consortium, not just members
    keys = {p.name: p.read_bytes() for p in data.glob("*.key")}
    assert len(keys) == 12  # the ledger, the admin and the ten members
    assert all(_mode(data / name) == 0o600 for name in keys)

    second = run([*on(data, db.url), "demo", "--if-missing"])
    assert second.exit_code == 0, second.output
    assert "leaving it as it is" in second.stdout
    assert _verify_json(on(data, db.url)) == (0, report)
    assert {p.name: p.read_bytes() for p in data.glob("*.key")} == keys

    third = run([*on(data, db.url), "demo"])
    assert third.exit_code == 2
    assert error_code(third.stderr) == "ledger_exists"


# --- refusing unsafe set-ups ---------------------------------------------------------------


def _serve_once(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`filiera serve` expected to refuse: if it started serving instead, stop it and fail."""
    proc = subprocess.Popen(
        [FILIERA, *args, "serve", "--port", str(free_port()), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(env), cwd=REPO,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail("filiera serve started on an unsafe set-up instead of refusing")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _unsafe(db: Db) -> tuple[str, dict[str, str]]:
    """The same database with durability turned off: an environment setting on SQLite, a
    session option in the URL on PostgreSQL."""
    if db.backend == "sqlite":
        return db.url, {"FILIERA_SQLITE_SYNCHRONOUS": "OFF"}
    return db.url.replace("options=", "options=-csynchronous_commit%3Doff%20", 1), {}


def test_serve_refuses_an_unsafe_database_setting(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _init(data, db.url)
    url, env = _unsafe(db)
    proc = _serve_once(on(data, url), env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert error_code(proc.stderr) == "unsafe_configuration"
    # verify reads the same database and refuses it the same way.
    result = run([*on(data, url), "verify", "--json"], env=env)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["code"] == "unsafe_configuration"


def test_serve_refuses_a_ledger_key_others_can_read(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _init(data, db.url)
    os.chmod(data / "ledger.key", 0o644)
    proc = _serve_once(on(data, db.url))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert error_code(proc.stderr) == "unsafe_key_file"
    # The message names the file, its mode and the fix.
    assert f"{data / 'ledger.key'} has mode 0644" in proc.stderr
    assert f"chmod 600 {data / 'ledger.key'}" in proc.stderr


# --- the installed entry point -----------------------------------------------------------


def test_entry_point_runs_init_and_verify(tmp_path: Path) -> None:
    helped = run_entry_point(["--help"])
    assert helped.returncode == 0
    for command in ("init", "keygen", "sign", "submit", "serve", "verify", "demo", "migrate"):
        assert command in helped.stdout

    args = on(tmp_path / "data", f"sqlite:///{tmp_path / 'f.db'}")
    made = run_entry_point([*args, "init", "--origin", ORIGIN])
    assert made.returncode == 0, made.stderr
    assert _mode(tmp_path / "data" / "admin.key") == 0o600
    checked = run_entry_point([*args, "verify", "--json"])
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["entries"] == 1

    missing = run_entry_point(["verify", "--json"], env={"FILIERA_DATA_DIR": str(tmp_path / "nothing")})
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["code"] == "not_initialised"


def _read_pty(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    return out


def test_verify_progress_bar_stays_off_stdout(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert run([*on(data, url), "demo"]).exit_code == 0

    # stderr a terminal, stdout a pipe: the bar is drawn, stdout is exactly one JSON object.
    leader, follower = pty.openpty()
    proc = subprocess.Popen([FILIERA, *on(data, url), "verify", "--json"], stdout=subprocess.PIPE, stderr=follower, env=clean_env(), cwd=REPO)
    os.close(follower)
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read()
    terminal = _read_pty(leader, proc).decode()
    os.close(leader)
    assert proc.returncode == 0
    entries = json.loads(stdout)["entries"]
    assert entries > 9
    assert stdout.decode().count("\n") == 1
    assert "verifying" in terminal and f"{entries}/{entries}" in terminal

    # Both on one terminal, as a user sees them: the JSON is a line of its own.
    leader, follower = pty.openpty()
    proc = subprocess.Popen([FILIERA, *on(data, url), "verify", "--json"], stdout=follower, stderr=follower, env=clean_env(), cwd=REPO)
    os.close(follower)
    lines = _read_pty(leader, proc).decode().replace("\r\n", "\n").split("\n")
    os.close(leader)
    (json_line,) = [ln for ln in lines if "{" in ln]
    assert json.loads(json_line)["ok"] is True
