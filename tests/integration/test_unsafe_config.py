"""TESTPLAN T12: starting on a database that could lose acknowledged entries is refused.

SQLite ``synchronous`` below FULL or a journal mode other than WAL, and PostgreSQL
``synchronous_commit`` off or local, ``fsync`` off or ``full_page_writes`` off: every way in
(``Store.open``, ``create_app``, ``filiera serve``'s pre-flight) refuses with
``unsafe_configuration`` and names the setting. The safe values start.

PostgreSQL's ``synchronous_commit`` is set per connection through the URL (libpq
``options``); ``fsync`` and ``full_page_writes`` are server-wide and cannot be changed from a
test, so ``check_postgres_settings`` is tested on the values instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace

import pytest
from click.testing import CliRunner

from api import create_app
from api.cli import cli
from ledger.config import Settings
from ledger.errors import ConfigurationError, UnsafeConfiguration
from ledger.storage.store import Store, check_postgres_settings

from ..conftest import BACKENDS, LedgerEnv
from .conftest import FILIERA, Server, server_env, with_url_options

SQLITE = [b for b in BACKENDS if b == "sqlite"]
POSTGRES = [b for b in BACKENDS if b == "postgresql"]

# (environment variable, value, the setting reported, the value reported). Numeric forms are
# SQLite's own aliases (PRAGMA synchronous=0 is OFF): the check reads back what SQLite did.
SQLITE_REFUSED: list[tuple[str, str, str, str]] = [
    ("FILIERA_SQLITE_SYNCHRONOUS", "OFF", "synchronous", "OFF"),
    ("FILIERA_SQLITE_SYNCHRONOUS", "off", "synchronous", "OFF"),
    ("FILIERA_SQLITE_SYNCHRONOUS", "0", "synchronous", "OFF"),
    ("FILIERA_SQLITE_SYNCHRONOUS", "NORMAL", "synchronous", "NORMAL"),
    ("FILIERA_SQLITE_SYNCHRONOUS", "1", "synchronous", "NORMAL"),
    ("FILIERA_SQLITE_JOURNAL_MODE", "DELETE", "journal_mode", "DELETE"),
    ("FILIERA_SQLITE_JOURNAL_MODE", "MEMORY", "journal_mode", "MEMORY"),
    ("FILIERA_SQLITE_JOURNAL_MODE", "TRUNCATE", "journal_mode", "TRUNCATE"),
    ("FILIERA_SQLITE_JOURNAL_MODE", "PERSIST", "journal_mode", "PERSIST"),
    ("FILIERA_SQLITE_JOURNAL_MODE", "OFF", "journal_mode", "OFF"),
]
SQLITE_ACCEPTED: list[tuple[str, str]] = [
    ("FULL", "WAL"),
    ("EXTRA", "WAL"),
    ("2", "wal"),
    ("3", "WAL"),
]
# synchronous_commit values as set in the URL, and how PostgreSQL reports them.
PG_REFUSED: list[tuple[str, str]] = [("off", "off"), ("false", "off"), ("0", "off"), ("local", "local")]
PG_ACCEPTED = ["on", "remote_write", "remote_apply"]
PG_SETTINGS_REFUSED: list[tuple[str, dict[str, str], str]] = [
    ("synchronous_commit-off", {"synchronous_commit": "off", "fsync": "on", "full_page_writes": "on"}, "synchronous_commit"),
    ("synchronous_commit-local", {"synchronous_commit": "local", "fsync": "on", "full_page_writes": "on"}, "synchronous_commit"),
    ("fsync-off", {"synchronous_commit": "on", "fsync": "off", "full_page_writes": "on"}, "fsync"),
    ("full_page_writes-off", {"synchronous_commit": "on", "fsync": "on", "full_page_writes": "off"}, "full_page_writes"),
    ("fsync-and-full_page_writes-off", {"synchronous_commit": "on", "fsync": "off", "full_page_writes": "off"}, "fsync"),
    ("everything-off", {"synchronous_commit": "off", "fsync": "off", "full_page_writes": "off"}, "synchronous_commit"),
    ("fsync-off-remote_write", {"synchronous_commit": "remote_write", "fsync": "off", "full_page_writes": "on"}, "fsync"),
]
PG_SETTINGS_ACCEPTED = [
    {"synchronous_commit": sc, "fsync": "on", "full_page_writes": "on"} for sc in PG_ACCEPTED
]


def test_loaded_cases() -> None:
    assert len(SQLITE_REFUSED) == 10
    assert {v for _, v, _, _ in SQLITE_REFUSED} >= {"OFF", "NORMAL", "DELETE", "MEMORY"}
    assert len(PG_REFUSED) == 4 and {v for _, v in PG_REFUSED} >= {"off", "local"}
    assert len(PG_SETTINGS_REFUSED) == 7
    assert {s for _, _, s in PG_SETTINGS_REFUSED} == {"synchronous_commit", "fsync", "full_page_writes"}


def _assert_unsafe(exc: UnsafeConfiguration, setting: str, value: str) -> None:
    assert exc.code == "unsafe_configuration"
    assert exc.facts == {"setting": setting, "value": value}
    # A clear message names the setting it refuses.
    assert setting in exc.detail


def _sqlite_settings(env: LedgerEnv, variable: str, value: str) -> Settings:
    return Settings.from_env(
        {
            "FILIERA_DATA_DIR": str(env.settings.data_dir),
            "FILIERA_DATABASE_URL": env.settings.database_url,
            "FILIERA_LEDGER_KEY_FILE": str(env.settings.ledger_key_file),
            variable: value,
        }
    )


def _cli_serve(settings: Settings, extra: dict[str, str]) -> tuple[int, str]:
    """``filiera serve``'s pre-flight in-process (a refused start exits before exec)."""
    result = CliRunner().invoke(
        cli, ["serve", "--port", "1"], env=server_env(settings, extra), catch_exceptions=False
    )
    return result.exit_code, result.stderr


