"""The webhook worker (``filiera worker``, docs/webhooks.md): fills the outbox from the facts
projection and delivers it, at least once and in order per subscription, with Standard
Webhooks signatures, retrying failures with capped exponential backoff and jitter.

It is its own process: whatever an endpoint does (refuse, hang, answer 500 for days), the API
and sealing never wait for it. Inside the worker, each subscription is served by at most one
thread at a time (so its facts go out in log order: the next is sent only once the one before
was acknowledged), and subscriptions are served side by side by a pool, so a slow endpoint
holds one thread for at most ``timeout`` seconds and never holds up the others' turns.

At least once: a delivery is marked done only after a 2xx answer was received, in a
transaction of its own. A worker that dies between the answer and that write sends the same
message again (same ``webhook-id``) when it restarts; receivers deduplicate on it.

One worker per ledger at a time: :func:`worker_lock` (an ``flock`` beside a SQLite database, a
PostgreSQL advisory lock) makes a second one wait, so two never race on one subscription.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import random
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .clock import Clock, SystemClock
from .errors import LedgerError, WebhookUrlRefused
from .storage import webhooks as wh
from .storage.store import Store
from .webhook_secrets import SecretBox
from .webhooks import check_url, public_address, retry_delay, sign_headers

__all__ = ["Outcome", "Send", "http_send", "WebhookWorker", "worker_lock", "USER_AGENT"]

log = logging.getLogger("filiera.webhooks")

USER_AGENT = "Filiera-Webhooks/1"
# Undelivered facts kept in the outbox per subscription; the rest wait in the projection.
WINDOW = 100
# Deliveries to one subscription in one turn, so that a busy one yields its thread.
TURN = 50
# Deliveries that succeeded are forgotten after this long (GET /v1/webhooks shows the last).
KEEP_DELIVERED_MS = 7 * 24 * 3600 * 1000
_MAX_ANSWER = 4096
# A session-level PostgreSQL advisory lock key: "FILIERAW".
_PG_WORKER_LOCK = 0x46494C4945524157


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: an HTTP status, or ``error`` when there was no answer."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else (self.error or "no answer")


# (url, headers, body, timeout seconds, allow_private) -> Outcome. Never raises.
Send = Callable[[str, Mapping[str, str], bytes, float, bool], Outcome]


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to an address resolved and checked beforehand, so that a name
    cannot resolve to a public address for the check and a private one for the call."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedTLS(_Pinned):
    _context = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        # The certificate is checked against the URL's host name, not the address.
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def http_send(url: str, headers: Mapping[str, str], body: bytes, timeout: float, allow_private: bool) -> Outcome:
    """POST one message. Redirects are not followed (a 3xx is a failure: Standard Webhooks);
    the answer's body is read up to 4 KiB and dropped. Never raises."""
    try:
        target = check_url(url, allow_private=True, resolve=None)
        addresses = _resolve(target.host, target.port)
        if not allow_private:
            addresses = [a for a in addresses if public_address(a)]
            if not addresses:
                raise WebhookUrlRefused(f"{target.host} resolves to no public address")
    except WebhookUrlRefused as exc:
        return Outcome(None, f"refused: {exc.detail}")
    except OSError as exc:
        return Outcome(None, f"cannot resolve {url.split('/')[2]}: {exc}")
    cls = _PinnedTLS if target.scheme == "https" else _Pinned
    conn = cls(target.host, target.port, addresses[0], timeout)
    try:
        conn.request(
            "POST", target.target, body=body,
            headers={**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        resp = conn.getresponse()
        resp.read(_MAX_ANSWER)
        return Outcome(resp.status, None, _retry_after(resp.getheader("Retry-After")))
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s")
    except ssl.SSLError as exc:
        return Outcome(None, f"TLS: {exc.reason or exc}")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()


@dataclass
class WebhookWorker:
    """Fill and deliver. :meth:`step` does one pass in the calling thread (tests, ``--once``);
    :meth:`run` loops until ``stop`` is set, serving subscriptions from a pool."""

    store: Store
    box: SecretBox
    allow_private: bool = False
    timeout: float = 15.0
    retry_base: float = 5.0
    retry_max: float = 3600.0
    concurrency: int = 8
    interval: float = 1.0
    clock: Clock = field(default_factory=SystemClock)
    send: Send = http_send
    jitter: Callable[[], float] = random.random
    window: int = WINDOW
    stop: threading.Event = field(default_factory=threading.Event)
    _unreadable: set[str] = field(default_factory=set)
    _pruned_at: int = 0

    def _now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def fill(self) -> list[wh.Subscription]:
        """Queue new facts for every active subscription; returns those subscriptions."""
        with self.store.read() as conn:
            subs = wh.active_subscriptions(conn)
        for sub in subs:
            try:
                wh.fill(self.store, sub, window=self.window, now_ms=self._now_ms())
            except LedgerError as exc:
                log.warning("webhook %s: cannot queue facts: %s", sub.id, exc)
        return subs

    def serve(self, sub: wh.Subscription) -> int:
        """Send ``sub``'s due deliveries in order, until one fails, none is due, or its turn
        ends; returns how many were acknowledged."""
        try:
            secret = self.box.unseal(sub.id, sub.sealed_secret)
        except LedgerError as exc:
            if sub.id not in self._unreadable:
                self._unreadable.add(sub.id)
                log.error("webhook %s skipped: %s", sub.id, exc.detail)
            return 0
        done = 0
        while done < TURN and not self.stop.is_set():
            d = wh.head_delivery(self.store, sub.id)
            if d is None or d.next_attempt_at > self._now_ms():
                break
            stamp = int(self.clock.now().timestamp())
            outcome = self.send(sub.url, sign_headers(secret, d.msg_id, stamp, d.body), d.body, self.timeout, self.allow_private)
            now = self._now_ms()
            if outcome.ok:
                wh.record_success(self.store, d, now_ms=now, result=outcome.describe())
                done += 1
                continue
            if outcome.status == 410:
                # Standard Webhooks: the receiver wants no more; stop rather than retry.
                wh.record_failure(self.store, d, now_ms=now, next_ms=now, result="HTTP 410: endpoint gone")
                wh.mark_gone(self.store, sub.id)
                log.warning("webhook %s: endpoint answered 410 Gone; subscription stopped", sub.id)
                break
            delay = retry_delay(d.attempts + 1, base=self.retry_base, cap=self.retry_max, jitter=self.jitter())
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self.retry_max))
            wh.record_failure(self.store, d, now_ms=now, next_ms=now + int(delay * 1000), result=outcome.describe())
            log.warning(
                "webhook %s: delivery %s failed (%s), attempt %d; next in %.1f s",
                sub.id, d.msg_id, outcome.describe(), d.attempts + 1, delay,
            )
            break
        return done

    def _prune(self) -> None:
        now = self._now_ms()
        if now - self._pruned_at >= 3600 * 1000:
            self._pruned_at = now
            wh.prune_delivered(self.store, before_ms=now - KEEP_DELIVERED_MS)

    def step(self) -> int:
        """One pass: fill, then serve every subscription in turn. Returns acknowledgements."""
        self._prune()
        return sum(self.serve(sub) for sub in self.fill())

    def run(self) -> None:
        """Loop until :attr:`stop` is set; then let deliveries under way finish (each within
        ``timeout``) and return."""
        busy: dict[str, Future[int]] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="filiera-webhook") as pool:
            while not self.stop.is_set():
                try:
                    self._prune()
                    for sub in self.fill():
                        running = busy.get(sub.id)
                        if running is None or running.done():
                            busy[sub.id] = pool.submit(self._serve_logged, sub)
                except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                    log.exception("webhook round failed; retrying")
                self.stop.wait(self.interval)

    def _serve_logged(self, sub: wh.Subscription) -> int:
        try:
            return self.serve(sub)
        except Exception:  # noqa: BLE001
            log.exception("webhook %s: delivery round failed", sub.id)
            return 0


@contextlib.contextmanager
def worker_lock(store: Store, stop: threading.Event, *, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the ledger's one worker lock for the body; yields False if ``stop`` was set
    while waiting for it. The lock goes with the process, however it ends."""
    waited = False
    if store.dialect == "sqlite":
        import fcntl

        database = store.engine.url.database or ""
        path = Path(f"{database}-webhook-worker.lock")
        fd = path.open("a+b")
        try:
            while True:
                try:
                    fcntl.flock(fd.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited and on_wait:
                        on_wait()
                    waited = True
                    if stop.wait(1.0):
                        yield False
                        return
            yield True
        finally:
            fd.close()
        return
    with store.engine.connect() as conn:
        while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_PG_WORKER_LOCK})").scalar_one():
            conn.commit()
            if not waited and on_wait:
                on_wait()
            waited = True
            if stop.wait(1.0):
                yield False
                return
        conn.commit()
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_WORKER_LOCK})")
                conn.commit()

