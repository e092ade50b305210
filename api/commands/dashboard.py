"""``filiera dashboard-link``: a short-lived link to your dashboard on a ledger server
(docs/analytics.md, "The dashboard"), signed with your key file.

The link carries a token your key signs (ledger/dashboard_token.py) for this ledger's origin,
which the command reads from ``GET /v1/ledger``. Anyone holding the link sees your dashboard
until it expires: send it only to yourself. Exit status: 0 printed, 2 could not make it.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ledger.client import http_json
from ledger.dashboard_token import MAX_LIFETIME, make_token
from ledger.errors import ConfigurationError, LedgerError
from ledger.keys import read_key_file

from ..cli import EXIT_USAGE, cli, fail


@cli.command(name="dashboard-link")
@click.option("--url", required=True, help="Ledger base URL, e.g. https://ledger.example.com")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Your key file: signs the link.")
@click.option("--minutes", default=15, show_default=True, type=click.IntRange(1, MAX_LIFETIME // 60), help="How long the link stays valid.")
def dashboard_link(url: str, key_file: Path, minutes: int) -> None:
    """Print a link that opens your dashboard in a browser for the next MINUTES."""
    base = url.rstrip("/")
    try:
        key = read_key_file(key_file).signing_key
        status, info = http_json("GET", f"{base}/v1/ledger")
        if status != 200 or not isinstance(info, dict) or not isinstance(info.get("origin"), str):
            raise ConfigurationError(f"{base} did not answer GET /v1/ledger with a ledger's origin (status {status})")
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    token = make_token(key, ledger=info["origin"], expires=int(time.time()) + minutes * 60)
    click.echo(f"{base}/dashboard?token={token}")
