"""``filiera epcis``: GS1 EPCIS 2.0 documents out of and into a ledger (docs/epcis.md).

``export`` fetches ``GET /v1/lots/{lot}/epcis`` as a member and checks it against GS1's JSON
Schema; ``import`` checks a document, reads its GS1 identifiers through the import map
(``--map``) and the members' ``gln`` attributes, maps each event (``ledger.epcis.map_document``), signs
the entries with the key of the participant each event belongs to, submits them in batches
and prints one line per event: its entry, or why it was refused. Nothing is submitted for a
refused event; the others are.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from ledger import jcs
from ledger.client import http_json
from ledger.entries import sign_payload
from ledger.epcis import (
    ImportMap,
    LedgerHandoff,
    Mapped,
    Outcome,
    Refused,
    events_of,
    handoffs_sent,
    map_document,
    merge_members,
    parse_map,
    validate_document,
)
from ledger.errors import ConfigurationError, LedgerError, Unavailable
from ledger.keys import SigningKey, read_key_file

from ..cli import EXIT_INVALID, EXIT_USAGE, cli, fail, say_rate_limited, write_atomic

__all__ = ["epcis"]

# Per POST /v1/entries/batch: well under the server's defaults of 1,000 entries and 1 MiB.
_BATCH_ENTRIES = 500
_BATCH_BYTES = 512 * 1024
_RATE_LIMIT_WAIT_S = 300.0  # per batch: how long a 429 is waited out before the import stops


@cli.group()
def epcis() -> None:
    """GS1 EPCIS 2.0: export a lot's history, import events as signed entries."""


def _keys(files: Sequence[Path]) -> dict[str, SigningKey]:
    keys: dict[str, SigningKey] = {}
    for path in files:
        kf = read_key_file(path)
        if kf.participant in keys:
            raise ConfigurationError(f"two key files for {kf.participant}; give one each", path=str(path))
        keys[kf.participant] = kf.signing_key
    return keys


def _get(url: str, key: SigningKey | None = None) -> tuple[int, Any]:
    try:
        return http_json("GET", url, key=key)
    except Unavailable as exc:
        click.echo(f"error: {exc.code}: {exc.detail}", err=True)
        sys.exit(EXIT_USAGE)


def _problem(status: int, body: Any) -> tuple[str, str]:
    if isinstance(body, dict) and "code" in body:
        return str(body["code"]), str(body.get("detail", ""))
    return "http_error", f"the server answered {status}"


class _Finder:
    """The handoff that sends a lot to a recipient, read from the ledger's EPCIS export of the
    lot: the open one, else the last received (importing its receipt again changes nothing)."""

    def __init__(self, url: str, keys: dict[str, SigningKey]) -> None:
        self.url, self.keys = url, keys
        self.seen: dict[tuple[str, str], LedgerHandoff | None] = {}

    def __call__(self, lot: str, recipient: str) -> LedgerHandoff | None:
        if (lot, recipient) not in self.seen:
            status, doc = _get(f"{self.url}/v1/lots/{lot}/epcis", self.keys.get(recipient))
            found: list[LedgerHandoff] = []
            if status == 200 and isinstance(doc, dict):
                found = [h for h in handoffs_sent(doc, events_of(doc)) if lot in h.lots and h.to == recipient]
            open_ = [h for h in found if not h.received]
            self.seen[(lot, recipient)] = (open_ or found or [None])[-1]
        return self.seen[(lot, recipient)]


def _members(url: str, key: SigningKey) -> list[tuple[str, dict[str, str]]]:
    """Every member's id and attributes (``GET /v1/participants``, a page at a time)."""
    found: list[tuple[str, dict[str, str]]] = []
    after: str | None = None
    while True:
        query = f"?after={after}" if after else ""
        status, body = _get(f"{url}/v1/participants{query}", key)
        if status != 200 or not isinstance(body, dict):
            code, detail = _problem(status, body)
            click.echo(f"error: {code}: cannot read the ledger's members: {detail}", err=True)
            sys.exit(EXIT_USAGE)
        found += [(str(p["id"]), dict(p.get("attributes") or {})) for p in body["participants"]]
        after = body.get("next")
        if not after:
            return found