# --- SQLite --------------------------------------------------------------------------------


@pytest.mark.parametrize("db", SQLITE, indirect=True)
@pytest.mark.parametrize(("variable", "value", "setting", "reported"), SQLITE_REFUSED, ids=[f"{v}={x}" for v, x, _, _ in SQLITE_REFUSED])
def test_sqlite_unsafe_settings_are_refused_everywhere(ledger_env: LedgerEnv, variable: str, value: str, setting: str, reported: str) -> None:
    settings = _sqlite_settings(ledger_env, variable, value)
    with pytest.raises(UnsafeConfiguration) as info:
        Store.open(settings)
    _assert_unsafe(info.value, setting, reported)
    with pytest.raises(UnsafeConfiguration) as info:
        create_app(settings, background_sealing=False)
    _assert_unsafe(info.value, setting, reported)
    code, stderr = _cli_serve(ledger_env.settings, {variable: value})
    assert code == 2
    assert stderr.startswith("error: unsafe_configuration: ") and setting in stderr


@pytest.mark.parametrize("db", SQLITE, indirect=True)
@pytest.mark.parametrize(("synchronous", "journal"), SQLITE_ACCEPTED)
def test_sqlite_safe_settings_start(ledger_env: LedgerEnv, synchronous: str, journal: str) -> None:
    settings = Settings.from_env(
        {
            "FILIERA_DATABASE_URL": ledger_env.settings.database_url,
            "FILIERA_LEDGER_KEY_FILE": str(ledger_env.settings.ledger_key_file),
            "FILIERA_SQLITE_SYNCHRONOUS": synchronous,
            "FILIERA_SQLITE_JOURNAL_MODE": journal,
        }
    )
    Store.open(settings).dispose()
    app = create_app(settings, background_sealing=False)
    try:
        assert app.test_client().get("/v1/health").status_code == 200
    finally:
        app.extensions["filiera"].store.dispose()


