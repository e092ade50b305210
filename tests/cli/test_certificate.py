"""`filiera certificate verify` on saved files, offline: exit 0 valid and certified, 1 invalid
or not certified (and which), 2 could not check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api import create_app
from ledger.keys import SigningKey
from ledger.notes import verifier_for

from .. import conftest
from ..factories import ORIGIN, Member, post_batch, post_entry, register
from ..supply import STORY_CAST, fresh_ledger, lineage_story
from .conftest import run, run_entry_point


@dataclass
class Files:
    dir: Path
    vkey: str
    certified: Path
    gap: Path
    vc: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    """Certificates saved from a ledger: a certified lot, a lot in transit, and a VC."""
    work = tmp_path_factory.mktemp("certificates")
    with fresh_ledger("sqlite", work) as env:
        app = create_app(env.settings, background_sealing=False)
        app.test_client_class = conftest.SigningClient
        client = app.test_client()
        client.signer = env.admin  # type: ignore[attr-defined]
        try:
            m = {pid: Member(pid) for pid in STORY_CAST}
            assert post_batch(client, [register(env.admin, m[p], r) for p, r in STORY_CAST.items()]).status_code == 200

            def ok(envelope: dict[str, object]) -> str:
                resp = post_entry(client, envelope)
                assert resp.status_code == 201, resp.json
                return str(resp.json["id"])

            good = lineage_story(ok, m, "GOOD", steps=2)["final"]
            gap = lineage_story(ok, m, "GAP", steps=2, receive_last=False)["final"]
            saved = {}
            for name, path in (("certified", f"{good}/certificate"), ("gap", f"{gap}/certificate"), ("vc", f"{good}/certificate?format=vc")):
                resp = client.get(f"/v1/lots/{path}", unsigned=True)
                assert resp.status_code == 200
                saved[name] = work / f"{name}.json"
                saved[name].write_bytes(resp.data)
            vkey = client.get("/v1/ledger").json["verifier_key"]
        finally:
            app.extensions["filiera"].store.dispose()
    yield Files(work, vkey, saved["certified"], saved["gap"], saved["vc"])


def verify(path: Path, vkey: str, *extra: str) -> tuple[int, str, str]:
    result = run(["certificate", "verify", str(path), "--verifier-key", vkey, *extra])
    return result.exit_code, result.stdout, result.stderr


def test_a_certified_lot_exits_0(files: Files) -> None:
    code, out, _ = verify(files.certified, files.vkey)
    assert code == 0 and out.startswith("VALID and CERTIFIED: lot GOOD-S2")
    code, out, _ = verify(files.vc, files.vkey)
    assert code == 0 and "CERTIFIED" in out


def test_a_gap_exits_1_and_says_it_is_valid_but_not_certified(files: Files) -> None:
    code, out, _ = verify(files.gap, files.vkey)
    assert code == 1
    assert out.startswith("VALID but NOT CERTIFIED") and "handoffs_received / receipt_missing" in out
    code, out, _ = verify(files.gap, files.vkey, "--json")
    report = json.loads(out)
    assert (code, report["valid"], report["certified"], [f["reason"] for f in report["failures"]]) == (1, True, False, ["receipt_missing"])


def test_a_changed_byte_exits_1_as_invalid(files: Files, tmp_path: Path) -> None:
    raw = bytearray(files.certified.read_bytes())
    at = raw.index(b'"verdict":"certified"') + len(b'"verdict":"')
    raw[at] = ord("C")
    changed = tmp_path / "changed.json"
    changed.write_bytes(bytes(raw))
    code, out, _ = verify(changed, files.vkey)
    assert code == 1 and out.startswith("INVALID: invalid_certificate:")
    code, out, _ = verify(changed, files.vkey, "--json")
    assert (code, json.loads(out)["valid"], json.loads(out)["reason"]) == (1, False, "signature")


def test_another_ledgers_key_exits_1(files: Files) -> None:
    other = verifier_for(ORIGIN, SigningKey.generate().public_key.raw).vkey
    for path in (files.certified, files.vc):
        code, out, _ = verify(path, other)
        assert code == 1 and out.startswith("INVALID"), out


def test_a_reformatted_file_and_a_key_file_still_verify(files: Files, tmp_path: Path) -> None:
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(json.loads(files.certified.read_bytes()), indent=2, ensure_ascii=False), encoding="utf-8")
    key_file = tmp_path / "ledger.vkey"
    key_file.write_text(files.vkey + "\n", encoding="utf-8")
    assert verify(pretty, str(key_file))[0] == 0


@pytest.mark.parametrize("case", ["missing-file", "bad-key", "directory"])
def test_what_cannot_be_checked_exits_2(files: Files, case: str) -> None:
    path, vkey = files.certified, files.vkey
    if case == "missing-file":
        path = files.dir / "nope.json"
    elif case == "bad-key":
        vkey = "not+a+key"
    else:
        path = files.dir
    code, out, err = verify(path, vkey)
    assert code == 2 and out == "" and err


def test_garbage_exits_1(files: Files, tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"certificate": {}, "signature": "AA=="}', encoding="utf-8")
    code, out, _ = verify(junk, files.vkey)
    assert code == 1 and out.startswith("INVALID: malformed_certificate")


def test_the_installed_command(files: Files) -> None:
    proc = run_entry_point(["certificate", "verify", str(files.certified), "--verifier-key", files.vkey, "--json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["certified"] is True