def _line(o: Outcome, status: str, **more: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"index": o.index, "eventID": o.event_id, "event": o.event, "status": status}
    if isinstance(o, Mapped):
        if o.parts > 1:
            line["part"], line["parts"] = o.part, o.parts
        line["entry"] = o.entry_id
        line["type"] = o.payload["type"]
        line["author"] = o.author
        if o.ignored:
            line["ignored"] = list(o.ignored)
    else:
        line["code"], line["detail"] = o.code, o.detail
    line.update(more)
    return line


def _text(line: dict[str, Any]) -> str:
    head = f"eventList[{line['index']}] {line['event']}"
    if "part" in line:
        head += f" (part {line['part']} of {line['parts']})"
    if line["status"] == "refused":
        by = "by the ledger" if "entry" in line else "not mapped"
        return f"{head}: refused ({by}): {line['code']}: {line['detail']}"
    what = {"sealed": f"sealed at index {line.get('ledger_index')}", "present": "already in the ledger", "mapped": "not submitted (--dry-run)"}[line["status"]]
    return f"{head}: {line['type']} entry {line['entry']} by {line['author']}, {what}"


def _batches(envelopes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for env in envelopes:
        n = len(json.dumps(env, ensure_ascii=False).encode("utf-8"))
        if batches[-1] and (len(batches[-1]) == _BATCH_ENTRIES or size + n > _BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(env)
        size += n
    return batches


def _submit(url: str, envelopes: list[dict[str, Any]], key: SigningKey) -> list[dict[str, Any]]:
    """Post the envelopes in order, in batches, each request signed by ``key`` (RFC 9421: it
    counts against that member's rate limit; a 429 is waited out); one result per envelope.
    Exits 2 if the server cannot take a batch (the ones before it stay in)."""
    results: list[dict[str, Any]] = []
    with click.progressbar(length=len(envelopes), label="submitting", file=sys.stderr, show_pos=True) as bar:
        for chunk in _batches(envelopes):
            try:
                status, body = http_json(
                    "POST", f"{url}/v1/entries/batch", {"entries": chunk}, key=key, rate_limit_wait=_RATE_LIMIT_WAIT_S, on_wait=functools.partial(say_rate_limited, after_bar=True)
                )
            except Unavailable as exc:
                click.echo(f"\nerror: {exc.code}: {exc.detail}", err=True)
                sys.exit(EXIT_USAGE)
            if status != 200 or not isinstance(body, dict):
                code, detail = _problem(status, body)
                click.echo(f"\nerror: {code}: {detail}", err=True)
                sys.exit(EXIT_USAGE)
            results.extend(body["results"])
            bar.update(len(chunk))
    return results


@epcis.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--key", "key_files", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Key file that signs the entries; repeat it to sign events of several participants (each event is signed by its own party).")
@click.option("--url", required=True, help="Ledger base URL, e.g. http://127.0.0.1:8000")
@click.option("--map", "map_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Import map (JSON): which member each GS1 party or location identifier is (parties) and which lot each EPC, class or pattern is (lots). Members' gln attributes in the ledger are read too.")
@click.option("--dry-run", is_flag=True, help="Check and map the document and print the entries, without submitting them.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout.")
def import_(file: str, key_files: tuple[Path, ...], url: str, map_file: Path | None, dry_run: bool, as_json: bool) -> None:
    """Import an EPCIS 2.0 document (FILE, or - for stdin) as signed entries.

    Commissioning, shipping, receiving and transformation events become origin, handoff,
    receipt and transform entries; every other event is refused with a reason. GS1
    identifiers name members and lots through --map and the members' gln attributes; an event
    that names no party is signed by the member operating its place. One line per
    event on stdout, a summary on stderr. Exit status: 0 every event imported (or already
    there), 1 the document or an event was refused, 2 could not import (file, key, server).
    """
    url = url.rstrip("/")
    try:
        keys = _keys(key_files)
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        map_raw = map_file.read_bytes() if map_file is not None else None
    except LedgerError as exc:
        fail(exc)
    except OSError as exc:
        click.echo(f"error: unreadable_file: cannot read {file}: {exc.strerror}", err=True)
        sys.exit(EXIT_USAGE)
    status, info = _get(f"{url}/v1/ledger")
    if status != 200 or not isinstance(info, dict):
        code, detail = _problem(status, info)
        click.echo(f"error: {code}: {detail}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        import_map = parse_map(jcs.loads(map_raw)) if map_raw is not None else ImportMap()
    except LedgerError as exc:
        fail(exc, EXIT_INVALID)
    try:
        import_map = merge_members(import_map, _members(url, next(iter(keys.values()))))
        doc = jcs.loads(raw)
        outcomes = map_document(doc, origin=str(info["origin"]), signers=list(keys), find_handoff=_Finder(url, keys), import_map=import_map)
    except LedgerError as exc:
        fail(exc, EXIT_INVALID)
    mapped = [o for o in outcomes if isinstance(o, Mapped)]
    # One line per outcome: per event, or per part of a shipping event received in parts.
    lines: dict[int, dict[str, Any]] = {i: _line(o, "refused") for i, o in enumerate(outcomes) if isinstance(o, Refused)}
    numbered = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, Mapped)]
    if dry_run:
        lines.update((i, _line(o, "mapped")) for i, o in numbered)
    elif mapped:
        envelopes = [sign_payload(o.payload, [(o.author, keys[o.author])]) for o in mapped]
        for (i, o), result in zip(numbered, _submit(url, envelopes, next(iter(keys.values())))):
            lines[i] = _result_line(o, result)
    _report([lines[i] for i in range(len(outcomes))], as_json)


