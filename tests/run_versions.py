"""What a load or reliability run records about the software it ran on (its JSON result)."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

__all__ = ["run_versions"]

REPO = Path(__file__).resolve().parents[1]


def run_versions(pg: Engine | None = None) -> dict[str, Any]:
    """Python, platform, cores, SQLAlchemy, gunicorn, SQLite, the commit, and with ``pg`` (an
    engine, disposed here) the PostgreSQL server's version."""
    import gunicorn
    import sqlalchemy

    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "sqlalchemy": sqlalchemy.__version__,
        "gunicorn": gunicorn.__version__,
        "sqlite": sqlite3.sqlite_version,
    }
    try:
        out["filiera_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["filiera_commit"] = None
    if pg is not None:
        try:
            with pg.connect() as conn:
                out["postgresql"] = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        finally:
            pg.dispose()
    return out
