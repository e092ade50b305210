"""Scale-out, part 2 (docs/operations.md, "Scaling out"): a read-only node on a real PostgreSQL
streaming replica, started by the test on loopback.

The fixture makes a primary cluster of its own with ``initdb`` in a temporary directory
(nothing of the shared server at 5432 is touched), a hot standby of it with ``pg_basebackup
-R``, and stops both (``pg_ctl stop -m immediate``) and removes them whatever happens. As root
the PostgreSQL programs run as the ``postgres`` user (``runuser``), since a cluster cannot be
owned by root.

Without the PostgreSQL server programs the test is skipped, saying why; with
``FILIERA_REQUIRE_PG_BINARIES=1`` (set by ``.ci/run``) it fails instead.

A normal node serves the primary, ``filiera serve --read-only`` the standby. Entries are
posted to the primary; once the standby has replayed them, the read-only node must serve the
same checkpoint, inclusion proofs that verify against it, the same provenance of a lot, the
same facts feed (a signed read) and a product page, ``filiera verify --url`` against it must
pass, and a POST to it must get 503 ``read_only_node`` and write nothing. Once caught up it
must report its standby's lag (``filiera_replica_lag_seconds``, below the readiness limit) and be
ready. Replication lag is measured (``bench/out/replica_lag.json``), never asserted beyond that.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ledger.certificates import verify_certificate
from ledger.config import Settings, normalise_database_url
from ledger.errors import ConfigurationError
from ledger.httpsig import sign_request
from ledger.keys import SigningKey, read_key_file
from ledger.merkle import verify_inclusion
from ledger.notes import verifier_for, verify_checkpoint

from .. import pg_cluster
from ..factories import ORIGIN, Member, key_add, register
from ..pg_cluster import Cluster, Clusters
from ..supply import handoff, lot, origin
from .conftest import FILIERA, REPO, Server, server_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PROGRAMS = pg_cluster.PROGRAMS
REPLAY_LIMIT_S = 120.0
THREADS = 4
APPENDS = int(os.environ.get("FILIERA_REPLICA_APPENDS", "50"))
OUT_DIR = REPO / "bench" / "out"


def _unavailable(reason: str) -> None:
    if pg_cluster.required():
        pytest.fail(f"{reason} (FILIERA_REQUIRE_PG_BINARIES=1: apt-get install postgresql)")
    pytest.skip(reason)


def _bin_dir() -> Path:
    """The directory of initdb, pg_ctl and pg_basebackup (tests/pg_cluster.py)."""
    try:
        return pg_cluster.bin_dir(PROGRAMS)
    except pg_cluster.Unavailable as exc:
        _unavailable(str(exc))
        raise AssertionError("unreachable") from exc


def _clusters(bindir: Path) -> Clusters:
    try:
        return Clusters(bindir, prefix="filiera-replica-")
    except pg_cluster.Unavailable as exc:
        _unavailable(str(exc))
        raise AssertionError("unreachable") from exc


@dataclass
class Replication:
    primary: Cluster
    standby: Cluster
    clusters: Clusters


@pytest.fixture
def replication() -> Iterator[Replication]:
    clusters = _clusters(_bin_dir())
    try:
        primary = clusters.primary()
        standby = clusters.standby(primary)
        yield Replication(primary, standby, clusters)
    finally:
        clusters.stop_all()


def _scalar(url: str, sql: str) -> Any:
    engine = create_engine(normalise_database_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def wait_for_replay(rep: Replication) -> float:
    """Wait until the standby has replayed everything the primary has written so far; returns
    the seconds it took."""
    target = _scalar(rep.primary.url, "SELECT pg_current_wal_lsn()::text")
    began = time.monotonic()
    while time.monotonic() - began < REPLAY_LIMIT_S:
        caught_up = _scalar(rep.standby.url, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        if caught_up:
            return time.monotonic() - began
        time.sleep(0.02)
    pytest.fail(f"the standby did not replay up to {target} in {REPLAY_LIMIT_S:.0f} s\n{rep.clusters.logs()}")
    raise AssertionError("unreachable")


def request(server: Server, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = server.connection(timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post(server: Server, envelope: dict[str, Any]) -> dict[str, Any]:
    status, _, body = request(server, "POST", "/v1/entries", json.dumps(envelope).encode(), {"Content-Type": "application/json"})
    assert status == 201, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def signed_get(server: Server, path: str, member: Member) -> tuple[int, bytes]:
    headers = sign_request("GET", f"{server.base}{path}", member.key)
    status, _, body = request(server, "GET", path, headers=dict(headers))
    return status, body


def _gauges(server: Server) -> dict[str, float]:
    """The unlabelled samples of a node's /metrics (the test reaches it on loopback)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = request(server, "GET", "/metrics")
    assert status == 200, body
    return {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if not s.labels}


