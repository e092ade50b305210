"""Settings: one frozen object, read from ``FILIERA_*`` environment variables once.

Nothing else in Filiera reads ``os.environ``: the CLI and ``wsgi.py`` call
:meth:`Settings.from_env` and pass the result down. Every setting is documented in README.md
(a test checks that).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = ["Settings", "SETTINGS_ENV", "LOG_FORMATS", "METRICS_ACCESS", "normalise_database_url", "redacted_url"]

MiB = 1024 * 1024

# Environment variable -> (attribute, meaning). The README's configuration table lists them all.
SETTINGS_ENV: Mapping[str, tuple[str, str]] = {
    "FILIERA_DATA_DIR": ("data_dir", "directory for the SQLite database and key files (./var)"),
    "FILIERA_DATABASE_URL": ("database_url", "SQLAlchemy URL; default SQLite in the data dir"),
    "FILIERA_LEDGER_KEY_FILE": ("ledger_key_file", "the ledger's key file (<data dir>/ledger.key)"),
    "FILIERA_LEDGER_KEY": ("ledger_key_json", "the ledger key file's JSON itself, instead of a file"),
    "FILIERA_MAX_BODY_BYTES": ("max_body_bytes", "largest request body accepted (1048576)"),
    "FILIERA_MAX_BATCH": ("max_batch", "most entries in one batch request (1000)"),
    "FILIERA_PAGE_MAX": ("page_max", "largest page of blocks or participants (1000)"),
    "FILIERA_SEAL_TIMEOUT": ("seal_timeout", "seconds a request waits for its block (30)"),
    "FILIERA_SEAL_INTERVAL": ("seal_interval", "seconds between background sealing rounds (1)"),
    "FILIERA_SQLITE_SYNCHRONOUS": ("sqlite_synchronous", "SQLite synchronous: FULL or EXTRA"),
    "FILIERA_SQLITE_JOURNAL_MODE": ("sqlite_journal_mode", "SQLite journal mode: WAL"),
    "FILIERA_SQLITE_MMAP_MB": ("sqlite_mmap_mb", "MiB of the SQLite file read through mmap (1024; 0: off)"),
    "FILIERA_LOG_LEVEL": ("log_level", "logging level (INFO)"),
    "FILIERA_PROVENANCE_MAX_LOTS": ("provenance_max_lots", "most lots of a lineage a provenance query follows (2000)"),
    "FILIERA_LOG_FORMAT": ("log_format", "log lines as json (one object per line) or text"),
    "FILIERA_LOG_CLIENT_IPS": ("log_client_ips", "put the client's address in request log lines (off)"),
    "FILIERA_METRICS": ("metrics", "who may read /metrics: off, local, auditors or public"),
    "FILIERA_RATE_LIMIT_MEMBER": ("rate_limit_member", "requests per member (signed) per window, or off"),
    "FILIERA_RATE_LIMIT_IP": ("rate_limit_ip", "unsigned requests per client address per window, or off"),
    "FILIERA_RATE_LIMIT_STORAGE": ("rate_limit_storage", "where the rate-limit counters live (a limits storage URI)"),
    "FILIERA_TRUSTED_PROXIES": ("trusted_proxies", "reverse proxies whose X-Forwarded-For is believed (0)"),
    "FILIERA_READY_MAX_PENDING_AGE": ("ready_max_pending_age", "seconds the oldest queued entry may wait before /v1/health/ready fails (60)"),
    "FILIERA_READY_MAX_REPLICA_LAG": ("ready_max_replica_lag", "seconds a read-only node's standby may lag its primary before /v1/health/ready fails (30)"),
    "FILIERA_RUN_DIR": ("run_dir", "private directory of one server run (set by the gunicorn config)"),
    "FILIERA_WITNESS_POLICY": ("witness_policy", "witness policy file (c2sp.org/tlog-policy); unset: no witnesses"),
    "FILIERA_WITNESS_INTERVAL": ("witness_interval", "seconds between witnessing rounds (1)"),
    "FILIERA_WITNESS_TIMEOUT": ("witness_timeout", "seconds to wait for one witness's answer (5)"),
    "FILIERA_WITNESS_REFRESH": ("witness_refresh", "seconds after which an idle ledger's checkpoint is cosigned again (300; 0: never)"),
    "FILIERA_PUBLIC_URL": ("public_url", "base URL that product-page QR codes encode (none: the request's own)"),
    "FILIERA_WEBHOOK_KEY_FILE": ("webhook_key_file", "key that encrypts webhook secrets (<data dir>/webhook-secrets.key)"),
    "FILIERA_WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", "1: webhooks may target loopback and private addresses (0)"),
    "FILIERA_WEBHOOK_TIMEOUT": ("webhook_timeout", "seconds a webhook endpoint has to answer (15)"),
    "FILIERA_WEBHOOK_RETRY_BASE": ("webhook_retry_base", "seconds before the first retry of a failed delivery (5)"),
    "FILIERA_WEBHOOK_RETRY_MAX": ("webhook_retry_max", "longest pause between retries, in seconds (3600)"),
    "FILIERA_READ_ONLY": ("read_only", "1: a read-only node (e.g. on a streaming replica): no writes, 503 read_only_node to writes (0)"),
    "FILIERA_PRIMARY_URL": ("primary_url", "base URL of the node that takes writes, named by a read-only node's 503s (none)"),
}

LOG_FORMATS = ("json", "text")
METRICS_ACCESS = ("off", "local", "auditors", "public")
_SWITCH = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def redacted_url(url: str) -> str:
    """A database URL fit for a log or a terminal: any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def normalise_database_url(url: str) -> str:
    """Make a plain ``postgresql://`` URL use the driver Filiera installs (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str = ""
    ledger_key_file: Path = Path("var/ledger.key")
    ledger_key_json: str | None = field(default=None, repr=False)
    max_body_bytes: int = MiB
    max_batch: int = 1000
    page_max: int = 1000
    seal_timeout: float = 30.0
    seal_interval: float = 1.0
    sqlite_synchronous: str = "FULL"
    sqlite_journal_mode: str = "WAL"
    sqlite_mmap_mb: int = 1024
    log_level: str = "INFO"
    provenance_max_lots: int = 2000
    log_format: str = "json"
    log_client_ips: bool = False
    metrics: str = "local"
    rate_limit_member: str = "1200/minute"
    rate_limit_ip: str = "300/minute"
    rate_limit_storage: str = ""
    trusted_proxies: int = 0
    ready_max_pending_age: float = 60.0
    ready_max_replica_lag: float = 30.0
    run_dir: Path | None = None
    witness_policy: Path | None = None
    witness_interval: float = 1.0
    witness_timeout: float = 5.0
    witness_refresh: float = 300.0
    public_url: str = ""
    webhook_key_file: Path = Path("var/webhook-secrets.key")
    webhook_allow_private: bool = False
    webhook_timeout: float = 15.0
    webhook_retry_base: float = 5.0
    webhook_retry_max: float = 3600.0
    read_only: bool = False
    primary_url: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``FILIERA_*`` variables (``os.environ`` by default); ``overrides`` win.

        Raises ConfigurationError for a value of the wrong form.
        """
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("FILIERA_DATA_DIR", "var"))
        values: dict[str, object] = {
            "data_dir": data_dir,
            "database_url": env.get("FILIERA_DATABASE_URL", ""),
            "ledger_key_file": Path(
                env.get("FILIERA_LEDGER_KEY_FILE", str(data_dir / "ledger.key"))
            ),
            "ledger_key_json": env.get("FILIERA_LEDGER_KEY") or None,
            "sqlite_synchronous": env.get("FILIERA_SQLITE_SYNCHRONOUS", "FULL").upper(),
            "sqlite_journal_mode": env.get("FILIERA_SQLITE_JOURNAL_MODE", "WAL").upper(),
            "log_level": env.get("FILIERA_LOG_LEVEL", "INFO").upper(),
            "log_format": env.get("FILIERA_LOG_FORMAT", "json").strip().lower(),
            "metrics": env.get("FILIERA_METRICS", "local").strip().lower(),
            "rate_limit_member": env.get("FILIERA_RATE_LIMIT_MEMBER", "1200/minute").strip(),
            "rate_limit_ip": env.get("FILIERA_RATE_LIMIT_IP", "300/minute").strip(),
            "rate_limit_storage": env.get("FILIERA_RATE_LIMIT_STORAGE", "").strip(),
            "run_dir": Path(env["FILIERA_RUN_DIR"]) if env.get("FILIERA_RUN_DIR") else None,
            "witness_policy": Path(env["FILIERA_WITNESS_POLICY"]) if env.get("FILIERA_WITNESS_POLICY") else None,
            "public_url": env.get("FILIERA_PUBLIC_URL", ""),
            "webhook_allow_private": _flag(env, "FILIERA_WEBHOOK_ALLOW_PRIVATE"),
            "read_only": _flag(env, "FILIERA_READ_ONLY"),
            "primary_url": env.get("FILIERA_PRIMARY_URL", ""),
        }
        if "FILIERA_LOG_CLIENT_IPS" in env:
            switch = _SWITCH.get(env["FILIERA_LOG_CLIENT_IPS"].strip().lower())
            if switch is None:
                raise ConfigurationError(
                    f"FILIERA_LOG_CLIENT_IPS must be on or off, got {env['FILIERA_LOG_CLIENT_IPS']!r}"
                )
            values["log_client_ips"] = switch
        for name, attr, kind in (
            ("FILIERA_MAX_BODY_BYTES", "max_body_bytes", int),
            ("FILIERA_MAX_BATCH", "max_batch", int),
            ("FILIERA_PAGE_MAX", "page_max", int),
            ("FILIERA_SQLITE_MMAP_MB", "sqlite_mmap_mb", int),
            ("FILIERA_SEAL_TIMEOUT", "seal_timeout", float),
            ("FILIERA_SEAL_INTERVAL", "seal_interval", float),
            ("FILIERA_PROVENANCE_MAX_LOTS", "provenance_max_lots", int),
            ("FILIERA_TRUSTED_PROXIES", "trusted_proxies", int),
            ("FILIERA_READY_MAX_PENDING_AGE", "ready_max_pending_age", float),
            ("FILIERA_READY_MAX_REPLICA_LAG", "ready_max_replica_lag", float),
            ("FILIERA_WITNESS_INTERVAL", "witness_interval", float),
            ("FILIERA_WITNESS_TIMEOUT", "witness_timeout", float),
            ("FILIERA_WITNESS_REFRESH", "witness_refresh", float),
            ("FILIERA_WEBHOOK_TIMEOUT", "webhook_timeout", float),
            ("FILIERA_WEBHOOK_RETRY_BASE", "webhook_retry_base", float),
            ("FILIERA_WEBHOOK_RETRY_MAX", "webhook_retry_max", float),
        ):
            if name in env:
                try:
                    values[attr] = kind(env[name])
                except ValueError as exc:
                    raise ConfigurationError(f"{name} must be a number, got {env[name]!r}") from exc
        if env.get("FILIERA_WEBHOOK_KEY_FILE"):
            values["webhook_key_file"] = Path(env["FILIERA_WEBHOOK_KEY_FILE"])
        values.update(overrides)
        if "webhook_key_file" not in values:
            # Beside the data directory finally chosen, which an override (--data-dir) may set.
            values["webhook_key_file"] = Path(str(values["data_dir"])) / "webhook-secrets.key"
        settings = cls(**values)  # type: ignore[arg-type]
        settings._check()
        if not settings.database_url:
            settings = replace(
                settings, database_url=f"sqlite:///{(settings.data_dir / 'filiera.db').resolve()}"
            )
        return replace(
            settings,
            database_url=normalise_database_url(settings.database_url),
            public_url=_public_url(settings.public_url),
            primary_url=_base_url(settings.primary_url, "FILIERA_PRIMARY_URL", "https://ledger.example.com"),
        )

    def _check(self) -> None:
        """Raises ConfigurationError for a value outside its set (numbers are checked above)."""
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(f"FILIERA_LOG_FORMAT must be json or text, got {self.log_format!r}")
        if self.metrics not in METRICS_ACCESS:
            raise ConfigurationError(
                f"FILIERA_METRICS must be one of {', '.join(METRICS_ACCESS)}, got {self.metrics!r}"
            )
        if self.trusted_proxies < 0:
            raise ConfigurationError("FILIERA_TRUSTED_PROXIES must be 0 or more")
        if self.ready_max_pending_age <= 0:
            raise ConfigurationError("FILIERA_READY_MAX_PENDING_AGE must be a positive number of seconds")
        if not 0 < self.ready_max_replica_lag < float("inf"):
            raise ConfigurationError("FILIERA_READY_MAX_REPLICA_LAG must be a positive number of seconds")
        if not 0 <= self.sqlite_mmap_mb <= 1 << 20:
            raise ConfigurationError("FILIERA_SQLITE_MMAP_MB must be between 0 (off) and 1048576")
        if not 0 <= self.witness_refresh < float("inf"):
            raise ConfigurationError("FILIERA_WITNESS_REFRESH must be 0 (never) or a number of seconds")


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no setting: ``1``/``true``/``yes`` or ``0``/``false``/``no`` (unset: no).
    Raises ConfigurationError for anything else, rather than guess on a security switch."""
    value = env.get(name, "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} must be 1 or 0, got {value!r}")


def _public_url(value: str) -> str:
    """The public base URL without a trailing slash; it is printed on labels, so only an
    absolute http(s) URL without query or fragment will do. Raises ConfigurationError."""
    return _base_url(value, "FILIERA_PUBLIC_URL", "https://trace.example.com")


def _base_url(value: str, name: str, example: str) -> str:
    """An absolute http(s) base URL without query or fragment, minus its trailing slash ("" if
    unset). Raises ConfigurationError."""
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL such as {example}, got {value!r}")
    return value.rstrip("/")
