"""gunicorn's logger without anything about the client (issue #6, docs/privacy.md).

`filiera serve` writes no access log at all (gunicorn's default). An operator may still turn
one on (``--access-logfile``, ``GUNICORN_CMD_ARGS``); with this logger class such a log never
records the client's address, user, user agent, referrer or any request header, whatever
``access_log_format`` asks for: the atoms are blanked before formatting. gunicorn's own warning
about a malformed request ("Invalid request from ip=...") loses the address too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gunicorn import glogging

__all__ = ["PrivateLogger", "ACCESS_LOG_FORMAT", "CLIENT_ATOMS"]

# Time, request line without the query, status, body size, duration in ms, worker pid.
ACCESS_LOG_FORMAT = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %(p)s'
# gunicorn's atoms about the client: address, basic-auth user, referrer, user agent.
CLIENT_ATOMS = ("h", "u", "f", "a")
_INVALID = "Invalid request from ip="


class PrivateLogger(glogging.Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: timedelta) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in CLIENT_ATOMS:
            atoms[name] = "-"
        # Request headers ({name}i) and WSGI environ variables ({name}e) carry the address,
        # cookies, user agent and forwarding headers: none is logged (missing atoms print "-").
        for name in [k for k in atoms if k.startswith("{") and k.endswith(("}i", "}e"))]:
            del atoms[name]
        return atoms

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith(_INVALID):
            # "Invalid request from ip=<address>: <error>"; an IPv6 address has no ": ".
            msg = "Invalid request: " + msg[len(_INVALID) :].partition(": ")[2]
        super().warning(msg, *args, **kwargs)
