"""Fixtures for the storage suite and the sealing races: sealers over a ledger, the chain facts
every test ends by checking, and a real gunicorn server on a free loopback port.

The ``db`` and ``ledger_env`` fixtures (tests/conftest.py) give each test a fresh database on
SQLite and on PostgreSQL; everything here works on both.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ledger.config import Settings
from ledger.sealing import Sealer
from ledger.storage import schema as t
from ledger.storage.store import Store, make_engine
from ledger.verify import VerifyReport, verify_chain

from ..conftest import LedgerEnv
from ..factories import Member, register
from ..procs import free_port

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "api" / "gunicorn.conf.py"
FILIERA = str(Path(sys.executable).with_name("filiera"))
SERVER_START_LIMIT_S = 60.0


# --- sealers ---------------------------------------------------------------------------------


@pytest.fixture
def open_sealer(ledger_env: LedgerEnv) -> Iterator[Callable[..., Sealer]]:
    """Open a Store and a Sealer on the test's ledger, as one more process would; each one
    is stopped and disposed at teardown."""
    opened: list[Sealer] = []

    def factory(settings: Settings | None = None) -> Sealer:
        s = settings or ledger_env.settings
        sealer = Sealer(Store.open(s), signing_key=ledger_env.ledger_key, seal_timeout=s.seal_timeout)
        opened.append(sealer)
        return sealer

    yield factory
    for sealer in opened:
        sealer.stop_background()
        sealer.store.dispose()


def register_members(sealer: Sealer, admin: Member, ids: Sequence[str], roles: Sequence[str] = ("producer",)) -> list[Member]:
    """Register fresh members (one batch, so one block) and return them with their keys."""
    members = [Member(i) for i in ids]
    outcomes = sealer.submit_batch([register(admin, m, list(roles)) for m in members])
    assert [o.status for o in outcomes] == ["created"] * len(members), [o.error for o in outcomes]
    return members


@pytest.fixture
def raw_engine(ledger_env: LedgerEnv) -> Iterator[Engine]:
    """An engine on the test's database for raw SQL, configured as the ledger's own."""
    engine = make_engine(ledger_env.settings)
    yield engine
    engine.dispose()


# --- what every test checks at the end -----------------------------------------------------


@dataclass
class ChainFacts:
    report: VerifyReport
    indices: list[int]
    heights: list[int]
    block_sizes: list[int] = field(default_factory=list)


def check_chain(settings: Settings) -> ChainFacts:
    """The log's invariants, read straight from the database, then ``verify_chain`` over
    ``api.verify_sources.db_blocks`` (what ``filiera verify`` runs).

    Asserts: entry indices 0..n-1 with no gap or duplicate; block heights 0..h; every block's
    ``prev`` is the previous block's hash, so no two blocks share a ``prev``; blocks tile the
    index range exactly.
    """
    from api.verify_sources import db_blocks

    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            indices = [r.idx for r in conn.execute(select(t.entries.c.idx).order_by(t.entries.c.idx))]
            blocks = list(conn.execute(select(t.blocks).order_by(t.blocks.c.height)))
    finally:
        engine.dispose()
    assert indices == list(range(len(indices))), "entry indices have a gap or a duplicate"
    heights = [b.height for b in blocks]
    assert heights == list(range(len(blocks))), "block heights have a gap or a duplicate"
    prevs = [b.prev for b in blocks]
    assert len(set(prevs)) == len(prevs), "two blocks share a prev"
    for before, after in zip(blocks, blocks[1:]):
        assert after.prev == before.hash, f"block {after.height} does not link to block {before.height}"
        assert after.first_index == before.tree_size, f"block {after.height} does not start where {before.height} ended"
    assert blocks[-1].tree_size == len(indices)

    source, total, node_check = db_blocks(settings)
    report = verify_chain(source, node_check=node_check)
    assert report.entries == total == len(indices)
    assert report.blocks == len(blocks)
    return ChainFacts(report, indices, heights, [b.tree_size - b.first_index for b in blocks])


# --- a real server -------------------------------------------------------------------------


@dataclass
class Server:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connection(self, timeout: float = 60.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get_json(self, path: str) -> tuple[int, Any]:
        conn = self.connection(timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def server_env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILIERA_")}
    env.update(
        {
            "FILIERA_DATA_DIR": str(settings.data_dir),
            "FILIERA_DATABASE_URL": settings.database_url,
            "FILIERA_LEDGER_KEY_FILE": str(settings.ledger_key_file),
            "FILIERA_SEAL_TIMEOUT": str(settings.seal_timeout),
            "FILIERA_LOG_LEVEL": "WARNING",
            # The load tests measure the ledger, not the limiter, and send thousands of
            # requests from one address; test_serve_limits.py sets limits where it tests them.
            "FILIERA_RATE_LIMIT_IP": "off",
            "FILIERA_RATE_LIMIT_MEMBER": "off",
        }
    )
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server this fixture started: TERM its process group, then KILL if needed."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``gunicorn -c api/gunicorn.conf.py`` (what ``filiera serve`` execs) on a free
    loopback port, wait for ``/v1/health``, and stop it at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        settings: Settings, *, workers: int = 3, env: dict[str, str] | None = None, via_cli: bool = False,
        serve_args: Sequence[str] = (),
    ) -> Server:
        """``via_cli``: run ``filiera serve`` (its pre-flight check, then it execs gunicorn),
        with ``serve_args`` (e.g. ``--read-only``) on its command line."""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            log = tmp_path / f"gunicorn-{port}.log"
            if via_cli:
                args = [FILIERA, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), *serve_args]
            else:
                args = [
                    sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
                    "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--chdir", str(REPO),
                ]
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    args, env=server_env(settings, env or {}), stdout=out, stderr=subprocess.STDOUT,
                    cwd=REPO, start_new_session=True,
                )
            started.append(proc)
            server = Server("127.0.0.1", port, proc, log)
            deadline = time.monotonic() + SERVER_START_LIMIT_S
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    status, body = server.get_json("/v1/health")
                    if status == 200 and body["status"] == "ok":
                        return server
                except (OSError, http.client.HTTPException, ValueError):
                    pass
                time.sleep(0.1)
            _stop(proc)
            if "Address already in use" not in server.log_tail():
                pytest.fail(f"gunicorn did not become healthy:\n{server.log_tail()}")
        pytest.fail("could not bind gunicorn to a free loopback port")

    yield start
    for proc in started:
        _stop(proc)


def with_url_options(settings: Settings, option: str) -> Settings:
    """The same settings with one more libpq ``options`` switch (``-cname%3Dvalue``)."""
    url = settings.database_url
    if "options=" in url:
        url = url.replace("options=", f"options={option}%20", 1)
    else:
        url += ("&" if "?" in url else "?") + f"options={option}"
    return replace(settings, database_url=url)
