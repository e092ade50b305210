"""`filiera witness` with real processes on loopback (TESTPLAN T10, witness half).

* a ledger served by `filiera serve` with a policy of two witnesses (`filiera witness serve`)
  publishes checkpoints cosigned by both; with one witness down it keeps publishing the last
  checkpoint that met the quorum while ingest goes on, and catches up when it returns;
* a forked ledger (a copy of the SQLite database at size n, grown differently, same key and
  origin) is refused by a witness that cosigned the other branch, with the protocol's status;
* 16 threads hammering one witness (two worker processes) with shuffled sizes of two branches:
  its stored size never decreases, and everything it cosigned is consistent with its final view;
* every status of add-checkpoint over HTTP.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.client import http_json
from ledger.config import Settings
from ledger.cosignature import cosignatures_in, verify_cosignature
from ledger.keys import SigningKey, read_key_file
from ledger.merkle import verify_consistency
from ledger.notes import Checkpoint, add_signature_lines, verifier_for, verify_checkpoint
from ledger.witness import SIZE_MEDIA_TYPE, AddCheckpoint
from ledger.witness_state import WitnessState

from ..conftest import Db
from ..factories import ORIGIN, Member, register
from ..witnesses import TestLog, WitnessProcess, post_add_checkpoint, start_witness
from .conftest import Server, error_code, on, run

DEADLINE_S = 90.0


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[Callable[..., WitnessProcess]]:
    """Start `filiera witness serve` processes; all stopped at teardown."""
    started: list[WitnessProcess] = []

    def start(name: str, logs: list[str], *, workers: int = 1) -> WitnessProcess:
        w = start_witness(tmp_path / f"witness-{len(started)}", name, logs, workers=workers)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _init(data: Path, url: str) -> str:
    result = run([*on(data, url), "init", "--origin", ORIGIN, "--admin", "admin"])
    assert result.exit_code == 0, result.output
    return verifier_for(ORIGIN, read_key_file(data / "ledger.key").public_key.raw).vkey


def _policy(path: Path, ledger_vkey: str, ws: list[WitnessProcess], quorum: str) -> Path:
    lines = [f"log {ledger_vkey}"]
    lines += [f"witness w{i} {w.cosigner.verifier.vkey} {w.url}" for i, w in enumerate(ws)]
    lines += [f"group q {quorum} {' '.join(f'w{i}' for i in range(len(ws)))}", "quorum q"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _get_text(server: Server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# --- witness init -------------------------------------------------------------------------


def test_witness_init_writes_a_private_key_and_prints_the_vkey(tmp_path: Path) -> None:
    key = tmp_path / "w.key"
    result = run(["witness", "init", "--name", "witness.example/w1", "--out", str(key)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    text = key.read_text()
    assert text.startswith("PRIVATE+KEY+witness.example/w1+") and result.stdout.strip().startswith("witness.example/w1+")
    assert text.split("+")[-1].strip() not in result.stdout
    again = run(["witness", "init", "--name", "witness.example/w1", "--out", str(key)])
    assert again.exit_code == 2 and error_code(again.stderr) == "invalid_key_file"
    assert key.read_text() == text
    bad = run(["witness", "init", "--name", "has space", "--out", str(tmp_path / "x.key")])
    assert bad.exit_code == 2 and error_code(bad.stderr) == "configuration_error"


def test_witness_serve_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "w.key"
    assert run(["witness", "init", "--name", "w", "--out", str(key)]).exit_code == 0
    key.chmod(0o644)
    vkey = TestLog("x.example").verifier.vkey
    result = run(["witness", "serve", "--key", str(key), "--log", vkey, "--state", str(tmp_path / "s")])
    assert result.exit_code == 2 and error_code(result.stderr) == "unsafe_key_file"


# --- a served ledger and its witnesses -----------------------------------------------------


def test_served_ledger_gets_cosigned_and_keeps_the_quorum(
    db: Db, tmp_path: Path, servers: Callable[..., Server], witnesses: Callable[..., WitnessProcess]
) -> None:
    data = tmp_path / "data"
    vkey = _init(data, db.url)
    w1 = witnesses("witness-one.example/w", [vkey])
    w2 = witnesses("witness-two.example/w", [vkey])
    policy = _policy(tmp_path / "policy.txt", vkey, [w1, w2], "all")
    server = servers(data, db.url, env={
        "FILIERA_WITNESS_POLICY": str(policy), "FILIERA_WITNESS_INTERVAL": "0.2", "FILIERA_WITNESS_TIMEOUT": "2",
    })
    admin = Member("admin", read_key_file(data / "admin.key").signing_key)
    log_verifier = verifier_for(ORIGIN, read_key_file(data / "ledger.key").public_key.raw)

    def grow(n: int) -> int:
        for _ in range(n):
            status, body = http_json("POST", server.url + "/v1/entries", register(admin, Member(f"m-{random.randrange(10**9)}"), ["producer"]))
            assert status == 201, body
        return int(server.get_json("/v1/ledger")[1]["tree_size"])

    def published() -> tuple[int, list[str]]:
        status, note = _get_text(server, "/v1/checkpoint")
        if status != 200:
            return -1, []
        checkpoint = verify_checkpoint(note, verifier=log_verifier, origin=ORIGIN)
        _, found = cosignatures_in(note, [w1.cosigner.verifier, w2.cosigner.verifier])
        return checkpoint.tree_size, sorted(f.verifier.name for f in found)

    both = ["witness-one.example/w", "witness-two.example/w"]
    size = grow(3)
    _wait_for("the first cosigned checkpoint", lambda: published() == (size, both))

    w2.stop()
    witnessed = size
    size = grow(3)  # 201s: ingest does not wait for a dead witness
    assert size > witnessed
    # The live witness cosigns the new head; the quorum (both) is not met, so the published
    # checkpoint stays the last one that met it.
    _wait_for("witness one to cosign the new head", lambda: (WitnessState(w1.state).latest(ORIGIN) or Checkpoint(ORIGIN, 0, bytes(32))).tree_size == size)
    assert published() == (witnessed, both)

    w2.start()
    _wait_for("the catch-up after witness two returns", lambda: published() == (size, both))


# --- a forked ledger ---------------------------------------------------------------------


def _ledger(directory: Path) -> Settings:
    return Settings.from_env(
        {}, data_dir=directory, ledger_key_file=directory / "ledger.key",
        database_url=f"sqlite:///{directory / 'filiera.db'}", seal_interval=0.0,
    )


def _grow_in_process(settings: Settings, n: int, tag: str) -> int:
    from api import create_app

    app = create_app(settings, background_sealing=False)
    try:
        client = app.test_client()
        admin = Member("admin", read_key_file(settings.data_dir / "admin.key").signing_key)
        for i in range(n):
            resp = client.post("/v1/entries", json=register(admin, Member(f"{tag}-{i}"), ["producer"]))
            assert resp.status_code == 201, resp.json
        return int(client.get("/v1/ledger").json["tree_size"])
    finally:
        app.extensions["filiera"].store.dispose()


@pytest.mark.parametrize("fork_growth", [1, 2, 3], ids=["fork-shorter", "fork-same-size", "fork-longer"])
def test_witness_refuses_the_second_history(
    tmp_path: Path, witnesses: Callable[..., WitnessProcess], fork_growth: int
) -> None:
    from api.cli import init_ledger

    a = _ledger(tmp_path / "a")
    init_ledger(a, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    n = _grow_in_process(a, 2, "shared")
    # The copy at size n: same key, same origin, same history so far.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    b = _ledger(tmp_path / "b")
    size_a = _grow_in_process(a, 2, "branch-a")
    size_b = _grow_in_process(b, fork_growth, "branch-b")
    assert size_b - n == fork_growth

    vkey = verifier_for(ORIGIN, read_key_file(a.ledger_key_file).public_key.raw).vkey
    w = witnesses("witness.example/w", [vkey])
    policy = _policy(tmp_path / "policy.txt", vkey, [w], "any")

    def cosign_now(settings: Settings) -> tuple[int, list[dict[str, Any]]]:
        result = run([*on(settings.data_dir, settings.database_url), "witness", "cosign-now", "--policy", str(policy), "--json"])
        return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]

    code, lines = cosign_now(a)
    assert code == 0 and lines[0]["status"] == "cosigned" and lines[-1]["quorum_met"] is True
    code, lines = cosign_now(b)
    assert code == 1, lines
    assert lines[0]["status"] == "conflict" and lines[-1] == {"ok": False, "tree_size": size_b, "quorum_met": False, "conflict": True}

    # The protocol's answers to branch b, sent by hand from the witness's size.
    b_note = _head_checkpoint(b)
    state = WitnessState(w.state).latest(ORIGIN)
    assert state is not None and state.tree_size == size_a
    if size_b == size_a:
        status, media, body = post_add_checkpoint(w.url, AddCheckpoint(size_a, (), b_note).format())
        assert (status, media, body) == (409, SIZE_MEDIA_TYPE, b"%d\n" % size_a)
    elif size_b > size_a:
        proof = _consistency(b, size_a, size_b)
        status, _, body = post_add_checkpoint(w.url, AddCheckpoint(size_a, proof, b_note).format())
        assert status == 422 and b"inconsistent_checkpoint" in body
    else:
        status, _, body = post_add_checkpoint(w.url, AddCheckpoint(size_a, (), b_note).format())
        assert status == 400  # old size beyond the checkpoint: branch b cannot even ask
    assert WitnessState(w.state).latest(ORIGIN) == state


def _head_checkpoint(settings: Settings) -> str:
    from ledger.storage.store import Store

    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
            assert head is not None
            return head.checkpoint
    finally:
        store.dispose()


def _consistency(settings: Settings, old: int, new: int) -> tuple[bytes, ...]:
    from ledger.merkle import build_proof, consistency_plan, plan_nodes
    from ledger.storage.store import Store

    store = Store.open(settings)
    try:
        plan = consistency_plan(old_size=old, new_size=new)
        with store.read() as conn:
            return tuple(build_proof(plan, store.nodes(conn, plan_nodes(plan))))
    finally:
        store.dispose()


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_add_checkpoint_never_rolls_the_witness_back(
    tmp_path: Path, witnesses: Callable[..., WitnessProcess]
) -> None:
    """16 threads, two worker processes, shuffled sizes from two branches of one log."""
    fork_at = 7
    main = TestLog("hammer.example/log").grow(64)
    fork = main.fork(fork_at).grow(64 - fork_at, "fork")
    branches = {"main": main, "fork": fork}
    # Two worker processes: the per-origin lock must hold across processes, not only threads.
    w = witnesses("witness.example/hammer", [main.verifier.vkey], workers=2)
    cosigned: list[tuple[str, int, str]] = []
    statuses: list[int] = []
    lock = threading.Lock()
    done = threading.Event()
    observed: list[int] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        known = 0
        shuffled = list(range(1, 65))
        rng.shuffle(shuffled)
        for attempt in range(24):
            # Half the time a size from a shuffled list (mostly stale by now), half the time
            # just ahead of what this thread last heard: then the threads race for each step.
            size = shuffled[attempt] if attempt % 2 else min(64, known + rng.randint(0, 3))
            size = max(size, 1)
            name = rng.choice(list(branches))
            log = branches[name]
            old = known if known <= size else 0
            request = AddCheckpoint(old, log.proof(old, size), log.checkpoint(size))
            status, _, body = post_add_checkpoint(w.url, request.format())
            with lock:
                statuses.append(status)
            if status == 200:
                with lock:
                    cosigned.append((name, size, body.decode().rstrip("\n")))
                known = size
            elif status == 409:
                known = int(body)

    def watch() -> None:
        state = WitnessState(w.state)
        while not done.is_set():
            latest = state.latest("hammer.example/log")
            observed.append(latest.tree_size if latest else 0)
            time.sleep(0.002)  # a reader, not a second hammer: leave the lock to the witness

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()

    assert set(statuses) <= {200, 400, 409, 422}, set(statuses)
    assert statuses.count(200) >= 1 and len(statuses) == 16 * 24
    assert observed == sorted(observed), "the witness's stored size decreased"
    final = WitnessState(w.state).latest("hammer.example/log")
    assert final is not None
    final_branch = next(n for n, log in branches.items() if log.body(final.tree_size) == final)
    for name, size, line in cosigned:
        log = branches[name]
        verify_cosignature(log.body(size), line, w.cosigner.verifier)
        # Everything cosigned is a prefix of the final view: one history, never two.
        proof = branches[final_branch].proof(size, final.tree_size)
        verify_consistency(old_size=size, new_size=final.tree_size, proof=list(proof), old_root=log.roots[size], new_root=final.root)
        if size > fork_at:
            assert name == final_branch
    assert sorted({s for _, s, _ in cosigned})[-1] == final.tree_size


# --- statuses over HTTP ----------------------------------------------------------------------


def test_add_checkpoint_statuses_over_http(tmp_path: Path, witnesses: Callable[..., WitnessProcess]) -> None:
    log = TestLog("status.example/log").grow(20)
    w = witnesses("witness.example/status", [log.verifier.vkey])
    assert post_add_checkpoint(w.url, log.request(0, 10).format())[0] == 200
    assert post_add_checkpoint(w.url, log.request(4, 15).format())[:3] == (409, SIZE_MEDIA_TYPE, b"10\n")
    assert post_add_checkpoint(w.url, TestLog("other.example/log").grow(2).request(0, 2).format())[0] == 404
    forged = AddCheckpoint(0, (), log.checkpoint(12, key=SigningKey.generate()))
    assert post_add_checkpoint(w.url, forged.format())[0] == 403
    assert post_add_checkpoint(w.url, b"old 10\nnot base64\n\n")[0] == 400
    good = log.request(10, 15)
    bad = AddCheckpoint(10, tuple(reversed(good.proof)), good.checkpoint)
    assert post_add_checkpoint(w.url, bad.format())[0] == 422
    status, _, body = post_add_checkpoint(w.url, good.format())
    assert status == 200
    note = add_signature_lines(good.checkpoint, body.decode().splitlines())
    assert [f.verifier for f in cosignatures_in(note, [w.cosigner.verifier])[1]] == [w.cosigner.verifier]


def test_serve_refuses_a_bad_witness_policy(tmp_path: Path) -> None:
    from .conftest import run_entry_point

    data = tmp_path / "data"
    url = f"sqlite:///{data / 'filiera.db'}"
    _init(data, url)
    policy = tmp_path / "policy.txt"
    policy.write_text("witness w1 not-a-vkey\nquorum w1\n")
    proc = run_entry_point([*on(data, url), "serve", "--port", "1"], env={"FILIERA_WITNESS_POLICY": str(policy)})
    assert proc.returncode == 2 and error_code(proc.stderr) == "invalid_witness_policy"
    assert "line 1" in proc.stderr
    cosign = run([*on(data, url), "witness", "cosign-now", "--policy", str(policy)])
    assert cosign.exit_code == 2 and error_code(cosign.stderr) == "invalid_witness_policy"
    policy.write_text("quorum none\n")
    cosign = run([*on(data, url), "witness", "cosign-now", "--policy", str(policy)])
    assert cosign.exit_code == 2 and error_code(cosign.stderr) == "configuration_error"
    assert run([*on(data, url), "witness", "cosign-now"]).exit_code == 2  # no policy at all
