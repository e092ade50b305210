"""One T1 client process: a supplier posting signed ``origin`` entries (one fresh lot each) at a
fixed rate over one keep-alive connection, through kills and restarts, recording what every
request came to (checker.OUTCOMES) and every signed checkpoint it sees.

Runs in a spawned child process (no state shared with the harness); its record goes to a
JSON file the harness reads once the client has exited.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import jcs
from ledger.entries import sign_payload
from ledger.keys import SigningKey

from ..factories import payload

__all__ = ["ClientPlan", "run_client"]

HOST = "127.0.0.1"
JSON = {"Content-Type": "application/json"}
ASYNC = {"Content-Type": "application/json", "Prefer": "respond-async"}
# A request waits for its block (FILIERA_SEAL_TIMEOUT, 30 s by default); a little more here,
# so that a timeout on this side means the server is hung, not merely slow.
REQUEST_TIMEOUT_S = 40.0
CHECKPOINT_EVERY_S = 2.0


@dataclass(frozen=True)
class ClientPlan:
    number: int
    member: str
    seed: bytes
    origin: str
    port: int
    rate: float  # requests per second
    until: float  # time.monotonic() deadline (CLOCK_MONOTONIC is system-wide on Linux)
    async_share: float  # the share of posts sent with Prefer: respond-async (202)
    rng_seed: int
    out: str
    # How long one entry is resent after a failure (the same bytes, so the same id) while the
    # server restarts; after that its outcome stays unknown and the client moves on.
    resend_for: float = 20.0


class _Conn:
    """A keep-alive connection, reopened after any failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _entry(plan: ClientPlan, key: SigningKey, seq: int) -> tuple[str, bytes]:
    lot = {"lot": f"T1-{plan.number:02d}-{seq:07d}", "product": "olives", "quantity": "1000", "unit": "kg"}
    p = payload("origin", plan.member, origin=plan.origin)
    p.update(lots=[lot], site="Uliveto di Bitonto", origin={"country": "IT", "region": "Puglia", "produced_on": "2026-10-15"})
    entry_id = hashlib.sha256(jcs.canonicalize(p)).hexdigest()
    return entry_id, json.dumps(sign_payload(p, [(plan.member, key)])).encode()


def _send(conn: _Conn, body: bytes, headers: dict[str, str], until: float) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Send one entry, resending the same bytes after a failure until ``until``.

    Returns the outcome, the acknowledgement (or refusal) body, and every attempt."""
    attempts: list[dict[str, Any]] = []
    ambiguous = False
    while True:
        began = time.monotonic()
        try:
            status, data = conn.request("POST", "/v1/entries", body, headers)
        except ConnectionRefusedError:
            # Nothing was sent: the port is closed while the server restarts.
            attempts.append({"t": began, "end": time.monotonic(), "error": "refused"})
        except (OSError, http.client.HTTPException) as exc:
            # Sent, perhaps received and committed: the outcome is unknown.
            ambiguous = True
            attempts.append({"t": began, "end": time.monotonic(), "error": type(exc).__name__})
        else:
            attempts.append({"t": began, "end": time.monotonic(), "status": status})
            if status in (200, 201):
                return "sealed", json.loads(data), attempts
            if status == 202:
                return "queued", json.loads(data), attempts
            if 400 <= status < 500:
                return "refused", {"status": status, "body": data[:300].decode("utf-8", "replace")}, attempts
            # A 5xx: the request reached the server and may have been committed.
            ambiguous = True
            attempts[-1]["body"] = data[:300].decode("utf-8", "replace")
        if time.monotonic() >= until:
            return ("unknown" if ambiguous else "not_sent"), {}, attempts
        time.sleep(0.25)


def run_client(plan: ClientPlan) -> None:
    """Post until ``plan.until``, then write the record to ``plan.out``."""
    rng = random.Random(plan.rng_seed)
    key = SigningKey(plan.seed)
    conn = _Conn(plan.port)
    sent: list[dict[str, Any]] = []
    checkpoints: set[str] = set()
    checkpoint_errors = 0
    next_at = time.monotonic()
    last_checkpoint = 0.0
    seq = 0
    while time.monotonic() < plan.until:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        # Paced, never bursting to catch up after a stall: the offered rate stays ~rate.
        next_at = max(next_at + 1.0 / plan.rate, time.monotonic())
        if time.monotonic() - last_checkpoint >= CHECKPOINT_EVERY_S:
            last_checkpoint = time.monotonic()
            try:
                status, data = conn.request("GET", "/v1/checkpoint", None, {})
                if status == 200:
                    checkpoints.add(data.decode("utf-8"))
                else:
                    checkpoint_errors += 1
            except (OSError, http.client.HTTPException):
                checkpoint_errors += 1
        entry_id, body = _entry(plan, key, seq)
        seq += 1
        headers = ASYNC if rng.random() < plan.async_share else JSON
        outcome, answer, attempts = _send(conn, body, headers, time.monotonic() + plan.resend_for)
        record: dict[str, Any] = {"id": entry_id, "outcome": outcome, "attempts": attempts}
        if outcome == "sealed":
            # Kept as told, even a receipt naming another entry: the checker then finds this
            # entry missing from the place it was acknowledged at.
            record.update(index=answer["index"], leaf_hash=answer["leaf_hash"], tlog_proof=answer["tlog_proof"])
            if answer.get("id") != entry_id:
                record["receipt_id"] = answer.get("id")
            checkpoints.add(answer["tlog_proof"].partition("\n\n")[2])
        elif outcome == "refused":
            record["refusal"] = answer
        sent.append(record)
    conn.close()
    Path(plan.out).write_text(
        json.dumps({"client": plan.number, "member": plan.member, "sent": sent, "checkpoints": sorted(checkpoints), "checkpoint_errors": checkpoint_errors}),
        encoding="utf-8",
    )
