"""What machine the figures come from: CPU model, cores, Python, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from typing import Any

__all__ = ["describe", "postgres_version"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def postgres_version(admin_url: str) -> str | None:
    """The server's ``SHOW server_version``, or None if it cannot be reached."""
    from sqlalchemy import create_engine

    from ledger.config import normalise_database_url

    try:
        engine = create_engine(normalise_database_url(admin_url))
        with engine.connect() as conn:
            version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        engine.dispose()
        return version
    except Exception:  # noqa: BLE001 - reported as "unreachable" in the results
        return None


def describe(pg_url: str | None) -> dict[str, Any]:
    import nacl

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(pg_url) if pg_url else None,
        "pynacl": getattr(nacl, "__version__", "?"),
        "loadavg_start": list(os.getloadavg()),
    }