def _result_line(o: Mapped, result: dict[str, Any]) -> dict[str, Any]:
    status = result.get("status")
    if status == 201:
        return _line(o, "sealed", ledger_index=result.get("index"))
    if status == 200:
        return _line(o, "present", ledger_index=result.get("index"))
    code, detail = _problem(int(status or 0), result.get("problem"))
    return _line(o, "refused", code=code, detail=detail)


def _report(lines: list[dict[str, Any]], as_json: bool) -> NoReturn:
    for line in lines:
        click.echo(json.dumps(line, ensure_ascii=False) if as_json else _text(line))
    counts = {s: sum(1 for ln in lines if ln["status"] == s) for s in ("sealed", "present", "mapped", "refused")}
    parts = [f"{counts['sealed']} sealed", f"{counts['present']} already present"]
    if counts["mapped"]:
        parts.append(f"{counts['mapped']} mapped (dry run)")
    parts.append(f"{counts['refused']} refused")
    events = len({ln["index"] for ln in lines})
    click.echo(f"{events} events: " + ", ".join(parts), err=True)
    sys.exit(EXIT_INVALID if counts["refused"] else 0)


@epcis.command("export")
@click.argument("lot")
@click.option("--url", required=True, help="Ledger base URL, e.g. http://127.0.0.1:8000")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Your key file: signs the request (RFC 9421); you see the entries you are party to.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the document here instead of stdout.")
def export(lot: str, url: str, key_file: Path, out: Path | None) -> None:
    """Fetch LOT's history as an EPCIS 2.0 document and check it against GS1's schema.

    Exit status: 0 written, 1 refused by the server or not a valid EPCIS document, 2 could not
    fetch (key, server).
    """
    try:
        key = read_key_file(key_file).signing_key
    except LedgerError as exc:
        fail(exc)
    status, doc = _get(f"{url.rstrip('/')}/v1/lots/{lot}/epcis", key)
    if status != 200:
        code, detail = _problem(status, doc)
        click.echo(f"error: {code}: {detail}", err=True)
        sys.exit(EXIT_INVALID if 400 <= status < 500 else EXIT_USAGE)
    try:
        validate_document(doc)
    except LedgerError as exc:
        fail(exc, EXIT_INVALID)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if out is not None:
        try:
            write_atomic(out, text)
        except LedgerError as exc:
            fail(exc)
    if out is None:
        click.echo(text, nl=False)
    else:
        events = len(events_of(doc))
        click.echo(f"{events} events of lot {lot} written to {out}", err=True)
