"""gunicorn settings for `filiera serve`, which passes --bind and --workers on top.

Threaded workers (gthread) so that a slow client holds a thread, not a whole worker; request
line and header limits as TESTPLAN T8 asks. The app is built after fork in every worker
(no preload), so no database connection or sealing thread is shared between processes. Below,
the run directory that the workers share for metrics and rate-limit counters (api/metrics.py,
api/ratelimits.py), and the hooks that keep it right. Limits and timeouts: docs/operations.md.
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
wsgi_app = "wsgi:app"


# --- the run directory: per-run state every worker shares ------------------------------------
# Prometheus' multiprocess files (one set per worker, summed at a scrape) and the rate-limit
# counters live in a private directory made for this run: FILIERA_RUN_DIR if the operator
# names one (e.g. systemd's RuntimeDirectory), else a fresh 0700 temporary directory that is
# removed when the server stops. Either way it is emptied first, so that no worker's counts
# from an earlier run leak into this one. The variables are set before any worker starts (and
# before prometheus_client is imported), so every worker inherits them.

import os as _os
import shutil as _shutil
import tempfile as _tempfile
from pathlib import Path as _Path

_owned_run_dir = not _os.environ.get("FILIERA_RUN_DIR")
_run_dir = _Path(_os.environ.get("FILIERA_RUN_DIR") or _tempfile.mkdtemp(prefix="filiera-run-"))
_run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
_metrics_dir = _run_dir / "metrics"
_shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(mode=0o700)
for _stale in _run_dir.glob("rate-limits.sqlite*"):
    _stale.unlink()
_os.environ["FILIERA_RUN_DIR"] = str(_run_dir)
_os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    # A dead worker's live gauges must not be summed any more (prometheus_client docs).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001
    if _owned_run_dir:
        _shutil.rmtree(_run_dir, ignore_errors=True)
