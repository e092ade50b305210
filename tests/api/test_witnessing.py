"""The ledger's side of witnessing, in-process on SQLite and PostgreSQL: witnesses are
`create_witness_app` instances reached through a stand-in for HTTP, so every answer is the
real witness's. (tests/cli/test_witness.py runs the same over loopback with real processes.)

Covered: cosigned checkpoints at GET /v1/checkpoint that verify with each witness's key; the
quorum (last quorum-met checkpoint while a witness is down, catch-up after); receipts of older
blocks carrying cosignatures; a witness holding another history reported as a conflict; a
policy that names other logs refused at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.witness_app import create_witness_app
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from ledger.cosignature import Cosigner, cosignatures_in
from ledger.storage import schema
from ledger.errors import ConfigurationError, Unavailable
from ledger.keys import SigningKey
from ledger.notes import Checkpoint, TlogProof, sign_checkpoint, split_note, verifier_for, verify_checkpoint
from ledger.witness_state import WitnessState
from ledger.clock import FixedClock
from ledger.witnessing import Witnessing

from ..conftest import LedgerEnv
from ..factories import ORIGIN, Member, post_entry, register


@dataclass
class FakeWitness:
    """A real witness app behind a switch: ``down`` makes it unreachable."""

    cosigner: Cosigner
    client: FlaskClient
    down: bool = False
    calls: int = 0


@dataclass
class Rig:
    app: Flask
    client: FlaskClient
    witnessing: Witnessing
    witnesses: dict[str, FakeWitness]
    env: LedgerEnv

    def grow(self, n: int = 1) -> list[dict[str, Any]]:
        envs = [register(self.env.admin, Member(f"member-{self.client.get('/v1/ledger').json['tree_size']}-{i}"), ["producer"]) for i in range(n)]
        for env in envs:
            assert post_entry(self.client, env).status_code == 201
        return envs

    def head_size(self) -> int:
        return int(self.client.get("/v1/ledger").json["tree_size"])


def _post(witnesses: dict[str, FakeWitness]) -> Callable[[str, bytes, float], tuple[int, str, bytes]]:
    def post(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
        witness = witnesses[url.split("//")[1].split("/")[0]]
        witness.calls += 1
        if witness.down:
            raise Unavailable(f"cannot reach {url}: connection refused")
        resp = witness.client.post("/add-checkpoint", data=body)
        return resp.status_code, resp.content_type, resp.data

    return post


@pytest.fixture
def rig_for(ledger_env: LedgerEnv, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    apps: list[Flask] = []

    def make(quorum: str = "all", count: int = 2, clock: FixedClock | None = None) -> Rig:
        vkey = verifier_for(ORIGIN, ledger_env.ledger_key.public_key.raw)
        witnesses: dict[str, FakeWitness] = {}
        lines = []
        for i in range(count):
            cosigner = Cosigner(f"witness{i}.example/w", SigningKey.generate())
            host = f"w{i}.test:7380"
            app = create_witness_app(cosigner=cosigner, logs={ORIGIN: [vkey]}, state_dir=tmp_path / f"w{i}", clock=clock)
            witnesses[host] = FakeWitness(cosigner, app.test_client())
            lines.append(f"witness w{i} {cosigner.verifier.vkey} http://{host}")
        names = " ".join(f"w{i}" for i in range(count))
        quorum_lines = ["quorum none"] if quorum == "none" else [f"group q {quorum} {names}", "quorum q"]
        policy = tmp_path / "policy.txt"
        policy.write_text("\n".join([f"log {vkey.vkey}", *lines, *quorum_lines]) + "\n")
        settings = replace(ledger_env.settings, witness_policy=policy)
        app = create_app(settings, background_sealing=False)
        apps.append(app)
        witnessing = app.extensions["filiera"].witnessing
        assert witnessing is not None
        witnessing.post = _post(witnesses)
        client = app.test_client()
        return Rig(app, client, witnessing, witnesses, ledger_env)

    yield make
    for app in apps:
        svc = app.extensions["filiera"]
        svc.witnessing.stop_background()
        svc.store.dispose()


def _verify_published(rig: Rig) -> tuple[int, list[str]]:
    """GET /v1/checkpoint: verify the ledger's signature and every witness's cosignature;
    return the size and the witnesses (key names) that cosigned."""
    resp = rig.client.get("/v1/checkpoint")
    assert resp.status_code == 200, resp.data
    note = resp.data.decode()
    vkey = verifier_for(ORIGIN, rig.env.ledger_key.public_key.raw)
    checkpoint = verify_checkpoint(note, verifier=vkey, origin=ORIGIN)
    _, found = cosignatures_in(note, [w.cosigner.verifier for w in rig.witnesses.values()])
    return checkpoint.tree_size, [f.verifier.name for f in found]


def test_checkpoint_cosigned_by_every_witness(rig_for: Callable[..., Rig]) -> None:
    rig = rig_for()
    rig.grow(3)
    results = rig.witnessing.round()
    assert [r.status for r in results] == ["cosigned", "cosigned"]
    assert _verify_published(rig) == (rig.head_size(), ["witness0.example/w", "witness1.example/w"])
    # Nothing new: the next round asks nobody.
    calls = [w.calls for w in rig.witnesses.values()]
    assert [r.status for r in rig.witnessing.round()] == ["current", "current"]
    assert [w.calls for w in rig.witnesses.values()] == calls
    # Growth: the witnesses get a consistency proof from the size they cosigned.
    rig.grow(5)
    assert [r.status for r in rig.witnessing.round()] == ["cosigned", "cosigned"]
    assert _verify_published(rig)[0] == rig.head_size()


def test_quorum_holds_the_last_witnessed_checkpoint_while_a_witness_is_down(rig_for: Callable[..., Rig]) -> None:
    rig = rig_for(quorum="all")
    before = rig.client.get("/v1/checkpoint")
    assert before.status_code == 503 and before.json["code"] == "checkpoint_not_witnessed"
    rig.grow(2)
    rig.witnessing.round()
    witnessed = rig.head_size()
    assert _verify_published(rig)[0] == witnessed
    down = rig.witnesses["w1.test:7380"]
    down.down = True
    rig.grow(3)  # ingest does not wait for witnesses
    assert [r.status for r in rig.witnessing.round()] == ["cosigned", "unreachable"]
    assert rig.head_size() > witnessed
    assert _verify_published(rig)[0] == witnessed
    # Paused after its failure, unless forced; then it catches up.
    assert [r.status for r in rig.witnessing.round()] == ["current", "waiting"]
    down.down = False
    assert [r.status for r in rig.witnessing.round(force=True)] == ["current", "cosigned"]
    assert _verify_published(rig) == (rig.head_size(), ["witness0.example/w", "witness1.example/w"])


def test_any_of_two_and_quorum_none(rig_for: Callable[..., Rig]) -> None:
    rig = rig_for(quorum="any")
    rig.witnesses["w1.test:7380"].down = True
    rig.grow(1)
    rig.witnessing.round()
    assert _verify_published(rig) == (rig.head_size(), ["witness0.example/w"])


def test_quorum_none_serves_the_head_with_what_it_has(rig_for: Callable[..., Rig]) -> None:
    rig = rig_for(quorum="none")
    rig.grow(1)
    assert _verify_published(rig) == (rig.head_size(), [])
    rig.witnessing.round()
    assert _verify_published(rig) == (rig.head_size(), ["witness0.example/w", "witness1.example/w"])


def test_receipts_of_witnessed_blocks_carry_the_cosignatures(rig_for: Callable[..., Rig]) -> None:
    rig = rig_for()
    (env,) = rig.grow(1)
    first = post_entry(rig.client, env)
    assert first.status_code == 200
    assert len(split_note(TlogProof.parse(first.json["tlog_proof"]).checkpoint)[1]) == 1  # the ledger's
    rig.witnessing.round()
    again = post_entry(rig.client, env)
    assert again.status_code == 200
    proof = TlogProof.parse(again.json["tlog_proof"])
    vkey = verifier_for(ORIGIN, rig.env.ledger_key.public_key.raw)
    checkpoint = proof.verify(leaf_hash=bytes.fromhex(again.json["leaf_hash"]), verifier=vkey, origin=ORIGIN)
    _, found = cosignatures_in(proof.checkpoint, [w.cosigner.verifier for w in rig.witnesses.values()])
    assert len(found) == 2 and checkpoint.tree_size == rig.head_size()


def test_a_witness_with_another_history_is_a_conflict(rig_for: Callable[..., Rig], tmp_path: Path) -> None:
    """The witness's record says it cosigned another tree at this ledger's size: refused (409
    at the same size), reported as a conflict, and nothing is stored."""
    rig = rig_for(quorum="any", count=1)
    rig.grow(2)
    size = rig.head_size()
    # Plant a record of a different root at our size, signed by our key (a fork elsewhere).
    forged = sign_checkpoint(Checkpoint(ORIGIN, size, bytes(32)), signing_key=rig.env.ledger_key)
    witness = rig.witnesses["w0.test:7380"]
    with WitnessState(tmp_path / "w0").locked(ORIGIN) as record:
        record.save(forged)
    (result,) = rig.witnessing.round()
    assert result.status == "conflict"
    assert rig.client.get("/v1/checkpoint").status_code == 503
    assert witness.calls >= 1


def test_a_policy_for_other_logs_is_refused(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    stranger = verifier_for("someone.else/log", SigningKey.generate().public_key.raw)
    policy = tmp_path / "policy.txt"
    policy.write_text(f"log {stranger.vkey}\nquorum none\n")
    with pytest.raises(ConfigurationError):
        create_app(replace(ledger_env.settings, witness_policy=policy), background_sealing=False)


def test_tlog_proof_against_the_witnessed_checkpoint(rig_for: Callable[..., Rig]) -> None:
    rig = rig_for(quorum="all")
    first, _ = rig.grow(2)
    rig.witnessing.round()
    witnessed = rig.head_size()
    (late,) = rig.grow(1)
    vkey = verifier_for(ORIGIN, rig.env.ledger_key.public_key.raw)
    entry = post_entry(rig.client, first).json
    resp = rig.client.get(f"/v1/proofs/tlog?id={entry['id']}")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    proof = TlogProof.parse(resp.data.decode())
    checkpoint = proof.verify(leaf_hash=bytes.fromhex(entry["leaf_hash"]), verifier=vkey, origin=ORIGIN)
    assert checkpoint.tree_size == witnessed
    _, found = cosignatures_in(proof.checkpoint, [w.cosigner.verifier for w in rig.witnesses.values()])
    assert len(found) == 2
    by_index = rig.client.get(f"/v1/proofs/tlog?index={entry['index']}")
    assert by_index.data == resp.data
    newer = rig.client.get(f"/v1/proofs/tlog?id={post_entry(rig.client, late).json['id']}")
    assert newer.status_code == 503 and newer.json["code"] == "checkpoint_not_witnessed"
    assert rig.client.get("/v1/proofs/tlog?id=" + "ab" * 32).json["code"] == "entry_not_found"
    assert rig.client.get(f"/v1/proofs/tlog?id={entry['id']}&index=0").json["code"] == "invalid_proof_request"


def test_tlog_proof_without_witnesses_is_against_the_head(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    assert post_entry(client, register(ledger_env.admin, Member("solo"), ["producer"])).status_code == 201
    resp = client.get("/v1/proofs/tlog?index=1", unsigned=True)
    assert resp.status_code == 200
    proof = TlogProof.parse(resp.data.decode())
    vkey = verifier_for(ORIGIN, ledger_env.ledger_key.public_key.raw)
    leaf = client.get("/v1/proofs/inclusion?index=1", unsigned=True).json["leaf_hash"]
    assert proof.verify(leaf_hash=bytes.fromhex(leaf), verifier=vkey, origin=ORIGIN).tree_size == 2
    # An index with no entry is a missing entry here (the inclusion proof calls it a bad request).
    missing = client.get("/v1/proofs/tlog?index=2", unsigned=True)
    assert (missing.status_code, missing.json["code"], missing.json["index"]) == (404, "entry_not_found", 2)
    assert client.get("/v1/proofs/inclusion?index=2", unsigned=True).json["code"] == "invalid_proof_request"


def test_ingest_never_waits_for_a_witness(rig_for: Callable[..., Rig]) -> None:
    """A witnessing round stuck inside a witness (a connection that never answers) holds no
    ledger lock: entries are sealed meanwhile."""
    rig = rig_for(quorum="all")
    entered, release = threading.Event(), threading.Event()

    def stuck(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
        entered.set()
        release.wait(60)
        raise Unavailable(f"cannot reach {url}: timed out")

    rig.witnessing.post = stuck
    rig.witnessing.interval = 0.05
    rig.witnessing.start_background()
    try:
        assert entered.wait(30)
        before = rig.head_size()
        rig.grow(3)
        assert rig.head_size() == before + 3
    finally:
        release.set()
        rig.witnessing.stop_background()


@pytest.mark.parametrize(
    "query",
    ["id=xyz", "index=-1", f"index={10**30}", "index=1.5", "id=" + "AB" * 32, "", "index=0&tree_size=1", "index=0&x=1"],
)
def test_tlog_proof_refuses_bad_queries(client: FlaskClient, query: str) -> None:
    resp = client.get(f"/v1/proofs/tlog?{query}", unsigned=True)
    assert resp.status_code == 400 and resp.json["code"] == "invalid_proof_request"


def test_certificates_of_a_witnessed_ledger_carry_the_cosignatures(rig_for: Callable[..., Rig]) -> None:
    """A quiet ledger's head is witnessed: the certificate's checkpoint (and so every proof in
    it) carries the witnesses' cosignatures, and still verifies offline."""
    from ledger import jcs
    from ledger.certificates import verify_certificate

    from ..supply import lot, origin

    rig = rig_for()
    grove = Member("grove-1")
    assert post_entry(rig.client, register(rig.env.admin, grove, ["producer"])).status_code == 201
    assert post_entry(rig.client, origin(grove, lot("LOT-W1"))).status_code == 201
    rig.witnessing.round()
    resp = rig.client.get("/v1/lots/LOT-W1/certificate")
    assert resp.status_code == 200
    document = jcs.loads(resp.data)
    vkey = verifier_for(ORIGIN, rig.env.ledger_key.public_key.raw)
    assert verify_certificate(document, vkey).lot == "LOT-W1"
    note = json_find_note(document)
    _, found = cosignatures_in(note, [w.cosigner.verifier for w in rig.witnesses.values()])
    assert len(found) == 2


