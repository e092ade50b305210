"""gunicorn as `filiera serve` configures it never logs who read a product page (issue #6):
no access log by default, and with one turned on, no client address, user agent, referrer,
cookie or forwarding header, whatever format the operator asks for."""

from __future__ import annotations

import logging
import runpy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from api.accesslog import ACCESS_LOG_FORMAT, PrivateLogger

CONF = Path(__file__).resolve().parents[2] / "api" / "gunicorn.conf.py"
MARKERS = ("198.51.100.23", "203.0.113.77", "Marker-UA-7f3e", "marker-ref-91c2", "marker-cookie-55ab", "2001:db8::1")
FORMATS = [
    ACCESS_LOG_FORMAT,
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',  # gunicorn's default
    "%({user-agent}i)s %({x-forwarded-for}i)s %({cookie}i)s %({remote_addr}e)s %({http_referer}e)s",
]


def served_config(tmp_path: Path, **overrides: Any) -> Config:
    """gunicorn's configuration as `filiera serve` loads it, plus an operator's overrides."""
    cfg = Config()
    for name, value in runpy.run_path(str(CONF)).items():
        if name in cfg.settings:
            cfg.set(name, value)
    for name, value in overrides.items():
        cfg.set(name, value)
    return cfg


@pytest.fixture
def loggers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for logger in made:  # gunicorn's loggers are global: close the files this test opened
        for log in (logger.access_log, logger.error_log):
            for handler in list(log.handlers):
                handler.close()
                log.removeHandler(handler)


def test_serve_keeps_no_access_log_and_uses_the_private_logger(tmp_path: Path, loggers: list[Any]) -> None:
    cfg = served_config(tmp_path)
    assert cfg.accesslog is None
    assert cfg.logger_class is PrivateLogger
    assert cfg.access_log_format == ACCESS_LOG_FORMAT
    loggers.append(cfg.logger_class(cfg))
    assert not loggers[0].access_log_enabled


@pytest.mark.parametrize("fmt", FORMATS, ids=["filiera", "gunicorn-default", "headers-and-environ"])
def test_an_access_log_turned_on_records_nothing_about_the_client(tmp_path: Path, loggers: list[Any], fmt: str) -> None:
    path = tmp_path / "access.log"
    cfg = served_config(tmp_path, accesslog=str(path), access_log_format=fmt)
    logger = cfg.logger_class(cfg)
    loggers.append(logger)
    headers = [("USER-AGENT", "Mozilla/5.0 Marker-UA-7f3e"), ("REFERER", "https://x.example/marker-ref-91c2"),
               ("COOKIE", "t=marker-cookie-55ab"), ("X-FORWARDED-FOR", "203.0.113.77")]
    environ = {
        "REQUEST_METHOD": "GET", "RAW_URI": "/p/EVO-1", "PATH_INFO": "/p/EVO-1", "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "198.51.100.23", "HTTP_USER_AGENT": "Marker-UA-7f3e",
        "HTTP_REFERER": "marker-ref-91c2", "HTTP_COOKIE": "t=marker-cookie-55ab", "HTTP_X_FORWARDED_FOR": "203.0.113.77",
    }
    resp = SimpleNamespace(status="200 OK", headers=[("Content-Type", "text/html")], sent=512)
    logger.access(resp, SimpleNamespace(headers=headers), environ, timedelta(milliseconds=12))
    for handler in logger.access_log.handlers:
        handler.flush()
    line = path.read_text()
    assert line.strip(), "the access log wrote nothing"
    assert [m for m in MARKERS if m in line] == []
    if fmt == ACCESS_LOG_FORMAT:
        assert '"GET /p/EVO-1 HTTP/1.1" 200 512 12ms' in line


def test_a_malformed_request_is_logged_without_its_address(tmp_path: Path, loggers: list[Any]) -> None:
    path = tmp_path / "error.log"
    cfg = served_config(tmp_path, errorlog=str(path))
    logger = cfg.logger_class(cfg)
    loggers.append(logger)
    # What gunicorn's worker logs for a request line it cannot parse (workers/base.py).
    for ip in ("198.51.100.23", "2001:db8::1"):
        logger.warning(f"Invalid request from ip={ip}: Invalid HTTP request line: 'GARBAGE'")
    for handler in logger.error_log.handlers:
        handler.flush()
    text = path.read_text()
    assert text.count("Invalid request: Invalid HTTP request line: 'GARBAGE'") == 2
    assert [m for m in MARKERS if m in text] == []
    assert logging.getLogger("gunicorn.error").propagate is False