@pytest.mark.parametrize("db", SQLITE, indirect=True)
@pytest.mark.parametrize(("value", "expected"), [(None, 1024 << 20), ("0", 0), ("64", 64 << 20)])
def test_sqlite_connections_read_through_mmap(ledger_env: LedgerEnv, value: str | None, expected: int) -> None:
    env = {
        "FILIERA_DATABASE_URL": ledger_env.settings.database_url,
        "FILIERA_LEDGER_KEY_FILE": str(ledger_env.settings.ledger_key_file),
    }
    if value is not None:
        env["FILIERA_SQLITE_MMAP_MB"] = value
    store = Store.open(Settings.from_env(env))
    try:
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA mmap_size").scalar_one() == expected
    finally:
        store.dispose()


@pytest.mark.parametrize("value", ["-1", "lots", "2000000"])
def test_sqlite_mmap_setting_is_checked(value: str) -> None:
    with pytest.raises(ConfigurationError, match="FILIERA_SQLITE_MMAP_MB"):
        Settings.from_env({"FILIERA_SQLITE_MMAP_MB": value})


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.parametrize("db", POSTGRES, indirect=True)
@pytest.mark.parametrize(("value", "reported"), PG_REFUSED)
def test_postgres_unsafe_synchronous_commit_is_refused_everywhere(ledger_env: LedgerEnv, value: str, reported: str) -> None:
    settings = with_url_options(ledger_env.settings, f"-csynchronous_commit%3D{value}")
    with pytest.raises(UnsafeConfiguration) as info:
        Store.open(settings)
    _assert_unsafe(info.value, "synchronous_commit", reported)
    with pytest.raises(UnsafeConfiguration) as info:
        create_app(settings, background_sealing=False)
    _assert_unsafe(info.value, "synchronous_commit", reported)
    code, stderr = _cli_serve(settings, {})
    assert code == 2
    assert stderr.startswith("error: unsafe_configuration: ") and "synchronous_commit" in stderr


@pytest.mark.parametrize("db", POSTGRES, indirect=True)
@pytest.mark.parametrize("value", PG_ACCEPTED)
def test_postgres_safe_synchronous_commit_starts(ledger_env: LedgerEnv, value: str) -> None:
    settings = with_url_options(ledger_env.settings, f"-csynchronous_commit%3D{value}")
    store = Store.open(settings)
    try:
        with store.read() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == value
    finally:
        store.dispose()
    app = create_app(settings, background_sealing=False)
    try:
        assert app.test_client().get("/v1/health").status_code == 200
    finally:
        app.extensions["filiera"].store.dispose()


@pytest.mark.parametrize(("case", "values", "setting"), PG_SETTINGS_REFUSED, ids=[c for c, _, _ in PG_SETTINGS_REFUSED])
def test_check_postgres_settings_refuses(case: str, values: dict[str, str], setting: str) -> None:
    with pytest.raises(UnsafeConfiguration) as info:
        check_postgres_settings(values)
    _assert_unsafe(info.value, setting, values[setting])


@pytest.mark.parametrize("values", PG_SETTINGS_ACCEPTED, ids=[v["synchronous_commit"] for v in PG_SETTINGS_ACCEPTED])
def test_check_postgres_settings_accepts(values: dict[str, str]) -> None:
    check_postgres_settings(values)


# --- through the real command ----------------------------------------------------------------


def test_filiera_serve_refuses_in_a_real_process(ledger_env: LedgerEnv) -> None:
    """The same refusal from the installed ``filiera`` command: exit 2 before gunicorn starts."""
    if ledger_env.backend == "sqlite":
        settings, extra = ledger_env.settings, {"FILIERA_SQLITE_SYNCHRONOUS": "NORMAL"}
    else:
        settings, extra = with_url_options(ledger_env.settings, "-csynchronous_commit%3Doff"), {}
    proc = subprocess.run(
        [FILIERA, "serve", "--port", "1"], env=server_env(settings, extra),
        capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("error: unsafe_configuration: ")
    assert b"serving" not in proc.stdout


def test_filiera_serve_starts_when_safe(ledger_env: LedgerEnv, start_server: Callable[..., Server]) -> None:
    settings = ledger_env.settings
    if ledger_env.backend == "postgresql":
        settings = with_url_options(settings, "-csynchronous_commit%3Don")
    server = start_server(replace(settings), workers=1, via_cli=True)
    status, body = server.get_json("/v1/health")
    assert status == 200 and body["tree_size"] == 1
