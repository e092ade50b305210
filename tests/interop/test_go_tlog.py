"""Interop: Go's golang.org/x/mod/sumdb/note and tlog accept Filiera's checkpoints and proofs.

PROTOCOL §5 names these packages as the reference. The Go program in tlogcheck/ is built
against Debian's golang-golang-x-mod-dev in GOPATH mode (no network). `.ci/run` installs Go and
that package and sets FILIERA_REQUIRE_GO=1, so in CI a missing toolchain fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ledger.keys import SigningKey

from ..factories import Member, key_add, register

GOPATH = "/usr/share/gocode"
PROGRAM = Path(__file__).parent / "tlogcheck" / "main.go"


def _go() -> str:
    go = shutil.which("go")
    have_mod = Path(GOPATH, "src/golang.org/x/mod/sumdb/note").is_dir()
    if go and have_mod:
        return go
    if os.environ.get("FILIERA_REQUIRE_GO") == "1":
        pytest.fail("Go and golang-golang-x-mod-dev are required here (FILIERA_REQUIRE_GO=1)")
    pytest.skip("Go toolchain or golang-golang-x-mod-dev not installed")


def _run_go(doc: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    go = _go()
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(tmp_path / "gocache"),
        "GOFLAGS": "",
    }
    proc = subprocess.run(
        [go, "run", str(PROGRAM)],
        input=json.dumps(doc).encode(),
        capture_output=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def _grow(client: FlaskClient, admin: Member) -> None:
    """A ledger of a dozen entries over several blocks of different sizes."""
    members = [Member(f"member-{i}") for i in range(4)]
    for m in members:
        assert client.post("/v1/entries", json=register(admin, m, ["producer"])).status_code == 201
    batch = [key_add(m, SigningKey.generate()) for m in members for _ in range(2)]
    resp = client.post("/v1/entries/batch", json={"entries": batch})
    assert [r["status"] for r in resp.get_json()["results"]] == [201] * len(batch)


def _evidence(client: FlaskClient) -> dict[str, Any]:
    info = client.get("/v1/ledger").get_json()
    blocks = client.get("/v1/blocks?limit=1000").get_json()["blocks"]
    sizes = [b["header"]["tree_size"] for b in blocks]
    inclusion = []
    for size in sizes:
        for index in range(size):
            p = client.get(f"/v1/proofs/inclusion?index={index}&tree_size={size}").get_json()
            inclusion.append({k: p[k] for k in ("index", "tree_size", "leaf_hash", "hashes")})
    consistency = []
    for i, old in enumerate(sizes):
        for new in sizes[i:]:
            p = client.get(f"/v1/proofs/consistency?from={old}&to={new}").get_json()
            consistency.append({"from": p["from"], "to": p["to"], "hashes": p["hashes"]})
    return {
        "vkey": info["verifier_key"],
        "checkpoints": {str(b["header"]["tree_size"]): b["checkpoint"] for b in blocks},
        "inclusion": inclusion,
        "consistency": consistency,
    }


def test_go_accepts_checkpoints_and_proofs(client: FlaskClient, ledger_env: Any, tmp_path: Path) -> None:
    _grow(client, ledger_env.admin)
    doc = _evidence(client)
    results = _run_go(doc, tmp_path)
    n_cp, n_inc, n_con = len(doc["checkpoints"]), len(doc["inclusion"]), len(doc["consistency"])
    assert n_cp >= 6 and n_inc >= 28 and n_con >= 21
    assert len(results) == n_cp + n_inc + n_con
    failed = [r for r in results if not r["ok"]]
    assert failed == []


def test_go_refuses_tampered_evidence(client: FlaskClient, ledger_env: Any, tmp_path: Path) -> None:
    """Negative control: the Go checker does fire on a bad proof or a foreign key."""
    _grow(client, ledger_env.admin)
    doc = _evidence(client)
    inc = next(p for p in doc["inclusion"] if p["hashes"])
    con = next(p for p in doc["consistency"] if p["hashes"])
    flipped = lambda h: ("0" if h[0] != "0" else "1") + h[1:]  # noqa: E731
    bad = {
        "vkey": doc["vkey"],
        "checkpoints": doc["checkpoints"],
        "inclusion": [{**inc, "hashes": [flipped(inc["hashes"][0]), *inc["hashes"][1:]]}],
        "consistency": [{**con, "hashes": [flipped(con["hashes"][0]), *con["hashes"][1:]]}],
    }
    results = _run_go(bad, tmp_path)
    assert [r["ok"] for r in results if r["check"] != "checkpoint"] == [False, False]
    from ledger.notes import verifier_for

    other = verifier_for(json.loads(json.dumps(doc["vkey"])).split("+")[0], SigningKey.generate().public_key.raw)
    results = _run_go({**doc, "vkey": other.vkey, "inclusion": [], "consistency": []}, tmp_path)
    assert results and all(not r["ok"] for r in results)
