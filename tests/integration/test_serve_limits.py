"""TESTPLAN T8 through a real `filiera serve` (gunicorn, gthread workers): body, request line
and header limits; a rate limit that holds across all workers; metrics summed over workers;
JSON request logs that carry no key, signature or body; worker memory under abuse; slow clients
that do not starve others; an auditor paging at the maximum page size beside a writer; the run
directory's life cycle.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.client import http_json
from ledger.config import Settings
from ledger.httpsig import sign_request
from ledger.keys import read_key_file

from ..conftest import LedgerEnv
from ..factories import Member, register
from .conftest import Server

MiB = 1024 * 1024


def _raw(server: Server, request: bytes, *, timeout: float = 30) -> tuple[int, bytes]:
    """Send bytes as they are; return the status code and the whole answer."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    answer = b"".join(chunks)
    return int(answer.split(b" ", 2)[1]), answer


def _get(server: Server, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request on a connection of its own, so that the workers share the load."""
    conn = server.connection(timeout=30)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _workers(server: Server) -> list[int]:
    """The gunicorn master's children (the master is the process `filiera serve` became)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


# --- limits of size ------------------------------------------------------------------------


def test_size_limits_of_body_request_line_and_headers(
    ledger_env: LedgerEnv, start_server: Callable[..., Server]
) -> None:
    server = start_server(ledger_env.settings, workers=2, via_cli=True)
    limit = ledger_env.settings.max_body_bytes
    body = b"{" + b" " * (2 * limit) + b"}"
    status, answer = _raw(
        server,
        b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body,
    )
    assert status == 413
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "payload_too_large"

    line_ok = b"GET /v1/ledger?" + b"a" * 4000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _raw(server, line_ok)[0] == 200
    line_8k = b"GET /v1/ledger?" + b"a" * 8192 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    # gunicorn answers a request line over limit_request_line with 414 URI Too Long
    # (RFC 9110 §15.5.15), the precise form of TESTPLAN T8's 400.
    assert _raw(server, line_8k)[0] == 414

    def with_headers(n: int) -> bytes:
        # Host and Connection count among the n header fields.
        extra = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(n - 2))
        return f"GET /v1/ledger HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode()

    assert _raw(server, with_headers(100))[0] == 200
    # 431 Request Header Fields Too Large (RFC 6585 §5), likewise.
    assert _raw(server, with_headers(101))[0] == 431
    big_field = b"GET /v1/ledger HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 8200 + b"\r\nConnection: close\r\n\r\n"
    assert _raw(server, big_field)[0] == 431
    # The server is still serving after all of that.
    assert server.get_json("/v1/health/ready")[0] == 200


def test_worker_memory_stays_flat_under_oversized_requests(
    ledger_env: LedgerEnv, start_server: Callable[..., Server]
) -> None:
    """TESTPLAN T8: worker RSS stays within 50 MB of its baseline."""
    server = start_server(ledger_env.settings, workers=2, via_cli=True)
    for _ in range(20):  # warm every worker up first: the baseline is a serving worker
        _get(server, "/v1/ledger")
    baseline = {pid: _rss_kib(pid) for pid in _workers(server)}
    big = b"x" * (2 * ledger_env.settings.max_body_bytes)
    for _ in range(100):
        conn = server.connection()
        conn.request("POST", "/v1/entries", body=big, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 413
    for _ in range(200):
        assert _get(server, "/v1/checkpoint").status == 200
    after = {pid: _rss_kib(pid) for pid in _workers(server)}
    assert set(after) == set(baseline), "a worker was replaced"
    for pid, kib in after.items():
        assert kib - baseline[pid] < 50 * 1024, f"worker {pid} grew from {baseline[pid]} to {kib} KiB"


# --- rate limits across workers ------------------------------------------------------------


@pytest.mark.parametrize("scope", ["ip", "member"])
def test_rate_limit_holds_across_all_workers(
    ledger_env: LedgerEnv, start_server: Callable[..., Server], tmp_path: Path, scope: str
) -> None:
    """L + 10 requests within the window over 3 workers: at most L + 1 accepted (exactly L
    here, the counter being exact), the rest 429 rate_limited with Retry-After."""
    L = 12
    run_dir = tmp_path / "run"
    server = start_server(
        ledger_env.settings,
        workers=3,
        via_cli=True,
        env={
            "FILIERA_RATE_LIMIT_IP": f"{L}/minute" if scope == "ip" else "off",
            "FILIERA_RATE_LIMIT_MEMBER": f"{L}/minute" if scope == "member" else "off",
            "FILIERA_RUN_DIR": str(run_dir),
            "FILIERA_LOG_LEVEL": "DEBUG",
            # At most 2 open connections per worker, so that a burst cannot all be accepted
            # by whichever worker wakes first: it must be spread over the workers.
            "GUNICORN_CMD_ARGS": "--worker-connections 2",
        },
    )
    admin = ledger_env.admin
    _warm_up(server, workers=3)

    def one(start: threading.Barrier) -> http.client.HTTPResponse:
        url = f"{server.base}/v1/participants"
        headers = dict(sign_request("GET", url, admin.key)) if scope == "member" else {}
        start.wait()
        return _get(server, "/v1/participants" if scope == "member" else "/v1/ledger", headers)

    responses = _burst(one, L + 10)
    statuses = [r.status for r in responses]
    retry_after = [r.getheader("Retry-After") for r in responses]
    for r in responses:
        if r.status == 429:
            assert r.getheader("Content-Type") == "application/problem+json"
    accepted = statuses.count(200)
    assert accepted <= L + 1 and accepted == L, statuses
    assert statuses.count(429) == 10, statuses
    assert all(1 <= int(r) <= 60 for s, r in zip(statuses, retry_after) if s == 429)
    assert all(r is None for s, r in zip(statuses, retry_after) if s == 200)
    # The requests really were spread over the workers (each request line names its pid).
    route = "/v1/participants" if scope == "member" else "/v1/ledger"
    assert len(_pids(server, route)) >= 2


def _burst(one: Callable[[threading.Barrier], http.client.HTTPResponse], n: int) -> list[http.client.HTTPResponse]:
    """``n`` requests at once, each on its own connection, as a burst of real clients."""
    start = threading.Barrier(n)
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: one(start), range(n)))


