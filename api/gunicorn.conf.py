"""gunicorn settings for `filiera serve`, which passes --bind and --workers on top.

Threaded workers (gthread) so that a slow client holds a thread, not a whole worker; request
line and header limits as TESTPLAN T8 asks. The app is built after fork in every worker
(no preload), so no database connection or sealing thread is shared between processes. Below,
the run directory that the workers share for metrics and rate-limit counters (api/metrics.py,
api/ratelimits.py), and the hooks that keep it right. Limits and timeouts: docs/operations.md.

No access log (gunicorn's default, kept on purpose): page views are counted as aggregates, and a
log of requests would record who read which product page. If an operator turns one on anyway,
``api.accesslog.PrivateLogger`` keeps client addresses, user agents, referrers and request
headers out of it (docs/privacy.md). Filiera's own request lines (api/requestlog.py) name the
route template, never the path, and no client address unless FILIERA_LOG_CLIENT_IPS=on.
"""

worker_class = "gthread"
threads = 4
preload_app = False
timeout = 60
graceful_timeout = 20
keepalive = 5
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
errorlog = "-"
accesslog = None
logger_class = "api.accesslog.PrivateLogger"
access_log_format = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %(p)s'
wsgi_app = "wsgi:app"


# --- the run directory: per-run state every worker shares ------------------------------------
# Prometheus' multiprocess files (one set per worker, summed at a scrape) and the rate-limit
# counters live in a private directory made for this run: FILIERA_RUN_DIR if the operator
# names one (e.g. systemd's RuntimeDirectory), else a fresh 0700 temporary directory that is
# removed when the server stops. Either way it is emptied first, so that no worker's counts
# from an earlier run leak into this one. The master does this as it starts (a hook, so that
# reading this file has no effect), before any worker is forked and imports prometheus_client:
# every worker inherits the variables.

_run = {}


def on_starting(server):  # noqa: ANN001 - gunicorn's hook signature
    import os
    import shutil
    import tempfile
    from pathlib import Path

    named = os.environ.get("FILIERA_RUN_DIR")
    run_dir = Path(named or tempfile.mkdtemp(prefix="filiera-run-"))
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    metrics_dir = run_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(mode=0o700)
    for stale in run_dir.glob("rate-limits.sqlite*"):
        stale.unlink()
    os.environ["FILIERA_RUN_DIR"] = str(run_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    _run.update(path=run_dir, owned=not named)


def child_exit(server, worker):  # noqa: ANN001
    # A dead worker's live gauges must not be summed any more (prometheus_client docs).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001
    import shutil

    if _run.get("owned"):
        shutil.rmtree(_run["path"], ignore_errors=True)
