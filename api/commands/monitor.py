"""``filiera monitor URL --state FILE``: follow a ledger's signed checkpoints (TESTPLAN T10).

Every poll fetches ``GET /v1/checkpoint`` and, when the tree grew, ``GET
/v1/proofs/consistency?from=&to=``; :func:`ledger.monitor.check` decides. The state file (the
pinned verifier key and the last verified checkpoint) is replaced atomically after each
verified poll, so a monitor killed at any moment resumes where it was. On a split view or a
rollback the evidence (both signed checkpoints, the proof, the URL, the time) is written to a
new file and the command exits 1; the state is left as it was, so every later run raises the
same alarm until someone looks.

Exit status: 0 every poll verified; 1 a split view, a rollback, or a checkpoint the pinned key
did not sign; 2 could not check (usage, a damaged state file, or with ``--once`` an unreachable
ledger). Without ``--once`` network errors are retried with backoff and reported on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from ledger.client import http_json
from ledger.errors import (
    ConfigurationError,
    IntegrityFailure,
    LedgerError,
    MalformedInput,
    Rollback,
    SplitView,
    Unavailable,
)
from ledger.monitor import ConsistencyProof, MonitorState, ProofSource, check, evidence_of
from ledger.notes import NoteVerifier

from ..cli import EXIT_INVALID, EXIT_USAGE, cli, fail, write_atomic

__all__ = ["monitor"]

# Replaced by the tests, so that retries are checked without waiting.
_sleep = time.sleep
_TIMEOUT_S = 30.0
# The first retry after a failed poll comes soon (a restarting server); each later one waits
# twice as long, up to the poll interval, so a long outage costs the ledger no more requests
# than normal polling.
_FIRST_RETRY_S = 1.0


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _stamp() -> str:
    return _now().isoformat().replace("+00:00", "Z")


def _get(url: str, path: str) -> tuple[int, Any]:
    """GET ``url + path``. Raises Unavailable (unreachable, or a JSON body that does not parse)."""
    try:
        return http_json("GET", url + path, timeout=_TIMEOUT_S)
    except ValueError as exc:
        raise Unavailable(f"{url}{path} answered a body that is not JSON: {exc}") from exc


def _refusal(url: str, path: str, status: int, body: Any) -> Unavailable:
    code = f" ({body['code']}: {body.get('detail', '')})" if isinstance(body, dict) and "code" in body else ""
    return Unavailable(f"{url}{path} answered {status}{code}", status=status)


def _fetch_checkpoint(url: str) -> str:
    status, body = _get(url, "/v1/checkpoint")
    if status != 200 or not isinstance(body, str):
        raise _refusal(url, "/v1/checkpoint", status, body)
    return body


def _prover(url: str) -> ProofSource:
    def prove(old: int, new: int) -> ConsistencyProof:
        # ``to`` is always given: a ledger that grew since its checkpoint was fetched must
        # still prove the size it signed. A replica that lags answers 400, which is retried.
        path = f"/v1/proofs/consistency?from={old}&to={new}"
        status, body = _get(url, path)
        if status != 200:
            raise _refusal(url, path, status, body)
        return ConsistencyProof.from_json(body)

    return prove


def _first_use(url: str, verifier_key: str | None, state_file: Path) -> MonitorState:
    """Pin ``verifier_key``, or (trust on first use) the one the ledger announces."""
    origin: str | None = None
    if verifier_key is None:
        status, info = _get(url, "/v1/ledger")
        if status != 200 or not isinstance(info, dict):
            raise _refusal(url, "/v1/ledger", status, info)
        if not isinstance(info.get("verifier_key"), str) or not isinstance(info.get("origin"), str):
            raise Unavailable(f"{url}/v1/ledger names no verifier_key and origin")
        verifier_key, origin = info["verifier_key"], info["origin"]
        NoteVerifier.parse(verifier_key)
        click.echo(
            f"WARNING: no --verifier-key given: trusting the key {url}/v1/ledger announces, on "
            f"first use: {verifier_key}\n"
            "WARNING: a ledger that is already lying would pass this check. Compare the key "
            "with the one the ledger publishes out of band (its operator, its website, a "
            f"witness); if they differ, delete {state_file} and rerun with --verifier-key.",
            err=True,
        )
    return MonitorState.pin(_fetch_checkpoint(url), verifier_key=verifier_key, origin=origin, source=url)


def _load_state(path: Path) -> MonitorState | None:
    """The state file, or None if there is none yet. Raises ConfigurationError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the state file {path}: {exc}", path=str(path)) from exc
    try:
        return MonitorState.from_json(json.loads(text))
    except (ValueError, LedgerError) as exc:
        why = f"{exc.code}: {exc.detail}" if isinstance(exc, LedgerError) else str(exc)
        raise ConfigurationError(
            f"the state file {path} is not a valid monitor state ({why}); restore it from a "
            "backup, or delete it to pin the ledger afresh",
            path=str(path),
        ) from exc


def _save_state(path: Path, state: MonitorState) -> None:
    write_atomic(path, json.dumps({**state.to_json(), "checked_at": _stamp()}, indent=2, ensure_ascii=False) + "\n")


def _evidence_path(state_file: Path, given: Path | None) -> Path:
    """A file that does not exist yet: evidence is never overwritten."""
    base = given or state_file.with_name(f"{state_file.stem}.evidence-{_now().strftime('%Y%m%dT%H%M%SZ')}.json")
    candidate, n = base, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = base.with_name(f"{base.stem}-{n}{base.suffix}")
    return candidate