def _pids(server: Server, route: str) -> set[int]:
    """The workers that logged a request line for ``route``."""
    pids = set()
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("route") == route:
                pids.add(record["pid"])
    return pids


def _warm_up(server: Server, *, workers: int) -> None:
    """Wait until every worker has answered a (never limited) health probe: gunicorn reports
    the server up when the first worker is, and the others may still be starting."""
    deadline = time.monotonic() + 60
    while len(_pids(server, "/v1/health/live")) < workers:
        assert time.monotonic() < deadline, f"not every worker answered: {_pids(server, '/v1/health/live')}"

        def probe(start: threading.Barrier) -> http.client.HTTPResponse:
            start.wait()
            return _get(server, "/v1/health/live")

        _burst(probe, 12)


# --- metrics over workers ------------------------------------------------------------------


def test_metrics_add_up_every_worker(ledger_env: LedgerEnv, start_server: Callable[..., Server]) -> None:
    server = start_server(ledger_env.settings, workers=3, via_cli=True)
    for _ in range(30):
        assert _get(server, "/v1/checkpoint").status == 200
    conn = server.connection()
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200
    samples = _samples(text)
    key = ("filiera_http_requests_total", frozenset({"method": "GET", "route": "/v1/checkpoint", "status": "200"}.items()))
    assert samples[key] == 30
    assert samples[("filiera_tree_size", frozenset())] == 1
    # Through a proxy (a forwarding header), /metrics is not there by default.
    proxied = _get(server, "/metrics", {"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 404


# --- logs ----------------------------------------------------------------------------------


def test_json_logs_carry_request_ids_and_no_secret(
    ledger_env: LedgerEnv, start_server: Callable[..., Server]
) -> None:
    server = start_server(ledger_env.settings, workers=2, via_cli=True, env={"FILIERA_LOG_LEVEL": "DEBUG"})
    admin_file = read_key_file(ledger_env.settings.data_dir / "admin.key")
    ledger_file = read_key_file(ledger_env.settings.ledger_key_file)
    member = Member("frantoio")
    env = register(ledger_env.admin, member, ["processor"], name="Frantoio Segreto S.r.l.")
    status, receipt = http_json("POST", f"{server.base}/v1/entries", body=env, headers={"X-Request-Id": "trace-42"})
    assert status == 201
    entry_url = f"{server.base}/v1/entries/{receipt['id']}"
    signed = sign_request("GET", entry_url, ledger_env.admin.key)
    conn = server.connection()
    conn.request("GET", f"/v1/entries/{receipt['id']}", headers=signed)
    read = conn.getresponse()
    read.read()
    conn.close()
    assert read.status == 200
    assert http_json("POST", f"{server.base}/v1/entries", body={"payload": {}, "signatures": []})[0] == 400
    assert http_json("GET", f"{server.base}/v1/participants")[0] == 401
    log_text = _wait_for_lines(server, "trace-42")

    records = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    requests = [r for r in records if r["logger"] == "filiera.request"]
    assert len(requests) >= 4
    first = next(r for r in requests if r["request_id"] == "trace-42")
    assert (first["method"], first["route"], first["status"]) == ("POST", "/v1/entries", 201)
    read_line = next(r for r in requests if r.get("route") == "/v1/entries/<entry_id>")
    assert read_line["member"] == "admin"
    assert all(len(r["request_id"]) >= 1 for r in requests)

    secrets_ = {
        "admin private key": _private_b64(ledger_env.settings.data_dir / "admin.key"),
        "ledger private key": _private_b64(ledger_env.settings.ledger_key_file),
        "admin public key": admin_file.signing_key.public_key.b64,
        "ledger public key": ledger_file.signing_key.public_key.b64,
        "member public key": member.public_key,
        "entry signature": env["signatures"][0]["sig"],
        "entry nonce": env["payload"]["nonce"],
        "participant name (a body field)": "Frantoio Segreto",
        "request signature": signed["Signature"].split(":")[1],
    }
    for what, secret in secrets_.items():
        assert secret not in log_text, f"the log holds the {what}"
    # gunicorn names the address it listens on; Filiera's own lines name no client address.
    assert not any("127.0.0.1" in json.dumps(r) for r in records)


def _private_b64(path: Path) -> str:
    value: str = json.loads(path.read_text())["private_key"]
    return value


def _wait_for_lines(server: Server, marker: str) -> str:
    """The server's log once the line with ``marker`` is written (workers log as they go)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.log.read_text(errors="replace")
        if marker in text and text.count('"logger":"filiera.request"') >= 4:
            return text
        time.sleep(0.05)
    return server.log.read_text(errors="replace")


# --- slow clients ----------------------------------------------------------------------------


@contextmanager
def _tricklers(server: Server, n: int) -> Iterator[list[socket.socket]]:
    """``n`` clients that send a request's head one byte at a time and never finish it."""
    socks = [socket.create_connection((server.host, server.port), timeout=30) for _ in range(n)]
    stop = threading.Event()

    def trickle() -> None:
        head = b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        i = 0
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(head[i % len(head) : i % len(head) + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for s in socks:
            s.close()


def test_slow_clients_do_not_starve_normal_ones(ledger_env: LedgerEnv, start_server: Callable[..., Server]) -> None:
    """gthread: a client that trickles its request holds one thread, not a worker, and one
    that connects and sends nothing holds no thread at all (gunicorn parks it in the poller
    until its first byte, for keepalive seconds). A sync worker would be stalled by a single
    trickler. More tricklers than a worker has threads can stall requests queued behind
    them: that is what a buffering proxy is for (docs/operations.md)."""
    server = start_server(ledger_env.settings, workers=2, via_cli=True)
    silent = [socket.create_connection((server.host, server.port), timeout=30) for _ in range(20)]
    try:
        with _tricklers(server, 3):  # fewer than the 4 threads of any one worker
            for _ in range(10):
                assert _get(server, "/v1/checkpoint").status == 200
    finally:
        for s in silent:
            s.close()


# --- the run directory ---------------------------------------------------------------------


def test_run_directory_is_emptied_at_start(
    ledger_env: LedgerEnv, start_server: Callable[..., Server], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "metrics").mkdir(parents=True)
    stale = run_dir / "metrics" / "counter_999999.db"
    stale.write_bytes(b"stale")
    (run_dir / "rate-limits.sqlite").write_bytes(b"stale")
    server = start_server(
        ledger_env.settings, workers=1, via_cli=True,
        env={"FILIERA_RUN_DIR": str(run_dir), "FILIERA_RATE_LIMIT_IP": "100/minute"},
    )
    assert not stale.exists()
    assert _get(server, "/v1/checkpoint").status == 200
    assert (run_dir / "rate-limits.sqlite").read_bytes() != b"stale"


def test_private_run_directory_is_removed_when_the_server_stops(
    ledger_env: LedgerEnv, start_server: Callable[..., Server], tmp_path: Path
) -> None:
    from .conftest import _stop

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = start_server(ledger_env.settings, workers=2, via_cli=True, env={"TMPDIR": str(tmp)})
    assert _get(server, "/v1/checkpoint").status == 200
    (run_dir,) = tmp.glob("filiera-run-*")
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert any((run_dir / "metrics").glob("counter_*.db"))
    _stop(server.process)
    assert not run_dir.exists()


# --- an auditor paging beside a writer -----------------------------------------------------


def test_an_auditor_paging_at_the_maximum_page_size_keeps_up_with_a_writer(
    ledger_env: LedgerEnv, start_server: Callable[..., Server]
) -> None:
    """TESTPLAN T8: while a supplier posts entries one by one, an auditor pages GET /v1/blocks at
    the largest page size without pause. Neither is refused or starved: every entry is
    acknowledged, every page is a contiguous, hash-linked run of blocks, and once the writer
    stops the auditor's next page reaches the head. The lag (blocks the auditor had not read
    yet when it looked) is printed as the figure."""
    page_max = ledger_env.settings.page_max
    server = start_server(
        ledger_env.settings, workers=2, via_cli=True,
        env={"FILIERA_RATE_LIMIT_IP": "off", "FILIERA_RATE_LIMIT_MEMBER": "off"},
    )
    admin = ledger_env.admin
    done = threading.Event()
    acknowledged: list[int] = []
    writer_errors: list[str] = []

    def writer() -> None:
        conn = server.connection(timeout=60)
        try:
            for i in range(300):
                body = json.dumps(register(admin, Member(f"paged-{i}"), ["producer"])).encode()
                conn.request("POST", "/v1/entries", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 201:
                    writer_errors.append(f"{resp.status} {data[:200]!r}")
                else:
                    acknowledged.append(json.loads(data)["index"])
        finally:
            conn.close()
            done.set()

    chain: list[dict[str, Any]] = []
    pages_while_writing = 0
    lags: list[int] = []
    conn = server.connection(timeout=60)

    def page() -> list[dict[str, Any]]:
        path = f"/v1/blocks?from={len(chain)}&limit={page_max}"
        # Block listings are for members: the admin here stands for the consortium's auditor.
        conn.request("GET", path, headers=dict(sign_request("GET", f"{server.base}{path}", admin.key)))
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, data[:300]
        blocks: list[dict[str, Any]] = json.loads(data)["blocks"]
        assert len(blocks) <= page_max
        for b in blocks:
            assert b["header"]["height"] == len(chain), "pages are contiguous"
            if chain:
                assert b["header"]["prev"] == chain[-1]["hash"], "and hash-linked"
            chain.append(b)
        return blocks

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not done.is_set():
            page()
            pages_while_writing += 1
            status, head = server.get_json("/v1/ledger")
            assert status == 200
            lags.append(int(head["height"]) + 1 - len(chain))
        assert writer_errors == []
        assert len(acknowledged) == 300
        page()
        status, head = server.get_json("/v1/ledger")
    finally:
        thread.join()
        conn.close()
    assert len(chain) == int(head["height"]) + 1, "one more page after the writer stopped reaches the head"
    assert chain[-1]["header"]["tree_size"] == int(head["tree_size"]) == max(acknowledged) + 1
    assert pages_while_writing >= 2, "the auditor really read while the writer wrote"
    print(
        f"\nT8 auditor beside a writer: {len(acknowledged)} entries in {len(chain)} blocks; "
        f"{pages_while_writing} pages read while writing; lag when looking: max {max(lags)}, "
        f"median {sorted(lags)[len(lags) // 2]} blocks"
    )


# --- replay across workers -----------------------------------------------------------------


def test_a_hundred_concurrent_copies_over_every_worker_make_one_leaf(
    ledger_env: LedgerEnv, start_server: Callable[..., Server]
) -> None:
    """TESTPLAN T5: the same entry posted 100 times at once, each on its own connection, spread
    over 3 workers: one leaf; every answer is 201 (the one that sealed it) or 200 (already
    present) with the same id, index and leaf hash."""
    server = start_server(
        ledger_env.settings, workers=3, via_cli=True,
        # DEBUG logs a request line per request, naming the worker's pid (see _pids).
        env={"FILIERA_RATE_LIMIT_IP": "off", "FILIERA_RATE_LIMIT_MEMBER": "off", "FILIERA_LOG_LEVEL": "DEBUG"},
    )
    _warm_up(server, workers=3)
    status, before = server.get_json("/v1/ledger")
    assert status == 200
    body = json.dumps(register(ledger_env.admin, Member("copied"), ["producer"])).encode()

    def one(start: threading.Barrier) -> tuple[int, dict[str, Any]]:
        conn = server.connection(timeout=120)
        start.wait()
        try:
            conn.request("POST", "/v1/entries", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    start = threading.Barrier(100)
    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(lambda _: one(start), range(100)))
    statuses = sorted(s for s, _ in answers)
    assert set(statuses) <= {200, 201}, statuses
    assert statuses.count(201) >= 1
    assert {(a["id"], a["index"], a["leaf_hash"]) for _, a in answers} == {
        (answers[0][1]["id"], int(before["tree_size"]), answers[0][1]["leaf_hash"])
    }
    status, after = server.get_json("/v1/ledger")
    assert int(after["tree_size"]) == int(before["tree_size"]) + 1
    assert len(_pids(server, "/v1/entries")) >= 2, "the copies reached more than one worker"
    print(f"\nT5 100 concurrent copies over 3 workers: 1 leaf; answers {statuses.count(201)} x 201, {statuses.count(200)} x 200")
