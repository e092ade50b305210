"""The system under test in T1 (hammer.py): a ledger on a fresh database (a SQLite file, or a
fresh schema in the PostgreSQL server at FILIERA_TEST_PG_URL), ``filiera serve`` over it on a
loopback port, and what is read back afterwards (the log's rows, ``filiera verify``).

On PostgreSQL this run's connections carry their own ``application_name``, so that a "backend
kill" (``pg_terminate_backend``, sent over a separate connection) reaches them and nothing
else. The PostgreSQL server itself is never signalled: it is shared with other work.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.keys import read_key_file

from ..factories import ORIGIN, Member, register
from ..run_versions import run_versions
from .checker import LogRow

__all__ = [
    "server_errors",
    "REPO", "PG_URL", "Db", "database", "pg_admin", "our_backends", "terminate", "free_port", "Server",
    "init_ledger", "register_suppliers", "log_rows", "pending_count", "verify_cli", "versions",
]

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PG_URL = os.environ.get("FILIERA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_LIMIT_S = 60.0
_CLI = "from api.cli import main; main()"
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


@dataclass
class Db:
    url: str
    app_name: str | None = None
    schema: str | None = None


# --- the database ----------------------------------------------------------------------------


def pg_admin() -> Any:
    from sqlalchemy import create_engine

    from ledger.config import normalise_database_url

    return create_engine(normalise_database_url(PG_URL), isolation_level="AUTOCOMMIT")


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[Db]:
    if backend == "sqlite":
        yield Db(f"sqlite:///{workdir / 'filiera.db'}")
        return
    schema = "t1_" + uuid.uuid4().hex[:12]
    admin = pg_admin()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in PG_URL else "?"
        # application_name marks this run's connections, so only they are ever terminated.
        yield Db(f"{PG_URL}{sep}options=-csearch_path%3D{schema}&application_name=filiera-{schema}", f"filiera-{schema}", schema)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def our_backends(admin: Any, app_name: str) -> list[int]:
    from sqlalchemy import text

    with admin.connect() as conn:
        rows = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :a AND pid <> pg_backend_pid()"),
            {"a": app_name},
        )
        return [int(r[0]) for r in rows]


def terminate(admin: Any, pids: list[int]) -> int:
    from sqlalchemy import text

    done = 0
    with admin.connect() as conn:
        for pid in pids:
            done += bool(conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar())
    return done


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILIERA_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "FILIERA_DATA_DIR": str(data_dir),
            "FILIERA_DATABASE_URL": url,
            "FILIERA_LEDGER_KEY_FILE": str(data_dir / "ledger.key"),
            "FILIERA_LOG_LEVEL": "WARNING",
            # Eight clients from one address: the limiter is not what this run tests.
            "FILIERA_RATE_LIMIT_IP": "off",
            "FILIERA_RATE_LIMIT_MEMBER": "off",
        }
    )
    return env


def _children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(name))
    return found


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", "/v1/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return False


class Server:
    """``filiera serve`` in its own session (so the whole gunicorn group can be killed),
    always on the same port so the clients need not know about restarts."""

    def __init__(self, data_dir: Path, url: str, port: int, workers: int, log: Path) -> None:
        self.data_dir, self.url, self.port, self.workers, self.log = data_dir, url, port, workers, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> float:
        """Start it; returns when it was started (time.monotonic()). ``wait``: until healthy."""
        args = [sys.executable, "-c", _CLI, "serve", "--host", HOST, "--port", str(self.port), "--workers", str(self.workers)]
        with self.log.open("ab") as out:
            started = time.monotonic()
            self.proc = subprocess.Popen(
                args, cwd=REPO, env=server_env(self.data_dir, self.url), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        if wait:
            self.wait_healthy()
        return started

    def wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_LIMIT_S
        while not _healthy(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"filiera serve exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"filiera serve not healthy after {START_LIMIT_S:.0f} s; see {self.log}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return _children(self.proc.pid)

    def kill_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        # Workers are in the same group; wait until none holds the port any more.
        deadline = time.monotonic() + 10
        while _children(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


# --- the run ---------------------------------------------------------------------------------


def init_ledger(data_dir: Path, url: str) -> Member:
    """``filiera init`` as an operator runs it; returns the admin."""
    subprocess.run(
        [sys.executable, "-c", _CLI, "--data-dir", str(data_dir), "--database-url", url, "init", "--origin", ORIGIN],
        check=True, capture_output=True, cwd=REPO, env=server_env(data_dir, url),
    )
    return Member("admin", read_key_file(data_dir / "admin.key").signing_key)


def register_suppliers(server: Server, admin: Member, count: int) -> tuple[list[Member], set[str]]:
    """Register the suppliers in one batch; returns them and the ids of their entries."""
    members = [Member(f"supplier-{i:02d}") for i in range(count)]
    status, body = server.post("/v1/entries/batch", {"entries": [register(admin, m, ["producer"]) for m in members]})
    if status != 200 or any(r["status"] != 201 for r in body["results"]):
        raise RuntimeError(f"registering the suppliers failed: {status} {body}")
    return members, {r["id"] for r in body["results"]}


def log_rows(url: str) -> list[LogRow]:
    from sqlalchemy import select

    from ledger.config import Settings
    from ledger.storage import schema as t
    from ledger.storage.store import make_engine

    engine = make_engine(Settings.from_env({}, database_url=url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(t.entries.c.idx, t.entries.c.id, t.entries.c.leaf_hash).order_by(t.entries.c.idx))
            return [LogRow(int(r.idx), str(r.id), str(r.leaf_hash)) for r in rows]
    finally:
        engine.dispose()


def pending_count(url: str) -> int:
    from sqlalchemy import func, select

    from ledger.config import Settings
    from ledger.storage import schema as t
    from ledger.storage.store import make_engine

    engine = make_engine(Settings.from_env({}, database_url=url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.pending).where(t.pending.c.status == "pending")).scalar_one())
    finally:
        engine.dispose()


def verify_cli(data_dir: Path, url: str, ledger_key: str) -> dict[str, Any]:
    """``filiera verify --json`` with the ledger key pinned: chain, links, roots, signatures."""
    proc = subprocess.run(
        [sys.executable, "-c", _CLI, "--data-dir", str(data_dir), "--database-url", url, "verify", "--json", "--ledger-key", ledger_key],
        capture_output=True, cwd=REPO, env=server_env(data_dir, url), timeout=600,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {"ok": False, "stdout": proc.stdout.decode(errors="replace")[-500:]}
    return {"exit": proc.returncode, "report": report, "stderr": proc.stderr.decode(errors="replace")[-300:] if proc.returncode else ""}


def versions(backend: str) -> dict[str, Any]:
    return run_versions(pg_admin() if backend == "postgresql" else None)


def _exception_line(lines: list[str]) -> str:
    """The last ``module.Error: text`` line of a traceback (SQLAlchemy adds lines after it)."""
    found = [x for x in lines if _EXCEPTION_LINE.match(x)]
    return found[-1] if found else "?"


def server_errors(log: Path) -> dict[str, int]:
    """The exceptions whose tracebacks the server logged, by their last line, counted.

    Filiera's own log lines are JSON (the traceback in ``exc``); gunicorn's are plain text."""
    found: dict[str, int] = {}
    lines = log.read_text(errors="replace").splitlines()
    for n, line in enumerate(lines):
        if "Traceback" not in line:
            continue
        what = None
        if line.startswith("{"):
            try:
                record = json.loads(line)
                what = f"{record.get('message')}: {_exception_line(str(record.get('exc', '')).splitlines())}"
            except ValueError:
                what = None
        else:
            block = []
            for x in lines[n + 1 :]:
                block.append(x)
                if _EXCEPTION_LINE.match(x):
                    break
            what = _exception_line(block)
        if what is not None:
            what = what[:200]
            found[what] = found.get(what, 0) + 1
    return found
