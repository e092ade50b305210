"""Operating the API: the hooks that are about running it, not about the ledger.

In the order they see a request: the client address behind trusted proxies
(``FILIERA_TRUSTED_PROXIES``, Werkzeug's ProxyFix), the request id and request line
(api/requestlog.py), metrics (api/metrics.py), rate limits (api/ratelimits.py), then the
routes; on the way out, baseline security headers. Health routes are api/routes/health.py.
docs/operations.md describes all of it for operators.
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from ledger.config import Settings

from . import metrics, ratelimits, requestlog
from .requestlog import configure_logging
from .routes import health

__all__ = ["prepare", "register"]

# For every response; HTML pages add their own Content-Security-Policy (api/routes/public.py).
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def prepare(settings: Settings) -> None:
    """Before anything is opened: configure logging, check the settings only the API reads.
    Raises ConfigurationError."""
    configure_logging(settings)
    ratelimits.check(settings)


def register(app: Flask, settings: Settings) -> None:
    """Install the operational hooks and routes. Call after ``problems.register`` and before
    the resource blueprints. Raises ConfigurationError for a bad rate-limit setting."""
    if settings.trusted_proxies:
        # Only the last N hops of X-Forwarded-For are believed: the ones our proxies added.
        # Scheme and host stay with gunicorn (FORWARDED_ALLOW_IPS), which signed reads rely on.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0, x_host=0)  # type: ignore[method-assign]
    requestlog.register(app, settings)
    metrics.register(app)
    ratelimits.register(app, settings)
    app.register_blueprint(health.bp)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
