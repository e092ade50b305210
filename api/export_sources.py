"""Where ``filiera export`` reads an audit bundle from: the local database, or a server's
``GET /v1/export`` (PROTOCOL §6) signed as an auditor (RFC 9421).

Either way the result is a :class:`BundleStream`: the resolved range, known before the first
line, and the bundle's lines, read lazily one at a time so that memory stays bounded whatever
the size of the ledger. A range the ledger refuses raises before any line is read, so the
command writes nothing for it.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from ledger.bundle import MAX_LINE
from ledger.config import Settings
from ledger.encoding import format_time
from ledger.errors import LedgerError, Unavailable, error_for_code
from ledger.httpsig import sign_request
from ledger.keys import SigningKey
from ledger.storage.export import bundle_lines, plan_export
from ledger.storage.store import Store

__all__ = ["BundleStream", "local_stream", "http_stream"]

# How long to wait for the server to answer, and between two reads of the stream.
TIMEOUT_S = 60


@dataclass
class BundleStream:
    """A bundle being read: entries [start, end) in whole blocks, and its lines."""

    start: int
    end: int
    lines: Iterator[bytes]
    close: Callable[[], None]


def local_stream(settings: Settings, *, start: int, end: int | None, since: int | None) -> BundleStream:
    """The bundle straight from the database in ``settings``. Raises InvalidExportRange,
    NotInitialised and SQLAlchemy's OperationalError (database unreachable)."""
    store = Store.open(settings)
    try:
        rng = plan_export(store, start=start, end=end, since=since)
    except BaseException:
        store.dispose()
        raise
    lines = bundle_lines(store, rng, created=format_time(datetime.now(timezone.utc)))
    return BundleStream(rng.start, rng.end, lines, store.dispose)


def _problem(status: int, raw: bytes) -> LedgerError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        facts = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "code")}
        return error_for_code(body["code"], str(body.get("detail", "")), status=status, **facts)
    return Unavailable(f"the server answered {status} without a problem document", status=status)


def http_stream(
    url: str, key: SigningKey, *, start: int | None, end: int | None, since: int | None
) -> BundleStream:
    """``GET {url}/v1/export`` signed with ``key``. The server's refusal (403 ``auditors_only``,
    400 ``invalid_export_range``, 401...) is raised as its LedgerError leaf; an unreachable
    server as Unavailable. The lines are read from the socket one at a time."""
    query = {k: v for k, v in (("from", start), ("to", end), ("since", since)) if v is not None}
    target = f"{url.rstrip('/')}/v1/export" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    req = urllib.request.Request(target, method="GET", headers=sign_request("GET", target, key))
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        with err:
            raise _problem(err.code, err.read(64 * 1024)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"cannot reach {url}: {exc}") from exc
    try:
        first, last = int(resp.headers["Filiera-Export-From"]), int(resp.headers["Filiera-Export-To"])
    except (KeyError, TypeError, ValueError):
        resp.close()
        raise Unavailable(f"{target} is not a Filiera export (no Filiera-Export-From/To headers)") from None

    def lines() -> Iterator[bytes]:
        try:
            while True:
                # Bounded: a line longer than any record can be is refused by the reader, not
                # buffered whole.
                raw = resp.readline(MAX_LINE + 1)
                if not raw:
                    return
                yield raw
        except (OSError, http.client.HTTPException) as exc:
            # What arrived so far stays in the .partial file, for --resume.
            raise Unavailable(f"the connection to {url} broke during the download: {exc}") from exc

    return BundleStream(first, last, lines(), resp.close)
