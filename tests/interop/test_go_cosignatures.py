"""Interop: Go's golang.org/x/mod/sumdb/note opens checkpoints cosigned by `filiera witness`,
with a cosignature/v1 verifier written in Go from the C2SP text (cosigcheck/main.go).

Built like tlogcheck (Debian's golang-golang-x-mod-dev, GOPATH mode, no network); skipped
without Go unless FILIERA_REQUIRE_GO=1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from api.witness_app import create_witness_app
from ledger.cosignature import Cosigner
from ledger.keys import SigningKey
from ledger.notes import add_signature_lines

from ..witnesses import TestLog
from .test_go_tlog import GOPATH, _go

PROGRAM = Path(__file__).parent / "cosigcheck" / "main.go"
ORIGIN = "interop.example/ledger"


def _run(doc: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(tmp_path / "gocache"), "GOFLAGS": ""}
    proc = subprocess.run([_go(), "run", str(PROGRAM)], input=json.dumps(doc).encode(), capture_output=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def _cosigned(tmp_path: Path) -> tuple[TestLog, list[Cosigner], list[str]]:
    """Checkpoints of sizes 3, 9 and 30, each cosigned by two witness processes' apps."""
    log = TestLog(ORIGIN).grow(30)
    cosigners = [Cosigner(f"witness{i}.example/w", SigningKey.generate()) for i in range(2)]
    clients = [
        create_witness_app(cosigner=c, logs={ORIGIN: [log.verifier]}, state_dir=tmp_path / f"w{i}").test_client()
        for i, c in enumerate(cosigners)
    ]
    notes, old = [], 0
    for size in (3, 9, 30):
        request = log.request(old, size)
        lines: list[str] = []
        for client in clients:
            resp = client.post("/add-checkpoint", data=request.format())
            assert resp.status_code == 200
            lines += resp.data.decode().splitlines()
        notes.append(add_signature_lines(request.checkpoint, lines))
        old = size
    return log, cosigners, notes


def test_go_opens_cosigned_checkpoints(tmp_path: Path) -> None:
    log, cosigners, notes = _cosigned(tmp_path)
    doc = {"ledger_vkey": log.verifier.vkey, "witness_vkeys": [c.verifier.vkey for c in cosigners], "notes": notes}
    results = _run(doc, tmp_path)
    names = [ORIGIN, *(c.name for c in cosigners)]
    assert results == [{"ok": True, "verified": names}] * 3


def test_go_refuses_a_bad_cosignature(tmp_path: Path) -> None:
    """Negative control: a flipped byte in a witness's signature fails in Go too, and a
    witness Go is not told about is ignored."""
    log, cosigners, notes = _cosigned(tmp_path)
    lines = notes[0].splitlines(keepends=True)
    last = lines[-1]
    flipped = last[:-10] + ("A" if last[-10] != "A" else "B") + last[-9:]
    bad = "".join([*lines[:-1], flipped])
    doc = {"ledger_vkey": log.verifier.vkey, "witness_vkeys": [c.verifier.vkey for c in cosigners], "notes": [bad]}
    (result,) = _run(doc, tmp_path)
    assert result["ok"] is False
    doc = {"ledger_vkey": log.verifier.vkey, "witness_vkeys": [cosigners[0].verifier.vkey], "notes": notes[:1]}
    assert _run(doc, tmp_path) == [{"ok": True, "verified": [ORIGIN, cosigners[0].name]}]
