"""Webhook test helpers: loopback receivers that check every delivery's signature with the
function docs/webhooks.md shows (extracted from the doc and run as it is) and with the
Standard Webhooks reference library, and signed subscription requests.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from ledger.httpsig import sign_request

from .factories import Member

WEBHOOKS_DOC = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"


def doc_verifier() -> Callable[..., Any]:
    """``verify_webhook`` as docs/webhooks.md defines it, run from the doc's own text."""
    blocks = re.findall(r"```python\n(.*?)```", WEBHOOKS_DOC.read_text(encoding="utf-8"), re.DOTALL)
    (source,) = [b for b in blocks if "def verify_webhook" in b]
    namespace: dict[str, Any] = {}
    exec(compile(source, str(WEBHOOKS_DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    verify: Callable[..., Any] = namespace["verify_webhook"]
    return verify


@dataclass
class Arrival:
    msg_id: str
    timestamp: int
    body: bytes
    payload: dict[str, Any]
    status: int  # what the receiver answered (0: it never answered)


# (n-th request overall, from 1; webhook-id) -> (status to answer, seconds to wait first);
# status None: hold the connection until ``release`` is set, then drop it without answering.
Script = Callable[[int, str], tuple[int | None, float]]


def always(status: int = 200) -> Script:
    return lambda n, msg: (status, 0.0)


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that verifies each delivery against ``secret`` (set
    once the subscription is made) and records it; an unverifiable one fails the test."""

    script: Script = field(default_factory=always)
    secret: str | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    retry_after: str | None = None  # sent with every failure answer when set
    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/filiera?tenant=1"

    def start(self) -> Receiver:
        verify = doc_verifier()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                msg_id = headers.get("webhook-id", "")
                with receiver._lock:
                    n = len(receiver.arrivals) + 1
                    status, wait = receiver.script(n, msg_id)
                    try:
                        assert receiver.secret is not None, "a delivery before the subscription existed"
                        assert self.path == "/hooks/filiera?tenant=1"
                        assert headers["content-type"] == "application/json"
                        payload = verify(receiver.secret, headers, body)
                        assert Webhook(receiver.secret).verify(body, headers) == payload
                    except Exception as exc:  # noqa: BLE001 - recorded, failed by the test
                        receiver.bad.append(f"{msg_id}: {exc!r}")
                        payload = {}
                    receiver.arrivals.append(
                        Arrival(msg_id, int(headers.get("webhook-timestamp", "0")), body, payload, status or 0)
                    )
                if status is None:
                    receiver.holding.set()
                    receiver.release.wait(60)
                    self.close_connection = True
                    return
                if wait:
                    time.sleep(wait)
                try:
                    self.send_response(status)
                    if receiver.retry_after is not None and status >= 300:
                        self.send_header("Retry-After", receiver.retry_after)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the worker gave up waiting

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def acknowledged(self) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if 200 <= a.status < 300]

    def first_arrivals(self) -> list[str]:
        """Message ids in the order they first arrived."""
        seen: dict[str, None] = {}
        with self._lock:
            for a in self.arrivals:
                seen.setdefault(a.msg_id, None)
        return list(seen)


@contextmanager
def receiver(script: Script | None = None) -> Iterator[Receiver]:
    r = Receiver(script or always()).start()
    try:
        yield r
    finally:
        r.stop()


def dead_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"


def signed(client: Any, method: str, path: str, member: Member, body: Any = None) -> Any:
    """A member's RFC 9421 signed request through a Flask test client (body: JSON)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = sign_request(method, f"http://localhost{path}", member.key, body=data)
    if data is not None:
        headers["Content-Type"] = "application/json"
    return client.open(path, method=method, data=data, headers=headers, unsigned=True)


def register(client: Any, member: Member, url: str, types: list[str], **extra: Any) -> dict[str, Any]:
    resp = signed(client, "POST", "/v1/webhooks", member, {"url": url, "types": types, **extra})
    assert resp.status_code == 201, resp.json
    doc: dict[str, Any] = resp.json
    return doc


def position(msg_id: str) -> tuple[int, int]:
    """The (index, seq) of the fact a message id names."""
    _, _, rest = msg_id.partition("_wh_")
    _, index, seq = rest.split("_")
    return int(index), int(seq)
