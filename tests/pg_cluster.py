"""Private PostgreSQL clusters for tests: ``initdb`` in a temporary directory, ``pg_ctl`` on a
free loopback port, stopped (``-m immediate``) and removed whatever happens. Nothing of the
shared server at 5432 is touched. As root the PostgreSQL programs run as the ``postgres`` user
(``runuser``), since a cluster cannot be owned by root.

Used by tests/integration/test_replica.py (a primary and its streaming standby) and by the T1
crash hammer (tests/reliability: a cluster whose every process can be killed). Missing
programs raise :class:`Unavailable`; a pytest caller skips on it, or fails with
``FILIERA_REQUIRE_PG_BINARIES=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .procs import child_pids, free_port

__all__ = ["PROGRAMS", "Unavailable", "required", "bin_dir", "Cluster", "Clusters"]

PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup")


class Unavailable(Exception):
    """The PostgreSQL server programs, or a user to run them as, are missing."""


def required() -> bool:
    """Must a missing PostgreSQL fail the caller rather than skip it?"""
    return os.environ.get("FILIERA_REQUIRE_PG_BINARIES") == "1"


def bin_dir(programs: Sequence[str] = PROGRAMS) -> Path:
    """The directory of ``programs``: ``pg_config --bindir``, Debian's
    /usr/lib/postgresql/<version>/bin, or the PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for d in candidates:
        if all((d / p).is_file() for p in programs):
            return d
    raise Unavailable(f"the PostgreSQL server programs ({', '.join(programs)}) are not installed")


@dataclass
class Cluster:
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


class Clusters:
    """Clusters under one temporary directory (a primary, and perhaps its standby)."""

    def __init__(self, bindir: Path, *, prefix: str = "filiera-pg-") -> None:
        self.bindir = bindir
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise Unavailable("running as root without runuser: cannot run PostgreSQL as the postgres user")
            try:
                import pwd

                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user to own the test clusters") from None
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
            self.uid, self.gid = owner.pw_uid, owner.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        os.chown(self.base, self.uid, self.gid)
        os.chmod(self.base, 0o700)
        self.started: list[Cluster] = []

    def run(self, program: str, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [*self.as_postgres, str(self.bindir / program), *args],
            capture_output=True, text=True, timeout=timeout, cwd=self.base,
        )
        if out.returncode != 0:
            raise AssertionError(f"{program} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def _configure(self, data: Path, port: int, settings: Mapping[str, str]) -> None:
        # Appended last, so these win over what initdb (or the primary's copy) wrote.
        base = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.base}'",
            "wal_level": "replica",
            "max_wal_senders": "4",
            "hot_standby": "on",
            "shared_buffers": "32MB",
            "max_connections": "60",
            # Not of the shared server's: the durability settings Filiera checks (T12) stay
            # at their defaults unless a caller asks otherwise.
        }
        conf = data / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write("\n# filiera test\n" + "".join(f"{k} = {v}\n" for k, v in {**base, **settings}.items()))

    def start(self, data: Path, port: int, settings: Mapping[str, str] | None = None) -> Cluster:
        self._configure(data, port, settings or {})
        cluster = Cluster(data, port, self.base / f"{data.name}.log")
        self.started.append(cluster)
        self.restart(cluster)
        return cluster

    def restart(self, cluster: Cluster) -> None:
        """``pg_ctl start``, waiting until it accepts connections (after a crash: once crash
        recovery is done)."""
        self.run("pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log), "-w", "-t", "120", "start")

    def primary(self, settings: Mapping[str, str] | None = None) -> Cluster:
        data = self.base / "primary"
        # Trust on loopback, replication included (initdb's pg_hba.conf for --auth=trust).
        self.run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        hba = (data / "pg_hba.conf").read_text(encoding="utf-8")
        assert "replication" in hba and "127.0.0.1/32" in hba, hba
        return self.start(data, free_port(), settings)

    def standby(self, primary: Cluster) -> Cluster:
        data = self.base / "standby"
        self.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(data),
            "-R", "-X", "stream", "--checkpoint=fast",
        )
        return self.start(data, free_port())

    def processes(self, cluster: Cluster) -> list[int]:
        """The postmaster (first) and every process it started."""
        try:
            postmaster = int((cluster.data / "postmaster.pid").read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = child_pids(postmaster)
        alive = os.path.exists(f"/proc/{postmaster}")
        return ([postmaster] if alive else []) + children

    def kill_all(self, cluster: Cluster) -> int:
        """SIGKILL every process of ``cluster`` at once (a machine crash, as far as processes
        go: what was written to the kernel survives, what sat in shared memory does not).
        Returns how many were killed; waits until they are gone."""
        pids = self.processes(cluster)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Until each is reaped: a new postmaster refuses to start while the pid in
        # postmaster.pid exists, even as a zombie.
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(pids)

    def stop_all(self) -> None:
        for cluster in reversed(self.started):
            subprocess.run(
                [*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "stop"],
                capture_output=True, timeout=60, check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {c.log.name}\n{c.log.read_text(errors='replace')[-2000:]}" for c in self.started if c.log.exists())
