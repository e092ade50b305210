"""Prometheus metrics: ``GET /metrics`` in the text exposition format (prometheus_client).

Under gunicorn every worker is a process of its own, so the counters and histograms are kept
in prometheus_client's multiprocess mode: each worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (a private directory that api/gunicorn.conf.py makes afresh for
every server run) and a scrape, answered by any one worker, adds them all up. Gauges of the
ledger itself (queue depth, tree size, a standby's replication lag) are read from the database
at scrape time instead, so every worker reports the same truth.

Who may scrape is ``FILIERA_METRICS``: ``local`` (default: loopback clients not behind a
proxy), ``auditors`` (requests signed by an auditor or admin), ``public``, or ``off``. The
metric names are documented in docs/operations.md; labels are bounded sets (route templates,
statuses, error codes), never ids.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Iterator, Sequence

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ledger.clock import Clock
from ledger.encoding import parse_time
from ledger.errors import AuditorsOnly, RouteNotFound
from ledger.sealing import Outcome
from ledger.storage.store import Store

from .auth import current_member
from .openapi import TEXT, operation
from .services import services

__all__ = ["bp", "register", "SealMetrics", "HTTP_REQUESTS", "ENTRIES", "SEAL_SECONDS"]

log = logging.getLogger("filiera.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "filiera_http_requests", "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "filiera_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
    ["method", "route"], buckets=_LATENCY_BUCKETS,
)
ENTRIES = Counter(
    "filiera_entries", "Submitted entries by result (created, exists, queued, refused) and "
    "refusal code", ["result", "code"],
)
SEAL_SECONDS = Histogram(
    "filiera_seal_duration_seconds", "Time from taking the append lock to the COMMIT of a block",
    buckets=_LATENCY_BUCKETS,
)
BLOCK_ENTRIES = Histogram(
    "filiera_block_entries", "Entries per sealed block",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
PROOF_SECONDS = Histogram(
    "filiera_proof_duration_seconds", "Time to answer a proof request, by kind",
    ["kind"], buckets=_LATENCY_BUCKETS,
)
RATE_LIMITED = Counter(
    "filiera_rate_limited", "Requests refused with 429 rate_limited, by scope (member, ip)",
    ["scope"],
)

_RESULTS = {"created": "created", "exists": "exists", "pending": "queued", "rejected": "refused"}
_PROOF_ENDPOINTS = {"proofs.inclusion": "inclusion", "proofs.consistency": "consistency"}
_LOOPBACK_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-Ip")


class SealMetrics:
    """The Sealer's observer (ledger.sealing.SealObserver): entries by result, seal time."""

    def entries_settled(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            code = o.error.code if o.error is not None and o.status == "rejected" else ""
            ENTRIES.labels(_RESULTS.get(o.status, o.status), code).inc()

    def block_sealed(self, *, entries: int, seconds: float) -> None:
        SEAL_SECONDS.observe(seconds)
        BLOCK_ENTRIES.observe(entries)


class _LedgerCollector(Collector):
    """Gauges read from the database at scrape time, the same whichever worker answers."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("filiera_database_up", "1 if the database answered this scrape")
        try:
            with self.store.read() as conn:
                head = self.store.head(conn)
                depth, oldest = self.store.pending_depth(conn)
                lag = self.store.replica_lag(conn)
        except Exception:  # noqa: BLE001 - a scrape reports the outage rather than failing
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("filiera_pending_entries", "Entries queued, not yet sealed", value=depth)
        age = 0.0
        if oldest is not None:
            age = max(0.0, (self.clock.now() - parse_time(oldest, field="received_at")).total_seconds())
        yield GaugeMetricFamily(
            "filiera_pending_oldest_age_seconds", "Age of the oldest queued entry (0 if none)", value=age
        )
        if head is not None:
            yield GaugeMetricFamily("filiera_tree_size", "Entries in the log", value=head.tree_size)
            yield GaugeMetricFamily("filiera_block_height", "Height of the latest block", value=head.height)
        if lag is not None:
            # Only on a PostgreSQL standby (a read-only node's database): absent elsewhere.
            yield GaugeMetricFamily(
                "filiera_replica_lag_seconds", "Seconds this standby's replay lags its primary (0 when caught up)",
                value=lag,
            )


class _Process(Collector):
    """The metrics of this process alone (single-process mode: tests, ``flask run``)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def _multiprocess_dir() -> str | None:
    # prometheus_client reads this variable itself, when it is imported, to decide where
    # values live; the scrape has to follow the same choice. api/gunicorn.conf.py sets it.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _is_local() -> bool:
    """A loopback client that came straight, not through a proxy on the same host: a proxied
    request carries forwarding headers (or, with FILIERA_TRUSTED_PROXIES, the real address)."""
    if any(h in request.headers for h in _LOOPBACK_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@operation(
    summary="Prometheus metrics (text exposition format)",
    tag="operations",
    responses={200: TEXT},
    errors=(401, 403, 404),
    description="Who may read it is FILIERA_METRICS: `local` (loopback clients not behind a "
    "proxy; others get 404), `auditors` (RFC 9421 requests signed by an auditor or admin), "
    "`public`, or `off` (404). Metric names: docs/operations.md.",
)
def metrics() -> Response:
    svc = services()
    access = svc.settings.metrics
    if access == "off" or (access == "local" and not _is_local()):
        raise RouteNotFound("no such resource; see /openapi.json for the API")
    if access == "auditors" and not current_member().sees_all:
        raise AuditorsOnly("only auditors and admins may read the metrics")
    registry = CollectorRegistry(auto_describe=False)
    path = _multiprocess_dir()
    if path is not None:
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Process())
    registry.register(_LedgerCollector(svc.store, svc.sealer.clock))
    return Response(
        generate_latest(registry), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )


def register(app: Flask) -> None:
    """Time and count every request; observe the sealer; serve /metrics."""
    if _multiprocess_dir() is not None and values.ValueClass.__name__ == "MutexValue":
        # prometheus_client chose per-process values when it was imported, before the
        # variable was set: each worker would then report only its own counts.
        log.error(
            "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; /metrics "
            "will show one worker's counts only. Import the app only in the workers."
        )
    app.extensions["filiera"].sealer.observer = SealMetrics()

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("metrics_started")
        # A request no route matched is counted under one label, not its (unbounded) path.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        if started is not None:
            elapsed = time.perf_counter() - started
            HTTP_SECONDS.labels(request.method, route).observe(elapsed)
            kind = _PROOF_ENDPOINTS.get(request.endpoint or "")
            if kind is not None and response.status_code == 200:
                PROOF_SECONDS.labels(kind).observe(elapsed)
        return response

    app.register_blueprint(bp)
