"""A real ``filiera serve`` (gunicorn, 2 workers) on a free loopback port, and CPU accounting.

Traffic goes to 127.0.0.1 only. The server is stopped with SIGTERM to the gunicorn master this
module started (by its pid), and killed if it has not stopped after a grace period.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .workload import FILIERA, REPO, Database, clean_env

__all__ = ["Server", "serve", "free_port", "cpu_ticks", "children_of", "postgres_pids", "TICK"]

HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        return [self.process.pid, *children_of(self.process.pid)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        conn.request("GET", "/v1/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@contextmanager
def serve(db: Database, *, workers: int, log: Path, seal_interval: float | None = None) -> Iterator[Server]:
    """Run ``filiera serve`` on ``db`` until the block ends."""
    port = free_port()
    env = clean_env()
    # The benchmark measures capacity, not the per-member and per-address rate limits (on by
    # default since TESTPLAN T8): with them, the clients would mostly count 429s.
    env["FILIERA_RATE_LIMIT_MEMBER"] = "off"
    env["FILIERA_RATE_LIMIT_IP"] = "off"
    if seal_interval is not None:
        env["FILIERA_SEAL_INTERVAL"] = str(seal_interval)
    args = [
        str(FILIERA), "--data-dir", str(db.data_dir), "--database-url", db.url,
        "serve", "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(port, proc, log)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"filiera serve exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"filiera serve did not answer /v1/health in 60 s; see {log}")
            time.sleep(0.2)
        # Every worker builds its app after fork; wait until all of them exist.
        deadline = time.monotonic() + 30
        while len(children_of(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(4 * workers):
            _healthy(port)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    # The command name may contain spaces; everything after its closing parenthesis is fixed.
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(name))
    return found


def postgres_pids() -> list[int]:
    """Every process of the local PostgreSQL server (its backends do the database's work)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm", encoding="ascii", errors="replace") as fh:
                    if fh.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(name))
            except OSError:
                continue
    return pids


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """user+system clock ticks used so far by each process."""
    ticks = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            # Fields 14 and 15 of /proc/PID/stat (utime, stime); index 11 and 12 after the name.
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks
