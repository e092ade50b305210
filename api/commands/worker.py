"""``filiera worker``: the webhook worker (docs/webhooks.md), a process of its own beside
``filiera serve``.

It fills each subscription's outbox from the facts projection and delivers it (Standard
Webhooks signatures, at least once, in order per subscription, retried with backoff), until
SIGTERM or SIGINT; then no new attempt starts and those under way finish within the timeout.
Only one worker delivers per ledger: another one waits for its lock. ``--once`` makes one pass
and exits. Exit status: 0 stopped cleanly, 2 could not start (configuration, database).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import click

from ledger.errors import LedgerError

from ..cli import EXIT_USAGE, Ctx, cli, fail


@cli.command()
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256), help="Subscriptions served at once.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.01, 3600), help="Seconds between passes over the subscriptions.")
@click.option("--once", is_flag=True, help="One pass (queue new facts, send what is due), then exit.")
@click.pass_obj
def worker(obj: Ctx, concurrency: int, interval: float, once: bool) -> None:
    """Deliver webhooks: facts to the members' endpoints, signed, retried, in order."""
    from ledger.storage.store import Store
    from ledger.webhook_secrets import SecretBox
    from ledger.webhook_worker import WebhookWorker, worker_lock

    settings = obj.settings
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("filiera.webhooks")
    try:
        store = Store.open(settings)
        box = SecretBox.open(settings.webhook_key_file)
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the deliveries under way", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    job = WebhookWorker(
        store, box, allow_private=settings.webhook_allow_private, timeout=settings.webhook_timeout,
        retry_base=settings.webhook_retry_base, retry_max=settings.webhook_retry_max,
        concurrency=concurrency, interval=interval, stop=stop,
    )
    try:
        with worker_lock(store, stop, on_wait=lambda: log.warning("another worker holds the lock; waiting for it")) as held:
            if not held:
                return
            if once:
                sent = job.step()
                click.echo(f"{sent} deliveries acknowledged")
                return
            log.info("webhook worker started (%d at a time, every %g s)", concurrency, interval)
            job.run()
            log.info("webhook worker stopped")
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    finally:
        store.dispose()
    sys.exit(0)
