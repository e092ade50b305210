"""The members' dashboard (docs/analytics.md, "The dashboard"): one server-rendered HTML page
of charts over the facts the member may see: on-time trend by month, transit-time
distribution, origin mix, certified share, and engagement with the public product pages.

Browsers cannot sign requests (RFC 9421), so a member opens it with a link that
``filiera dashboard-link`` makes: a short-lived token the member signs with their own key
(ledger/dashboard_token.py). ``/dashboard?token=...`` checks it, keeps it in a cookie
(HttpOnly, SameSite=Lax, Secure over HTTPS, path /dashboard, gone when the token expires) and
redirects to ``/dashboard``, so the token leaves the address bar; every request checks the
token again, against the member's keys as they are now. Nothing is stored on the server.

Charts are inline SVG drawn on the server: no script, no external resource, the public
page's strict Content-Security-Policy.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from flask import Blueprint, Response, make_response, redirect, render_template, request

from ledger.dashboard_token import verify_token
from ledger.errors import DashboardTokenInvalid, LedgerError, Unauthenticated
from ledger.storage.dashboard import figures

from ..auth import Member
from ..dashboard_charts import columns, rows
from ..openapi import HTML, operation
from ..problems import status_for
from ..services import services
from .public import CSP

__all__ = ["bp", "COOKIE"]

log = logging.getLogger("filiera.dashboard")

bp = Blueprint("dashboard", __name__)

COOKIE = "filiera_dashboard"
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "private, no-store",
}


@bp.after_request
def _security_headers(resp: Response) -> Response:
    for name, value in _HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


@bp.errorhandler(LedgerError)
def _refused(exc: LedgerError) -> Response:
    status = status_for(exc)
    if status >= 500:
        log.warning("dashboard failed: %s: %s", exc.code, exc.detail)
    resp = make_response(render_template("dashboard_denied.html", status=status, code=exc.code, detail=exc.detail), status)
    if isinstance(exc, Unauthenticated):
        resp.delete_cookie(COOKIE, path="/dashboard")
    return resp


def _member(token: str) -> tuple[Member, int]:
    svc = services()
    now = int(svc.sealer.clock.now().timestamp())
    with svc.store.read() as conn:
        policy = svc.store.policy(conn)
        if policy is None:
            raise DashboardTokenInvalid("this ledger has no genesis yet")

        def resolve(key_id: str) -> bytes | None:
            rec = svc.store.key(conn, key_id)
            return rec.public_key if rec is not None and rec.revoked_index is None else None

        checked = verify_token(token, ledger=policy.origin, now=now, resolve=resolve)
        key = svc.store.key(conn, checked.key_id)
        assert key is not None
        participant = svc.store.participant(conn, key.participant)
        assert participant is not None
    return Member(participant, checked.key_id), checked.expires


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.0f}%"


@bp.get("/dashboard")
@operation(
    summary="The members' dashboard (HTML): charts over the facts you may see",
    tag="analytics",
    responses={200: HTML, 303: None, 401: HTML, 503: HTML},
    errors=(),
)
def dashboard() -> Response:
    """Server-rendered charts (inline SVG, no script): on-time trend by month, transit-time
    distribution, origin mix, certified share and product-page views. Open it with the link
    ``filiera dashboard-link`` prints (a short-lived token signed with your key); the token
    is then kept in a cookie and the page redirects to itself without it."""
    svc = services()
    token = request.args.get("token")
    if token is not None:
        member, expires = _member(token)
        resp = redirect("/dashboard", 303)
        now = int(svc.sealer.clock.now().timestamp())
        resp.set_cookie(
            COOKIE, token, max_age=max(0, expires - now), path="/dashboard", httponly=True,
            secure=request.is_secure, samesite="Lax",
        )
        return resp
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise DashboardTokenInvalid("open the dashboard with the link `filiera dashboard-link` prints")
    member, expires = _member(cookie)
    today = svc.sealer.clock.now().date()
    with svc.store.read() as conn:
        head = svc.store.head(conn)
        policy = svc.store.policy(conn)
        figs = figures(conn, viewer=None if member.sees_all else member.id, today=today)
    charts = {
        "on_time": columns([(m.month, m.month, m.on_time_rate, _pct(m.on_time_rate)) for m in figs.months], percent=True),
        "transit": columns([(b.label, b.label, float(b.count), str(b.count)) for b in figs.transit]),
        "origins": rows([(o.name, o.name, o.share, _pct(o.share)) for o in figs.origins]),
        "certified": columns([(m.month, m.month, m.certified_share, _pct(m.certified_share)) for m in figs.months], percent=True),
        "engagement": columns([(d.day, d.day[5:], float(d.views), str(d.views)) for d in figs.engagement]),
    }
    html = render_template(
        "dashboard.html", member=member.participant, sees_all=member.sees_all, figs=figs, charts=charts,
        ledger=policy.origin if policy else "", tree_size=head.tree_size if head else 0, pct=_pct,
        expires=datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return make_response(html, 200)
