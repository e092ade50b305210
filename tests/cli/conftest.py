"""Helpers for the `filiera` command tests: run it in-process (CliRunner) or as the installed
entry point, start `filiera serve` on a free loopback port, and give a module a database of
its own on either backend (tests/conftest.py's ``db`` is per test).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from api.cli import cli

from ..conftest import BACKENDS, drop_pg_schema, new_pg_schema
from ..procs import free_port

REPO = Path(__file__).resolve().parents[2]
FILIERA = str(Path(sys.executable).with_name("filiera"))
SERVER_START_LIMIT_S = 60.0


def run(args: Sequence[str], *, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """`filiera ARGS` in this process. stdout and stderr stay apart (result.stdout/.stderr)."""
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def on(data_dir: Path, url: str) -> list[str]:
    """The global options that point a command at one data directory and database."""
    return ["--data-dir", str(data_dir), "--database-url", url]


def error_code(stderr: str) -> str:
    """The stable code of an `error: <code>: <detail>` line."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0].split(":")[1].strip()


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILIERA_")}
    env.update(extra or {})
    return env


def run_entry_point(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed `filiera` script, as a user runs it."""
    return subprocess.run(
        [FILIERA, *args], capture_output=True, text=True, env=clean_env(env), cwd=REPO, timeout=timeout
    )


# --- a database for a whole module -------------------------------------------------------


@dataclass
class ModuleDbs:
    """Fresh databases on one backend, dropped when the module ends."""

    backend: str
    root: Path
    schemas: list[str]

    def schema(self, url: str) -> str:
        """The PostgreSQL schema a URL from :meth:`new` points at."""
        return url.rsplit("search_path%3D", 1)[1]

    def new(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.root / (name + '.db')}"
        schema, url = new_pg_schema("c_")
        self.schemas.append(schema)
        return url


@pytest.fixture(scope="module", params=BACKENDS)
def module_dbs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleDbs]:
    dbs = ModuleDbs(request.param, tmp_path_factory.mktemp(f"dbs-{request.param}"), [])
    yield dbs
    for schema in dbs.schemas:
        drop_pg_schema(schema)


# --- `filiera serve` ---------------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
        except OSError:
            return ""


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a server this suite started: TERM its own process group, KILL if it lingers."""
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


def start_server(data_dir: Path, url: str, log_dir: Path, *, workers: int = 2, env: dict[str, str] | None = None) -> Server:
    """`filiera serve --workers N --port P` on loopback; returns once /v1/health answers ok.
    ``env`` adds variables (e.g. FILIERA_WITNESS_POLICY) to a clean environment."""
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        log = log_dir / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [FILIERA, *on(data_dir, url), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                # Suites share one server per module from one address: no rate limits here
                # (tests/integration/test_serve_limits.py tests them).
                env=clean_env({"FILIERA_LOG_LEVEL": "WARNING", "FILIERA_RATE_LIMIT_IP": "off", "FILIERA_RATE_LIMIT_MEMBER": "off", **(env or {})}),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        server = Server(port, proc, log)
        deadline = time.monotonic() + SERVER_START_LIMIT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = server.get_json("/v1/health")
                if status == 200 and body.get("status") == "ok":
                    return server
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.1)
        stop(proc)
        if "Address already in use" not in server.log_tail():
            pytest.fail(f"filiera serve did not become healthy:\n{server.log_tail()}")
    pytest.fail("could not bind filiera serve to a free loopback port")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `filiera serve` processes for one test; all stopped at teardown."""
    started: list[Server] = []

    def start(data_dir: Path, url: str, *, workers: int = 2, env: dict[str, str] | None = None) -> Server:
        server = start_server(data_dir, url, tmp_path, workers=workers, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server.process)
