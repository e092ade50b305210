"""Helpers for witness tests: a log whose checkpoints and consistency proofs can be made at any
size (and forked), and `filiera witness serve` started as a real process on loopback.
"""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.cosignature import Cosigner
from ledger.keys import SigningKey
from ledger.merkle import Frontier, NodeId, build_proof, consistency_plan, leaf_hash
from ledger.notes import Checkpoint, NoteVerifier, sign_checkpoint, verifier_for
from ledger.witness import AddCheckpoint

from .cli.conftest import FILIERA, REPO, clean_env, free_port, stop

__all__ = ["TestLog", "WitnessProcess", "start_witness", "post_add_checkpoint"]


class TestLog:
    """A log of distinct leaves under one key; checkpoints and proofs of any size."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, origin: str, key: SigningKey | None = None, leaves: Sequence[bytes] = ()) -> None:
        self.origin = origin
        self.key = key or SigningKey.generate()
        self.leaves: list[bytes] = []
        self.nodes: dict[NodeId, bytes] = {}
        self.roots: list[bytes] = [Frontier(0, []).root()]
        self._frontier = Frontier(0, [])
        self.grow_with(leaves)

    @property
    def verifier(self) -> NoteVerifier:
        return verifier_for(self.origin, self.key.public_key.raw)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def grow_with(self, leaves: Sequence[bytes]) -> TestLog:
        for data in leaves:
            self.leaves.append(data)
            self.nodes.update(self._frontier.append(leaf_hash(data)))
            self.roots.append(self._frontier.root())
        return self

    def grow(self, n: int, tag: str = "leaf") -> TestLog:
        return self.grow_with([f"{tag} {len(self.leaves) + i}".encode() for i in range(n)])

    def fork(self, at: int) -> TestLog:
        """A log with the same key and origin that shares the first ``at`` leaves."""
        return TestLog(self.origin, self.key, self.leaves[:at])

    def body(self, size: int) -> Checkpoint:
        return Checkpoint(self.origin, size, self.roots[size])

    def checkpoint(self, size: int, key: SigningKey | None = None) -> str:
        return sign_checkpoint(self.body(size), signing_key=key or self.key)

    def proof(self, old: int, new: int) -> tuple[bytes, ...]:
        if old == 0:
            return ()
        return tuple(build_proof(consistency_plan(old_size=old, new_size=new), self.nodes))

    def request(self, old: int, size: int) -> AddCheckpoint:
        return AddCheckpoint(old_size=old, proof=self.proof(old, size), checkpoint=self.checkpoint(size))


@dataclass
class WitnessProcess:
    cosigner: Cosigner
    key_file: Path
    state: Path
    logs: list[str]
    workers: int = 1
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WitnessProcess:
        """Start (or restart, on the same port if it had one) and wait until it answers."""
        for _attempt in range(3):
            port = self.port or free_port()
            self.log = self.state.parent / f"witness-{port}.log"
            args = [FILIERA, "witness", "serve", "--key", str(self.key_file), "--state", str(self.state),
                    "--port", str(port), "--workers", str(self.workers), "--threads", "16"]
            for vkey in self.logs:
                args += ["--log", vkey]
            with self.log.open("ab") as out:
                self.process = subprocess.Popen(
                    args, env=clean_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.process.poll() is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                try:
                    conn.request("GET", "/")
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        self.port = port
                        return self
                except OSError:
                    pass
                finally:
                    conn.close()
                time.sleep(0.1)
            stop(self.process)
            if "Address already in use" not in self.log.read_text(errors="replace"):
                break
        pytest.fail(f"filiera witness serve did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


def start_witness(tmp: Path, name: str, logs: Sequence[str], *, workers: int = 1) -> WitnessProcess:
    """A new witness key in ``tmp`` and `filiera witness serve` for ``logs`` (vkeys)."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [FILIERA, "witness", "init", "--name", name, "--out", str(tmp / "witness.key")],
        env=clean_env(), capture_output=True, text=True, cwd=REPO, check=True,
    )
    from api.commands.witness import load_cosigner

    cosigner = load_cosigner(tmp / "witness.key")
    assert proc.stdout.strip() == cosigner.verifier.vkey
    return WitnessProcess(cosigner, tmp / "witness.key", tmp / "state", list(logs), workers).start()


def post_add_checkpoint(url: str, body: bytes, *, timeout: float = 30) -> tuple[int, str, bytes]:
    """POST a raw add-checkpoint body; (status, media type, body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/add-checkpoint", body=body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()
