"""The public product page of a lot (issue #5) and its view counts (issue #6).

``/p/{lot}`` and the GS1 Digital Link ``/01/{gtin}/10/{lot}`` render the lot's *public*
provenance view (never a contract, price or payment: PROTOCOL §6) as server-side HTML: origin
and producer, claims and who attested them, the journey, and a "verified against checkpoint N"
badge that is shown only once the page's own entries have been checked against the signed
checkpoint (``ledger.page.verify_view``). ``/p/{lot}/qr.svg`` and ``.png`` are the label's QR
code. Every answer here is HTML (or an image), errors included: a shopper who scans a label
must never meet a JSON problem document.

No JavaScript, no external resource, no cookie. A view is counted per day and lot after the
response has been sent, and nothing about the viewer is stored (docs/privacy.md).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import segno
from flask import Blueprint, Response, render_template, request, url_for
from sqlalchemy.exc import OperationalError

from ledger.clock import Clock
from ledger.encoding import check_lot_id
from ledger.errors import IntegrityFailure, LedgerError, MalformedInput, NotFound
from ledger.gs1 import digital_link_path, gtin_of_product, is_gtin, normalise_gtin
from ledger.notes import verifier_for
from ledger.page import claim_attesters, origin_labels, timeline, verify_view
from ledger.storage.public import count_view, lot_product
from ledger.storage.stories import read_view
from ledger.storage.store import Store
from ledger.story import ProvenanceView

from ..openapi import F, HTML, PNG, SVG, operation
from ..problems import status_for
from ..services import services

__all__ = ["bp", "CSP"]

log = logging.getLogger("filiera.public")

bp = Blueprint("public", __name__)

# No script may run (none is needed), nothing may load from elsewhere, no page may frame this
# one, and no form may post anywhere; styles and images come from this server only.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=()",
}
_PATH = {"lot": "string"}
# Print sizes of the label's QR code: 0.5 mm modules in the SVG, and 12 px modules at 600 dpi
# (0.51 mm) in the PNG, within the 0.396 to 0.990 mm GS1 allows for QR codes scanned at retail
# points of sale (General Specifications §5.12.3.1).
_SVG_MODULE_MM = 0.5
_PNG_SCALE, _PNG_DPI = 12, 600


def _public(summary: str, *, body: str = HTML, path: Mapping[str, str] = _PATH) -> Callable[[F], F]:
    """The OpenAPI operation of a public page or image: ``body`` on success, and an HTML page
    for a lot that is not here (404) or a database that cannot answer (503)."""
    return operation(summary=summary, tag="public", responses={200: body, 404: HTML, 503: HTML}, path=path, errors=(404,))


class PageNotFound(Exception):
    """A label that leads nowhere: the sentence to show the shopper."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@bp.after_request