class _LagSampler:
    """While entries are posted: the primary's and the replica node's tree sizes, read at the
    same moments, and the primary's view of the standby's replay lag (pg_stat_replication)."""

    def __init__(self, primary: Server, replica: Server, primary_url: str) -> None:
        self.nodes = (primary, replica)
        self.url = primary_url
        self.size_gaps: list[int] = []
        self.replay_lags_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _size(self, server: Server) -> int:
        _, _, body = request(server, "GET", "/v1/health")
        return int(json.loads(body)["tree_size"])

    def _run(self) -> None:
        engine = create_engine(normalise_database_url(self.url))
        try:
            while not self._stop.is_set():
                try:
                    # The replica first: the gap includes whatever the primary sealed
                    # between the two reads, so it bounds the replica's lag from above.
                    replica = self._size(self.nodes[1])
                    primary = self._size(self.nodes[0])
                    self.size_gaps.append(primary - replica)
                    with engine.connect() as conn:
                        lag = conn.execute(
                            text("SELECT EXTRACT(EPOCH FROM replay_lag) * 1000 FROM pg_stat_replication")
                        ).scalar()
                    if lag is not None:
                        self.replay_lags_ms.append(float(lag))
                except (OSError, http.client.HTTPException, ValueError):
                    pass
                self._stop.wait(0.05)
        finally:
            engine.dispose()

    def __enter__(self) -> _LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _post_load(primary: Server, members: list[Member]) -> tuple[list[dict[str, Any]], float]:
    """APPENDS key.add entries per member, one thread each, to the primary; every answer."""
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def run(m: Member) -> None:
        mine = [post(primary, key_add(m, SigningKey.generate())) for _ in range(APPENDS)]
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=run, args=(m,)) for m in members]
    began = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return answers, time.perf_counter() - began