def json_find_note(document: Any) -> str:
    """The checkpoint note inside a certificate document, wherever its format puts it."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith(ORIGIN + "\n") and "\n\n\u2014 " in value:
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(document)
    assert found, "no checkpoint note in the certificate"
    return found[0]


def test_a_witness_ahead_of_the_ledger_is_a_conflict_every_round(rig_for: Callable[..., Rig], tmp_path: Path) -> None:
    """The witness holds a larger size than this ledger (a restore from an old backup): its
    409 is a conflict, and later rounds report it again without asking for an impossible proof."""
    rig = rig_for(quorum="any", count=1)
    rig.grow(1)
    size = rig.head_size()
    ahead = sign_checkpoint(Checkpoint(ORIGIN, size + 5, bytes(32)), signing_key=rig.env.ledger_key)
    with WitnessState(tmp_path / "w0").locked(ORIGIN) as record:
        record.save(ahead)
    (first,) = rig.witnessing.round()
    assert first.status == "conflict" and str(size + 5) in first.detail
    (again,) = rig.witnessing.round(force=True)
    assert again.status == "conflict" and "beyond" in again.detail


def _cosignature_times(rig: Rig) -> dict[str, int]:
    """The timestamp of each witness's cosignature on the published checkpoint."""
    note = rig.client.get("/v1/checkpoint").data.decode()
    _, found = cosignatures_in(note, [w.cosigner.verifier for w in rig.witnesses.values()])
    return {f.verifier.name: f.timestamp for f in found}


