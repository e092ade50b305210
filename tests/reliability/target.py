"""The system under test in T1 (hammer.py): a ledger on a fresh database (a SQLite file, or a
fresh schema in a private PostgreSQL cluster of the run's own or in the shared server at
FILIERA_TEST_PG_URL), ``filiera serve`` over it on a loopback port (for a negative control,
with a fault installed from test code: faults.py), and what is read back afterwards (the log's
rows, ``filiera verify``).

On PostgreSQL this run's connections carry their own ``application_name``, so that a "backend
kill" (``pg_terminate_backend``, sent over a separate connection) reaches them and nothing
else. The shared PostgreSQL server is never signalled: it serves other work. Only a private
cluster (PrivatePg) is ever killed as a whole.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
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
from ..procs import child_pids, free_port
from ..run_versions import run_versions
from .checker import LogRow
from .faults import ENV as FAULT_ENV
from .faults import MARK as FAULT_MARK

__all__ = [
    "server_errors", "fault_marks",
    "REPO", "PG_URL", "Db", "PrivatePg", "database", "pg_admin", "our_backends", "terminate", "free_port", "Server",
    "init_ledger", "register_suppliers", "log_rows", "pending_count", "verify_cli", "versions",
]

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PG_URL = os.environ.get("FILIERA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_LIMIT_S = 60.0
_CLI = "from api.cli import main; main()"
INJECT = Path(__file__).resolve().parent / "inject"
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


@dataclass
class Db:
    url: str
    app_name: str | None = None
    schema: str | None = None
    admin_url: str = PG_URL  # the server that holds the schema
    cluster: Any = None  # a private cluster (PrivatePg), whose every process may be killed


# --- the database ----------------------------------------------------------------------------


def pg_admin(url: str = PG_URL) -> Any:
    """The harness's own connections (kills, schemas). Not pooled: a private cluster killed
    whole (``pg_cluster``) takes every open connection with it, and a pooled one would then
    fail the next kill."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from ledger.config import normalise_database_url

    return create_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT", poolclass=NullPool)


class PrivatePg:
    """A PostgreSQL cluster of this run's own (tests/pg_cluster.py), with ``settings`` added
    to its configuration: unlike the shared server, every one of its processes may be killed."""

    def __init__(self, settings: dict[str, str]) -> None:
        from ..pg_cluster import Clusters, bin_dir

        self.clusters = Clusters(bin_dir(("initdb", "pg_ctl")), prefix="filiera-t1-")
        try:
            self.cluster = self.clusters.primary(settings)
        except BaseException:
            self.clusters.stop_all()
            raise
        self.url = self.cluster.url

    def crash(self) -> int:
        """SIGKILL the postmaster and every process it started, then start it again (crash
        recovery). Returns how many processes were killed."""
        killed = self.clusters.kill_all(self.cluster)
        self.clusters.restart(self.cluster)
        return killed

    def close(self) -> None:
        self.clusters.stop_all()


@contextmanager
def database(backend: str, workdir: Path, private: dict[str, str] | None = None) -> Iterator[Db]:
    """A fresh SQLite file, or a fresh schema: in the shared PostgreSQL server, or with
    ``private`` (settings, perhaps none) in a cluster of this run's own."""
    if backend == "sqlite":
        yield Db(f"sqlite:///{workdir / 'filiera.db'}")
        return
    cluster = PrivatePg(private) if private is not None else None
    try:
        # A private cluster goes as a whole; its schema need not be dropped.
        with _schema(cluster.url if cluster else PG_URL, drop=cluster is None) as db:
            db.cluster = cluster
            yield db
    finally:
        if cluster is not None:
            cluster.close()


def _admin_sql(pg_url: str, sql: str) -> None:
    admin = pg_admin(pg_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        admin.dispose()


@contextmanager
def _schema(pg_url: str, *, drop: bool = True) -> Iterator[Db]:
    schema = "t1_" + uuid.uuid4().hex[:12]
    _admin_sql(pg_url, f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in pg_url else "?"
        # application_name marks this run's connections, so only they are ever terminated.
        yield Db(
            f"{pg_url}{sep}options=-csearch_path%3D{schema}&application_name=filiera-{schema}", f"filiera-{schema}", schema,
            admin_url=pg_url,
        )
    finally:
        if drop:
            _admin_sql(pg_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


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


def server_env(data_dir: Path, url: str, fault: str = "") -> dict[str, str]:
    """The environment of the server and the CLI. ``fault``: a negative control's faults
    (faults.py), installed at start-up by inject/sitecustomize.py."""
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
    if fault:
        env["PYTHONPATH"] = os.pathsep.join([str(INJECT), env["PYTHONPATH"]])
        env[FAULT_ENV] = fault
    return env


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

    def __init__(self, data_dir: Path, url: str, port: int, workers: int, log: Path, *, fault: str = "") -> None:
        self.data_dir, self.url, self.port, self.workers, self.log = data_dir, url, port, workers, log
        # A negative control's server (faults.py): broken from test code at start-up.
        self.fault = fault
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> float:
        """Start it; returns when it was started (time.monotonic()). ``wait``: until healthy."""
        args = [sys.executable, "-c", _CLI, "serve", "--host", HOST, "--port", str(self.port), "--workers", str(self.workers)]
        with self.log.open("ab") as out:
            started = time.monotonic()
            self.proc = subprocess.Popen(
                args, cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        if wait:
            self.wait_healthy()
        return started

    def env(self) -> dict[str, str]:
        return server_env(self.data_dir, self.url, self.fault)

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
        return child_pids(self.proc.pid)

    def kill_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        # Workers are in the same group; wait until none holds the port any more.
        deadline = time.monotonic() + 10
        while child_pids(self.proc.pid) and time.monotonic() < deadline:
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


def init_ledger(data_dir: Path, url: str, *, fault: str = "") -> Member:
    """``filiera init`` as an operator runs it; returns the admin."""
    subprocess.run(
        [sys.executable, "-c", _CLI, "--data-dir", str(data_dir), "--database-url", url, "init", "--origin", ORIGIN],
        check=True, capture_output=True, cwd=REPO, env=server_env(data_dir, url, fault),
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


def verify_cli(data_dir: Path, url: str, ledger_key: str, *, fault: str = "") -> dict[str, Any]:
    """``filiera verify --json`` with the ledger key pinned: chain, links, roots, signatures."""
    proc = subprocess.run(
        [sys.executable, "-c", _CLI, "--data-dir", str(data_dir), "--database-url", url, "verify", "--json", "--ledger-key", ledger_key],
        capture_output=True, cwd=REPO, env=server_env(data_dir, url, fault), timeout=600,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {"ok": False, "stdout": proc.stdout.decode(errors="replace")[-500:]}
    return {"exit": proc.returncode, "report": report, "stderr": proc.stderr.decode(errors="replace")[-300:] if proc.returncode else ""}


def versions(backend: str, admin_url: str = PG_URL) -> dict[str, Any]:
    return run_versions(pg_admin(admin_url) if backend == "postgresql" else None)


def fault_marks(log: Path) -> int:
    """How many server processes said at start-up that they run with a fault (faults.py)."""
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith(FAULT_MARK))


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