def test_a_read_only_node_on_a_streaming_replica(replication: Replication, tmp_path: Path, start_server: Callable[..., Server]) -> None:
    from api.cli import init_ledger

    rep = replication
    assert _scalar(rep.standby.url, "SELECT pg_is_in_recovery()") is True
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", ledger_key_file=tmp_path / "data" / "ledger.key",
        database_url=rep.primary.url, seal_interval=0.0,
    )
    init_ledger(settings, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    admin = Member("admin", read_key_file(settings.data_dir / "admin.key").signing_key)
    ledger_key = read_key_file(settings.ledger_key_file).signing_key.public_key.raw
    wait_for_replay(rep)

    primary = start_server(settings, workers=2, via_cli=True)
    standby_settings = dataclasses.replace(settings, database_url=rep.standby.url)
    # The startup checks (schema current, T12 durability settings) pass on the standby.
    replica = start_server(
        standby_settings, workers=2, via_cli=True, serve_args=["--read-only"],
        env={"FILIERA_PRIMARY_URL": primary.base},
    )

    # A lot with a story (origin, a handoff received at once: a shipment fact), then load.
    grove, mill = Member("grove"), Member("mill")
    suppliers = [Member(f"supplier-{i}") for i in range(THREADS)]
    for m, roles in [(grove, ["producer"]), (mill, ["processor"]), *((s, ["producer"]) for s in suppliers)]:
        post(primary, register(admin, m, roles))
    post(primary, origin(grove, lot("OLV-REPLICA-1")))
    post(primary, handoff(grove, mill, ["OLV-REPLICA-1"], cosign=True))
    with _LagSampler(primary, replica, rep.primary.url) as sampler:
        answers, load_seconds = _post_load(primary, suppliers)
        last_write = time.monotonic()
        # How long after the last acknowledged write the replica node serves the final tree.
        _, _, body = request(primary, "GET", "/v1/health")
        final_size = int(json.loads(body)["tree_size"])
        while True:
            _, _, body = request(replica, "GET", "/v1/health")
            if int(json.loads(body)["tree_size"]) >= final_size:
                break
            assert time.monotonic() - last_write < REPLAY_LIMIT_S, rep.clusters.logs()
            time.sleep(0.01)
        catch_up_s = time.monotonic() - last_write
    assert len(answers) == THREADS * APPENDS

    # The replica node reports its standby's lag (small: it has caught up) and is ready; the
    # primary, which replays nothing, has no such gauge.
    lag = _gauges(replica).get("filiera_replica_lag_seconds")
    assert lag is not None and 0 <= lag < standby_settings.ready_max_replica_lag, lag
    assert "filiera_replica_lag_seconds" not in _gauges(primary)
    status, _, body = request(replica, "GET", "/v1/health/ready")
    ready = json.loads(body)
    assert status == 200 and ready["checks"]["replica_lag"] == "ok", ready
    assert 0 <= ready["replica_lag"] < standby_settings.ready_max_replica_lag

    # The same checkpoint, byte for byte.
    _, _, primary_cp = request(primary, "GET", "/v1/checkpoint")
    status, _, replica_cp = request(replica, "GET", "/v1/checkpoint")
    assert status == 200 and replica_cp == primary_cp
    checkpoint = verify_checkpoint(replica_cp.decode(), verifier=verifier_for(ORIGIN, ledger_key), origin=ORIGIN)
    assert checkpoint.tree_size == final_size

    # Inclusion proofs from the replica node verify against its checkpoint.
    for answer in answers[:: max(1, len(answers) // 20)]:
        status, _, body = request(replica, "GET", f"/v1/proofs/inclusion?id={answer['id']}&tree_size={checkpoint.tree_size}")
        assert status == 200, body
        proof = json.loads(body)
        assert proof["index"] == answer["index"]
        verify_inclusion(
            leaf_hash=bytes.fromhex(proof["leaf_hash"]), index=proof["index"], tree_size=checkpoint.tree_size,
            proof=[bytes.fromhex(h) for h in proof["hashes"]], root=checkpoint.root,
        )

    # Provenance, certificate, facts feed (a signed read) and the product page.
    for path in ("/v1/lots/OLV-REPLICA-1/provenance", "/v1/lots/OLV-REPLICA-1/certificate"):
        ours, theirs = request(replica, "GET", path), request(primary, "GET", path)
        assert ours[0] == 200, ours[2]
        if path.endswith("provenance"):
            assert json.loads(ours[2]) == json.loads(theirs[2])
        else:
            # Signed by the ledger's key on the read-only node too; only the issue time differs.
            ours_cert, theirs_cert = json.loads(ours[2]), json.loads(theirs[2])
            verify_certificate(ours_cert, verifier_for(ORIGIN, ledger_key))
            ours_cert["certificate"].pop("issued_at"), theirs_cert["certificate"].pop("issued_at")
            assert ours_cert["certificate"] == theirs_cert["certificate"]
    status, feed = signed_get(replica, "/v1/analytics/facts?limit=100", admin)
    assert status == 200, feed
    assert json.loads(feed)["facts"], "no fact to compare"
    assert json.loads(feed)["facts"] == json.loads(signed_get(primary, "/v1/analytics/facts?limit=100", admin)[1])["facts"]
    status, _, page = request(replica, "GET", "/p/OLV-REPLICA-1")
    assert status == 200 and b"OLV-REPLICA-1" in page

    # `filiera verify --url` through the replica node, its reads signed by the admin.
    verified = subprocess.run(
        [FILIERA, "verify", "--url", replica.base, "--key", str(settings.data_dir / "admin.key"), "--json"],
        env=server_env(settings, {}), cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["entries"] == final_size

    # A write sent to the replica node: refused, naming the primary, and nothing written.
    pending_before = _scalar(rep.primary.url, "SELECT count(*) FROM pending")
    entry = key_add(suppliers[0], SigningKey.generate())
    status, headers, body = request(replica, "POST", "/v1/entries", json.dumps(entry).encode(), {"Content-Type": "application/json"})
    assert status == 503, body
    problem = json.loads(body)
    assert problem["code"] == "read_only_node" and problem["primary"] == primary.base
    assert headers["location"] == f"{primary.base}/v1/entries"
    wait_for_replay(rep)
    assert request(replica, "GET", "/v1/checkpoint")[2] == primary_cp
    assert request(primary, "GET", "/v1/checkpoint")[2] == primary_cp
    assert _scalar(rep.primary.url, "SELECT count(*) FROM pending") == pending_before
    from ledger.entries import parse_envelope

    entry_id = parse_envelope(entry, origin=ORIGIN).id
    assert request(primary, "GET", f"/v1/proofs/inclusion?id={entry_id}")[0] == 404

    for server in (primary, replica):
        log = server.log.read_text(errors="replace")
        assert "Traceback" not in log, server.log_tail()
    assert "could not count a view" not in replica.log.read_text(errors="replace")

    result = {
        "test": "read-only node on a PostgreSQL streaming replica (loopback)",
        "postgresql": _scalar(rep.primary.url, "SHOW server_version"),
        "appends": len(answers),
        "client_threads": THREADS,
        "primary_throughput_per_s": round(len(answers) / load_seconds, 1),
        "replica_catch_up_after_last_write_ms": round(catch_up_s * 1000, 1),
        "tree_size_gap_samples": len(sampler.size_gaps),
        "tree_size_gap_max": max(sampler.size_gaps, default=None),
        "tree_size_gap_mean": round(sum(sampler.size_gaps) / len(sampler.size_gaps), 2) if sampler.size_gaps else None,
        "pg_replay_lag_ms_max": round(max(sampler.replay_lags_ms), 2) if sampler.replay_lags_ms else None,
        "cores": os.cpu_count(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "replica_lag.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nreplica: {json.dumps(result)} -> {path}")


def test_a_rate_limit_store_on_a_standby_is_refused(replication: Replication, tmp_path: Path) -> None:
    """Counters that cannot be written would let every request through: refused at start."""
    from api import ratelimits
    from flask import Flask

    # The table exists on the primary, so the standby has it too: only the write would fail.
    uri = "sql+" + replication.primary.url
    from api.ratelimit_store import SqlStorage

    SqlStorage(uri).engine.dispose()
    wait_for_replay(replication)
    settings = Settings.from_env(
        {}, data_dir=tmp_path, rate_limit_storage="sql+" + replication.standby.url, read_only=True,
    )
    with pytest.raises(ConfigurationError, match="read-only standby"):
        ratelimits.register(Flask(__name__), settings)


@pytest.mark.parametrize("required", ["1", ""])
def test_missing_server_programs_skip_the_test_or_fail_it_in_ci(monkeypatch: pytest.MonkeyPatch, required: str) -> None:
    monkeypatch.setattr(sys.modules[__name__], "PROGRAMS", ("initdb-that-is-not-installed",))
    monkeypatch.setenv("FILIERA_REQUIRE_PG_BINARIES", required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="not installed"):
        _bin_dir()
