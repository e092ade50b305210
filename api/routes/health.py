"""Health for people and load balancers (PROTOCOL §6 ``/v1/health``, plus live and ready).

- ``/v1/health/live``: the process answers; nothing else is checked. A failing liveness probe
  means "restart me", so it must not fail for a database outage a restart cannot fix.
- ``/v1/health/ready``: this worker can serve: the database answers, the ledger has a genesis
  block, and the intake queue drains (its oldest entry waited less than
  ``FILIERA_READY_MAX_PENDING_AGE`` seconds; not checked on a read-only node, which seals
  nothing). On a read-only node over a PostgreSQL standby, the standby's replay lags its
  primary by at most ``FILIERA_READY_MAX_REPLICA_LAG`` seconds. 503 otherwise: take the worker
  out of rotation.
- ``/v1/health``: the normative summary (database reachable, tree size); 200 or 503 like
  readiness, without the queue check.

All three are public, never rate limited, and logged at DEBUG.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields
from sqlalchemy.exc import SQLAlchemyError

from ledger.encoding import parse_time

from ..openapi import operation
from ..schemas.ledger import HealthSchema
from ..services import services

bp = Blueprint("health", __name__)


class LiveSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(HealthSchema):
    checks = fields.Dict(
        keys=fields.String(), values=fields.String(), required=True,
        metadata={"description": "each check and its result: ok, or what failed"},
    )
    pending = fields.Integer(allow_none=True, metadata={"description": "entries queued, not yet sealed"})
    oldest_pending_age = fields.Float(allow_none=True, metadata={"description": "seconds"})
    replica_lag = fields.Float(
        allow_none=True,
        metadata={"description": "read-only nodes only: seconds the standby's replay lags its primary "
                  "(null when the database is not a standby)"},
    )


@bp.get("/v1/health")
@operation(summary="Liveness and readiness", tag="ledger", responses={200: HealthSchema, 503: HealthSchema}, errors=())
def health() -> tuple[Response, int]:
    """200 when the database answers and the ledger has a genesis block; 503 otherwise."""
    svc = services()
    try:
        with svc.store.read() as conn:
            head = svc.store.head(conn)
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable", height=None, tree_size=None), 503
    if head is None:
        return jsonify(status="unavailable", database="ok", height=None, tree_size=None), 503
    return jsonify(status="ok", database="ok", height=head.height, tree_size=head.tree_size), 200


@bp.get("/v1/health/live")
@operation(summary="Liveness: the process answers", tag="operations", responses={200: LiveSchema}, errors=())
def live() -> Response:
    """Always 200 while the worker can answer HTTP; checks nothing else, on purpose."""
    return jsonify(status="ok")


@bp.get("/v1/health/ready")
@operation(summary="Readiness: this worker can serve", tag="operations", responses={200: ReadySchema, 503: ReadySchema}, errors=())
def ready() -> tuple[Response, int]:
    """200 when the database answers, the ledger has a genesis block and the oldest queued
    entry is younger than FILIERA_READY_MAX_PENDING_AGE (on a read-only node instead: its
    standby lags its primary by at most FILIERA_READY_MAX_REPLICA_LAG); 503 naming the failed
    check."""
    svc = services()
    read_only = svc.settings.read_only
    # A read-only node drains no queue: the primary's readiness reports it.
    checks = {"database": "ok", "genesis": "ok"} if read_only else {"database": "ok", "genesis": "ok", "queue": "ok"}
    body: dict[str, object] = {"height": None, "tree_size": None, "pending": None, "oldest_pending_age": None}
    if read_only:
        body["replica_lag"] = None
    lag: float | None = None
    try:
        with svc.store.read() as conn:
            head = svc.store.head(conn)
            depth, oldest = svc.store.pending_depth(conn)
            if read_only:
                lag = svc.store.replica_lag(conn)
    except SQLAlchemyError:
        checks.update({name: "unknown" for name in checks}, database="unreachable")
        return jsonify(status="unavailable", database="unreachable", checks=checks, **body), 503
    body["pending"] = depth
    if head is None:
        checks["genesis"] = "missing: run `filiera init`"
    else:
        body.update(height=head.height, tree_size=head.tree_size)
    if oldest is not None and "queue" in checks:
        age = (svc.sealer.clock.now() - parse_time(oldest, field="received_at")).total_seconds()
        body["oldest_pending_age"] = round(max(0.0, age), 3)
        limit = svc.settings.ready_max_pending_age
        if age > limit:
            checks["queue"] = f"stalled: the oldest queued entry waited {age:.0f} s (limit {limit:g} s)"
    if lag is not None:
        # Only a standby has a lag; a read-only node over SQLite or a primary has no such check.
        body["replica_lag"] = round(lag, 3)
        limit = svc.settings.ready_max_replica_lag
        checks["replica_lag"] = "ok" if lag <= limit else (
            f"behind: the standby's replay lags its primary by {lag:.0f} s (limit {limit:g} s)"
        )
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", database="ok", checks=checks, **body), 200 if ok else 503