def test_an_idle_ledger_is_cosigned_again_every_refresh_interval(rig_for: Callable[..., Rig]) -> None:
    """TESTPLAN T11: while no entry arrives, the published checkpoint's cosignatures are renewed
    once they are ``refresh`` seconds old, so a reader can tell a live ledger from a frozen one;
    before that, no witness is asked."""
    clock = FixedClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    rig = rig_for(clock=clock)
    rig.witnessing.refresh = 60.0
    rig.witnessing.clock = lambda: clock.now().timestamp()
    rig.grow(2)
    assert [r.status for r in rig.witnessing.round()] == ["cosigned", "cosigned"]
    size = rig.head_size()
    first = _cosignature_times(rig)
    assert set(first.values()) == {int(clock.now().timestamp())}

    clock.advance(timedelta(seconds=59))
    calls = [w.calls for w in rig.witnesses.values()]
    assert [r.status for r in rig.witnessing.round()] == ["current", "current"]
    assert [w.calls for w in rig.witnesses.values()] == calls

    for _ in range(3):
        clock.advance(timedelta(seconds=61))
        results = rig.witnessing.round()
        assert [(r.status, r.tree_size) for r in results] == [("renewed", size), ("renewed", size)]
        times = _cosignature_times(rig)
        assert set(times.values()) == {int(clock.now().timestamp())}, "the newest cosignature is published"
        assert _verify_published(rig) == (size, sorted(first))
    # The first cosignatures and every renewal are kept, append-only.
    with rig.app.extensions["filiera"].store.read() as conn:
        renewals = conn.execute(select(func.count()).select_from(schema.cosignature_renewals)).scalar_one()
        firsts = conn.execute(select(func.count()).select_from(schema.cosignatures)).scalar_one()
    assert (firsts, renewals) == (2, 6)
    store = rig.app.extensions["filiera"].store
    for sql in ("DELETE FROM cosignature_renewals", "UPDATE cosignature_renewals SET timestamp = timestamp + 1"):
        with pytest.raises(DBAPIError, match="append-only"), store.write() as conn:
            conn.exec_driver_sql(sql)
    # Growth is cosigned as before, and the renewal clock starts again from it.
    rig.grow(1)
    assert [r.status for r in rig.witnessing.round()] == ["cosigned", "cosigned"]
    assert [r.status for r in rig.witnessing.round()] == ["current", "current"]


def test_refresh_zero_never_asks_again(rig_for: Callable[..., Rig]) -> None:
    clock = FixedClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    rig = rig_for(clock=clock)
    rig.witnessing.refresh = 0.0
    rig.witnessing.clock = lambda: clock.now().timestamp()
    rig.grow(1)
    assert [r.status for r in rig.witnessing.round()] == ["cosigned", "cosigned"]
    clock.advance(timedelta(days=30))
    assert [r.status for r in rig.witnessing.round()] == ["current", "current"]


def test_the_refresh_setting_is_checked() -> None:
    from ledger.config import Settings

    assert Settings.from_env({"FILIERA_WITNESS_REFRESH": "30"}).witness_refresh == 30.0
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(ConfigurationError, match="FILIERA_WITNESS_REFRESH"):
            Settings.from_env({"FILIERA_WITNESS_REFRESH": bad})