def _security_headers(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


@bp.after_app_request
def _static_headers(resp: Response) -> Response:
    # The page's stylesheet is served by Flask's own static route, outside this blueprint.
    if request.endpoint == "static":
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy", CSP)
    return resp


@bp.errorhandler(PageNotFound)
def _not_found(exc: PageNotFound) -> tuple[str, int]:
    return render_template("not_found.html", message=exc.message), 404


@bp.errorhandler(LedgerError)
def _ledger_error(exc: LedgerError) -> tuple[str, int]:
    if isinstance(exc, MalformedInput):
        # A malformed lot id on a label is, for the shopper, a product that is not here.
        message = ("This is not a lot number this ledger could have issued: a lot number is 1 to 200 "
                   "letters, digits and . _ : / - characters, starting with a letter or digit.")
        return render_template("not_found.html", message=message), 404
    if isinstance(exc, NotFound):
        return render_template("not_found.html", message=exc.detail), 404
    status = status_for(exc)
    if status >= 500:
        log.warning("public page failed: %s: %s", exc.code, exc.detail)
    return render_template("error.html", status=status), status


@bp.errorhandler(OperationalError)
def _database_unavailable(exc: OperationalError) -> tuple[str, int, dict[str, str]]:
    log.warning("database unavailable for a public page: %s", exc.orig)
    return render_template("error.html", status=503), 503, {"Retry-After": "5"}


# --- pages -------------------------------------------------------------------------------


@bp.get("/p/<path:lot>")
@_public("Public product page of a lot (HTML)")
def page(lot: str) -> Response:
    """The lot's public provenance as an accessible HTML page for shoppers: origin and
    producer, claims and who attested them, the journey, and a "verified against checkpoint N"
    badge with how to verify it offline. No JavaScript, no cookie; a view is counted per day
    and lot, with nothing about the viewer (docs/privacy.md). Unknown lot: an HTML 404."""
    return _render(lot, gtin=None)


@bp.get("/01/<gtin>/10/<path:lot>")
@_public("GS1 Digital Link to a lot's public product page (HTML)", path={"gtin": "string", **_PATH})
def digital_link(gtin: str, lot: str) -> Response:
    """The product page for GS1 Digital Link URI ``/01/{gtin}/10/{lot}`` (GTIN, then batch or
    lot): the GTIN must have a valid check digit and, when the lot's product carries a GTIN
    (docs: "product name or GTIN"), be that one; otherwise an HTML 404."""
    if not is_gtin(gtin):
        raise PageNotFound(f"{gtin} is not a GTIN: its check digit is wrong, or it is not 8, 12, 13 or 14 digits.")
    return _render(lot, gtin=normalise_gtin(gtin))


@bp.get("/p/<path:lot>/qr.svg")
@_public("QR code of a lot's label (SVG, 0.5 mm modules)", body=SVG)
def qr_svg(lot: str) -> Response:
    """A QR code for printing on the lot's label: it encodes the GS1 Digital Link URL when
    the lot's product carries a GTIN (and the lot id fits GS1's batch/lot field), the
    ``/p/{lot}`` URL otherwise, on ``FILIERA_PUBLIC_URL`` when set. Sized for print."""
    url = _qr_target(lot)
    out = io.BytesIO()
    _qr(url).save(out, kind="svg", scale=_SVG_MODULE_MM, unit="mm", light="#fff", title=f"QR code of {url}", xmldecl=True)
    return _image(out.getvalue(), SVG)


@bp.get("/p/<path:lot>/qr.png")
@_public("QR code of a lot's label (PNG, 600 dpi)", body=PNG)
def qr_png(lot: str) -> Response:
    """The same QR code as ``qr.svg``, as a PNG of 12-pixel modules marked 600 dpi."""
    out = io.BytesIO()
    _qr(_qr_target(lot)).save(out, kind="png", scale=_PNG_SCALE, dpi=_PNG_DPI)
    return _image(out.getvalue(), PNG)


# --- helpers -----------------------------------------------------------------------------


def _base_url() -> str:
    """Where the public pages live: ``FILIERA_PUBLIC_URL``, or this request's own root."""
    configured = services().settings.public_url
    return configured or request.url_root.rstrip("/")


def _label_url(lot: str, product: str | None) -> str:
    """The URL a label prints for ``lot``: GS1 Digital Link when its product carries a GTIN
    that the lot id can accompany, Filiera's ``/p/{lot}`` otherwise."""
    gtin = gtin_of_product(product)
    path = digital_link_path(gtin, lot) if gtin is not None else None
    return _base_url() + (path or f"/p/{quote(lot, safe='/:')}")


def _read(lot: str) -> ProvenanceView:
    check_lot_id(lot, field="lot")
    svc = services()
    view = read_view(svc.store, lot, viewer=None, max_lots=svc.settings.provenance_max_lots)
    if view is None:
        raise PageNotFound(f"No product with lot {lot} is recorded in this ledger. Check the lot printed on the label.")
    return view


def _render(lot: str, *, gtin: str | None) -> Response:
    view = _read(lot)
    p = view.provenance
    carried = gtin_of_product(p.product)
    if gtin is not None and carried is not None and carried != gtin:
        raise PageNotFound(f"Lot {lot} is not of the product with GTIN {gtin}. Check the code printed on the label.")
    svc = services()
    verifier = verifier_for(view.ledger, svc.ledger_key.raw) if svc.ledger_key is not None else None
    verified: int | None = None
    if verifier is not None:
        try:
            verified = verify_view(view, verifier)
        except IntegrityFailure as exc:
            # The database disagrees with the signed checkpoint: say so rather than vouch.
            log.error("the public view of lot %s does not verify: %s: %s", lot, exc.code, exc.detail)
    html = render_template(
        "product.html",
        ledger=view.ledger,
        view=view,
        p=p,
        gtin=carried,
        events=timeline(view),
        attesters=claim_attesters(p),
        verified=verified,
        vkey=verifier.vkey if verifier is not None else None,
        names=view.names,
        label_url=_label_url(lot, p.product),
        certificate_url=url_for("lots.certificate", lot=lot),
        provenance_url=url_for("lots.provenance", lot=lot),
    )
    resp = Response(html, mimetype="text/html")
    # The story grows with every block, so a cached page would be stale at once.
    resp.headers["Cache-Control"] = "no-cache"
    # A read-only node cannot write the count; its views go uncounted (docs/operations.md).
    if request.method == "GET" and not svc.settings.read_only:
        country, region = origin_labels(p)
        resp.call_on_close(_counter(svc.store, svc.sealer.clock, lot=lot, product=p.product or "", country=country, region=region))
    return resp


def _counter(store: Store, clock: Clock, **labels: str) -> Callable[[], None]:
    """Count one view once the response has gone out (a WSGI server closes the response after
    sending it). Only the day, the lot and its labels are written; a failure is logged and
    never reaches the shopper."""

    def count() -> None:
        try:
            count_view(store, day=clock.now().date(), **labels)
        except Exception as exc:  # noqa: BLE001 - counting is best effort by design
            log.warning("could not count a view of lot %s: %s", labels.get("lot"), type(exc).__name__)

    return count


def _qr_target(lot: str) -> str:
    check_lot_id(lot, field="lot")
    product = lot_product(services().store, lot)
    if product is None:
        raise PageNotFound(f"No product with lot {lot} is recorded in this ledger, so it has no QR code.")
    return _label_url(lot, product)


def _qr(url: str) -> Any:
    # Level M at least (segno raises it when the symbol has room): a label survives scuffs.
    return segno.make(url, error="m", micro=False)


def _image(data: bytes, mimetype: str) -> Response:
    resp = Response(data, mimetype=mimetype)
    # A lot's label URL never changes once the lot is sealed (unless FILIERA_PUBLIC_URL does).
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp


# --- template filters --------------------------------------------------------------------


@bp.app_template_filter("day")
def _day(value: str | None) -> str:
    """``2026-06-27`` (or a time that day) as ``27 Jun 2026``."""
    if not value:
        return ""
    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").strftime("%-d %b %Y")
    except ValueError:
        return value


@bp.app_template_filter("moment")
def _moment(value: str | None) -> str:
    """An RFC 3339 UTC time as ``30 Jun 2026, 12:05 UTC``; a bare date as ``_day`` does."""
    if not value:
        return ""
    if len(value) <= 10:
        return _day(value)
    try:
        when = datetime.strptime(value[:16], "%Y-%m-%dT%H:%M")
    except ValueError:
        return value
    return when.strftime("%-d %b %Y, %H:%M UTC")
