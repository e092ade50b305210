"""``filiera webhooks add|list|delete``: a member's webhook subscriptions on a server
(docs/webhooks.md), through the API as signed requests (RFC 9421) with the member's key.

``add`` prints the subscription with its signing secret, which the server shows only once.
Exit status: 0 done, 1 refused by the server, 2 could not ask (unreachable, bad key file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ledger.client import http_json
from ledger.errors import LedgerError
from ledger.facts import KINDS
from ledger.keys import read_key_file

from ..cli import EXIT_INVALID, EXIT_USAGE, cli, fail

_URL = click.option("--url", required=True, help="Ledger base URL, e.g. https://ledger.example.com")
_KEY = click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Your key file: signs the requests.")


def _call(method: str, url: str, path: str, key_file: Path, body: Any = None) -> Any:
    try:
        key = read_key_file(key_file).signing_key
        status, answer = http_json(method, url.rstrip("/") + path, body=body, key=key)
    except LedgerError as exc:
        fail(exc, EXIT_USAGE)
    if status >= 400:
        code = answer.get("code", "error") if isinstance(answer, dict) else "error"
        detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
        click.echo(f"error: {code}: {detail}", err=True)
        sys.exit(EXIT_INVALID)
    return answer


@cli.group()
def webhooks() -> None:
    """Your webhook subscriptions on a ledger server: add, list, delete."""


@webhooks.command()
@click.argument("endpoint")
@click.option("--type", "types", multiple=True, required=True, type=click.Choice(KINDS), help="A kind of fact to receive (repeat for several).")
@click.option("--description", help="A note for yourself (at most 200 characters).")
@click.option("--after", help="Facts cursor to start after (0: every fact from the start); default: from now on.")
@_URL
@_KEY
def add(endpoint: str, types: tuple[str, ...], description: str | None, after: str | None, url: str, key_file: Path) -> None:
    """Subscribe ENDPOINT (an http(s) URL) to facts; prints the subscription and its secret."""
    body: dict[str, Any] = {"url": endpoint, "types": list(types)}
    if description is not None:
        body["description"] = description
    if after is not None:
        body["after"] = after
    click.echo(json.dumps(_call("POST", url, "/v1/webhooks", key_file, body), indent=2))


@webhooks.command(name="list")
@_URL
@_KEY
def list_(url: str, key_file: Path) -> None:
    """Your subscriptions and their delivery state (never their secrets)."""
    click.echo(json.dumps(_call("GET", url, "/v1/webhooks", key_file), indent=2))


@webhooks.command()
@click.argument("webhook_id")
@_URL
@_KEY
def delete(webhook_id: str, url: str, key_file: Path) -> None:
    """Delete subscription WEBHOOK_ID and what is queued for it."""
    _call("DELETE", url, f"/v1/webhooks/{webhook_id}", key_file)
    click.echo(f"deleted {webhook_id}")
