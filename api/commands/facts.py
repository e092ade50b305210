"""``filiera facts``: the analytics facts projection (docs/analytics.md).

``filiera facts rebuild`` replays and verifies the whole log of the local database, as
``filiera verify`` does, and writes the facts projection afresh in one transaction that holds
the append lock (sealing waits meanwhile). Use it after upgrading a ledger sealed before the
projection existed, or when ``filiera verify`` names a fact that differs. Nothing is written
unless the log verifies. Exit status: 0 rebuilt, 1 the ledger does not verify, 2 could not
rebuild (unreachable or uninitialised database).

``filiera facts export`` writes one fact table as CSV or Parquet, from the local database or a
server (``--url`` with a member's ``--key``), with an optional date range.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy.exc import DatabaseError, OperationalError

from ledger.errors import ChainBroken, ConfigurationError, LedgerError, Unavailable
from ledger.facts import KINDS

from ..cli import EXIT_INVALID, EXIT_USAGE, Ctx, cli, fail


@cli.group()
def facts() -> None:
    """The analytics facts projection: rebuild it from the log, export its tables."""


@facts.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result, or the failure, as one JSON object on stdout.")
@click.pass_obj
def rebuild(obj: Ctx, as_json: bool) -> None:
    """Replay and verify the log, and write the facts projection afresh.

    Runs in one transaction holding the append lock: sealing waits until it commits, and a
    log that does not verify leaves the projection as it was. Exit status: 0 rebuilt, 1 the
    ledger does not verify, 2 could not rebuild.
    """
    from ledger.storage import facts as fs
    from ledger.storage.facts_replay import FactsRebuild
    from ledger.storage.store import Store
    from ledger.verify import verify_chain

    from ..verify_sources import db_source

    def failed(exc: LedgerError, code: int) -> NoReturn:
        if as_json:
            click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, **exc.facts}))
        if isinstance(exc, ChainBroken) and not as_json:
            click.echo(f"FAILED: {exc.detail}")
            sys.exit(code)
        fail(exc, code)

    try:
        store = Store.open(obj.settings)
    except LedgerError as exc:
        failed(exc, EXIT_USAGE)
    try:
        source = db_source(obj.settings)
        try:
            with store.append() as conn, click.progressbar(
                length=source.total, label="rebuilding facts", file=sys.stderr, show_pos=True
            ) as bar:
                last = [0]

                def progress(n: int) -> None:
                    bar.update(n - last[0])
                    last[0] = n

                fs.clear_facts(conn)
                rebuilt = FactsRebuild(conn)
                report = verify_chain(
                    source.blocks,
                    node_check=source.node_check,
                    state_check=source.state_check,
                    progress=progress,
                    on_block=rebuilt.on_block,
                )
                written = rebuilt.finish()
        finally:
            source.close()
    except ChainBroken as exc:
        failed(exc, EXIT_INVALID)
    except LedgerError as exc:
        failed(exc, EXIT_USAGE)
    except OperationalError as exc:
        failed(Unavailable(f"database unreachable or busy: {exc.orig}"), EXIT_USAGE)
    except DatabaseError as exc:
        failed(ChainBroken(f"the database cannot read the stored log: {exc.orig}", reason="storage", height=None), EXIT_INVALID)
    finally:
        store.dispose()
    result = {"ok": True, "facts": written, "tree_size": report.tree_size, "entries": report.entries, "root": report.root}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"OK: {written} facts rebuilt from {report.entries} entries (tree size {report.tree_size})")


@facts.command("export")
@click.argument("table", type=click.Choice(KINDS))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD), inclusive.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD), inclusive.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="File to write.")
@click.option("--url", help="Export from a server (GET /v1/analytics/export/TABLE) instead of the local database.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="With --url: your key file, to sign the request (you get the facts you may see).")
@click.pass_obj
def export_facts(
    obj: Ctx, table: str, fmt: str, start: object, end: object, out: Path, url: str | None, key_file: Path | None
) -> None:
    """Write one fact TABLE (shipment, dwell, delivery, contract, payment) as CSV or Parquet.

    From the local database every fact is exported; from a server, the facts your key may
    see. Exit status: 0 written, 2 could not export.
    """
    from ..analytics_files import encode_table

    first = start.date() if hasattr(start, "date") else None
    last = end.date() if hasattr(end, "date") else None
    try:
        if url:
            data = _fetch(url, table, fmt, first, last, key_file)
        else:
            from ledger.storage.analytics import export_rows
            from ledger.storage.store import Store

            store = Store.open(obj.settings)
            try:
                with store.read() as conn:
                    data = encode_table(table, export_rows(conn, table, first=first, last=last, viewer=None), fmt)
            finally:
                store.dispose()
        out.write_bytes(data)
    except OSError as exc:
        fail(ConfigurationError(f"cannot write {out}: {exc.strerror}"), EXIT_USAGE)
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    click.echo(f"{table} facts written to {out} ({fmt}, {len(data)} bytes)")


def _fetch(url: str, table: str, fmt: str, first: date | None, last: date | None, key_file: Path | None) -> bytes:
    """GET the export from a server, signed with ``key_file``. Raises the server's problem."""
    import urllib.error
    import urllib.request

    from ledger.errors import error_for_code
    from ledger.httpsig import sign_request
    from ledger.keys import read_key_file

    from ..analytics_files import query_string

    if key_file is None:
        raise ConfigurationError("--url needs --key: the analytics are for members, so sign the request with your key file")
    key = read_key_file(key_file).signing_key
    target = f"{url.rstrip('/')}/v1/analytics/export/{table}?{query_string(fmt, first, last)}"
    req = urllib.request.Request(target, method="GET")
    for k, v in sign_request("GET", target, key).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            problem = json.loads(body)
            raise error_for_code(str(problem["code"]), str(problem.get("detail", "")))
        except (ValueError, KeyError, TypeError):
            raise Unavailable(f"{target} answered {err.code}") from err
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"cannot reach {url}: {exc}") from exc