def _raise_alarm(
    exc: SplitView | Rollback, *, url: str, state_file: Path, evidence_file: Path | None, as_json: bool
) -> NoReturn:
    evidence = {**(evidence_of(exc) or {}), "url": url, "observed_at": _stamp()}
    text = json.dumps(evidence, indent=2, ensure_ascii=False) + "\n"
    target = _evidence_path(state_file, evidence_file)
    path: Path | None = target
    try:
        write_atomic(target, text)
    except LedgerError as write_error:
        # The evidence matters more than the file: print it rather than lose it.
        click.echo(f"cannot save the evidence ({write_error.detail}); here it is:\n{text}", err=True)
        path = None
    click.echo(f"error: {exc.code}: {exc.detail}", err=True)
    if path is not None:
        click.echo(
            f"ALARM: {url} contradicts the checkpoint this monitor verified before. Both "
            f"checkpoints, signed by the ledger key, are saved in {path}: keep that file and "
            "escalate (docs/monitoring.md). The state file is unchanged.",
            err=True,
        )
    if as_json:
        click.echo(json.dumps({
            "ok": False, "code": exc.code, "detail": exc.detail, "reason": exc.facts.get("reason"),
            "previous_size": exc.facts.get("previous_size"), "current_size": exc.facts.get("current_size"),
            "evidence_file": str(path) if path else None, "url": url, "time": _stamp(),
        }))
    sys.exit(EXIT_INVALID)


@cli.command()
@click.argument("url")
@click.option(
    "--state", "state_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="State file: the pinned verifier key and the last verified checkpoint (created on first run).",
)
@click.option(
    "--verifier-key",
    help="The ledger's note verifier key (<origin>+<hex>+<base64>), obtained out of band. "
    "Without it the first run trusts what GET /v1/ledger announces.",
)
@click.option("--interval", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron): 0 ok, 1 alarm, 2 could not check.")
@click.option("--count", type=click.IntRange(min=1), help="Exit 0 after N verified polls (network errors are retried).")
@click.option(
    "--evidence", "evidence_file", type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the evidence of a split view or rollback (default: beside the state "
    "file, named after the time; an existing file is never overwritten).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per poll on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Log one line per poll on stderr.")
def monitor(
    url: str,
    state_file: Path,
    verifier_key: str | None,
    interval: float,
    once: bool,
    count: int | None,
    evidence_file: Path | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Follow URL's signed checkpoints; exit 1 with evidence on a split view or rollback.

    Each poll checks the ledger's latest checkpoint against the last one verified: same size
    and root, or a larger tree with a consistency proof (RFC 9162). Exit status: 0 verified,
    1 split view, rollback or a checkpoint the pinned key did not sign, 2 could not check.
    """
    url = url.rstrip("/")
    if once and count is not None:
        fail(ConfigurationError("give --once or --count, not both (--once is one poll without retries)"))
    try:
        pinned = NoteVerifier.parse(verifier_key) if verifier_key else None
        state = _load_state(state_file)
    except LedgerError as exc:
        fail(exc)
    if state is not None and pinned is not None and pinned != state.verifier:
        fail(ConfigurationError(
            f"--verifier-key differs from the key pinned in {state_file} ({state.verifier_key}); "
            "a ledger does not change its key: find out why before you delete the state file",
        ))

    def report(line: str) -> None:
        click.echo(f"{_stamp()} {line}", err=True)

    verified = failures = 0
    try:
        while True:
            try:
                if state is None:
                    state = _first_use(url, verifier_key, state_file)
                    outcome, previous_size = "pinned", None
                else:
                    step = check(state, _fetch_checkpoint(url), _prover(url), source=url)
                    state, outcome, previous_size = step.state, step.outcome.value, step.previous.tree_size
                _save_state(state_file, state)
            except (SplitView, Rollback) as exc:
                _raise_alarm(exc, url=url, state_file=state_file, evidence_file=evidence_file, as_json=as_json)
            except IntegrityFailure as exc:
                # Not signed by the pinned key, or for another log: no evidence against the
                # ledger (anyone can make such a note), but this URL is not serving it.
                if as_json:
                    click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, "url": url, "time": _stamp()}))
                fail(exc, EXIT_INVALID)
            except (Unavailable, MalformedInput) as exc:
                failures += 1
                if once:
                    if as_json:
                        click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, "url": url, "time": _stamp()}))
                    fail(exc, EXIT_USAGE)
                delay = min(_FIRST_RETRY_S * 2 ** min(failures - 1, 30), max(interval, _FIRST_RETRY_S))
                if as_json:
                    click.echo(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, "url": url, "time": _stamp(), "retry_in": delay}))
                report(f"could not check {url} ({exc.code}: {exc.detail}); retry {failures} in {delay:g} s")
                _sleep(delay)
                continue
            except LedgerError as exc:
                fail(exc)
            if failures:
                report(f"{url} answers again after {failures} failed attempt(s)")
            verified, failures = verified + 1, 0
            size, root = state.current.tree_size, state.current.root.hex()
            if outcome == "pinned":
                report(f"pinned {state.origin} at size {size}, root {root}, key {state.verifier_key}; state in {state_file}")
            elif verbose:
                grown = f" from {previous_size}" if outcome == "advanced" else ""
                report(f"{url}: size {size}, root {root[:16]}... ({outcome}{grown})")
            if as_json:
                click.echo(json.dumps({
                    "ok": True, "outcome": outcome, "url": url, "origin": state.origin,
                    "tree_size": size, "root": root, "previous_size": previous_size, "time": _stamp(),
                }))
            if once or (count is not None and verified >= count):
                break
            _sleep(interval)
    except KeyboardInterrupt:
        report("stopped")
        sys.exit(130)
    if not as_json:
        assert state is not None
        click.echo(
            f"OK: {state.origin} at size {state.current.tree_size}, root {state.current.root.hex()}: "
            f"{verified} checkpoint(s) verified, no split view or rollback"
        )
