"""Supplier tools under the server's rate limits (docs/operations.md#rate-limits): a real
``filiera serve`` whose per-address limit is tight. ``filiera submit`` waits out a 429 as its
Retry-After says and posts again; with ``--key`` (and ``LedgerClient`` given a key) the requests
are signed, so they count against the member's limit instead of the address's. Without the
wait, the same posts are refused ``rate_limited``: the control that shows the limit bites."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.client import LedgerClient, http_json
from ledger.entries import parse_envelope
from ledger.errors import RateLimited
from ledger.keys import read_key_file, write_key_file

from ..factories import ORIGIN, Member, register
from .conftest import Server, on, run, start_server, stop

# Three unsigned requests per address in a window of two seconds; members may post freely.
LIMITS = {"FILIERA_RATE_LIMIT_IP": "3 per 2 seconds", "FILIERA_RATE_LIMIT_MEMBER": "1000/minute"}
POSTS = 7


@dataclass
class Live:
    server: Server
    data: Path
    admin: Member


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("ratelimited")
    data, url = work / "data", f"sqlite:///{work / 'filiera.db'}"
    result = run([*on(data, url), "init", "--origin", ORIGIN, "--admin", "admin"])
    assert result.exit_code == 0, result.output
    server = start_server(data, url, work, env=LIMITS)
    try:
        yield Live(server, data, Member("admin", read_key_file(data / "admin.key").signing_key))
    finally:
        stop(server.process)


def _envelopes(live: Live, tmp_path: Path, prefix: str) -> list[Path]:
    """``POSTS`` registrations by the admin, each in its own file."""
    files = []
    for i in range(POSTS):
        f = tmp_path / f"{prefix}-{i}.json"
        f.write_text(json.dumps(register(live.admin, Member(f"{prefix}-{i}"), ["producer"])), encoding="utf-8")
        files.append(f)
    return files


def _lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]


def test_submit_waits_out_the_address_limit(live: Live, tmp_path: Path) -> None:
    files = _envelopes(live, tmp_path, "waits")
    result = run(["submit", "--url", live.server.url, *map(str, files)])
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in _lines(result.stdout)] == [201] * POSTS
    # Seven posts at three per two seconds: the server said "wait" at least twice.
    assert result.stderr.count("rate limited by the server: waiting") >= 2
    assert f"{POSTS} sealed" in result.stderr


def test_submit_without_waiting_is_refused_rate_limited(live: Live, tmp_path: Path) -> None:
    files = _envelopes(live, tmp_path, "nowait")
    result = run(["submit", "--url", live.server.url, "--rate-limit-wait", "0", *map(str, files)])
    assert result.exit_code == 1, result.output
    lines = _lines(result.stdout)
    refused = [r for r in lines if r["status"] == 429]
    assert refused and all(r["code"] == "rate_limited" for r in refused)
    assert "rate limited by the server" not in result.stderr
    # What was refused was not written.
    for line in refused:
        entry_id = parse_envelope(json.loads(Path(str(line["file"])).read_text(encoding="utf-8")), origin=ORIGIN).id
        # A signed read: it counts against the admin, not the address the posts exhausted.
        assert http_json("GET", f"{live.server.url}/v1/entries/{entry_id}", key=live.admin.key)[0] == 404


def test_submit_with_a_key_counts_against_the_member(live: Live, tmp_path: Path) -> None:
    files = _envelopes(live, tmp_path, "signed")
    result = run(["submit", "--url", live.server.url, "--key", str(live.data / "admin.key"), "--rate-limit-wait", "0", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in _lines(result.stdout)] == [201] * POSTS
    assert "rate limited" not in result.stderr


def test_submit_with_an_unreadable_key_is_a_usage_error(live: Live, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key", encoding="utf-8")
    bad.chmod(0o600)
    result = run(["submit", "--url", live.server.url, "--key", str(bad), str(_envelopes(live, tmp_path, "badkey")[0])])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_client_with_a_key_signs_its_posts(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "admin-copy.key"
    kf = read_key_file(live.data / "admin.key")
    write_key_file(path, participant=kf.participant, signing_key=kf.signing_key)
    signed = LedgerClient(live.server.url, key=read_key_file(path), rate_limit_wait=0)
    receipts = [signed.submit(register(live.admin, Member(f"client-{i}"), ["producer"])) for i in range(POSTS)]
    assert len({r["id"] for r in receipts}) == POSTS
    batch = signed.submit_batch([register(live.admin, Member(f"client-b{i}"), ["producer"]) for i in range(3)])
    assert [r["status"] for r in batch] == [201] * 3


def test_client_without_a_key_hits_the_address_limit_unless_it_waits(live: Live) -> None:
    anonymous = LedgerClient(live.server.url, rate_limit_wait=0)
    with pytest.raises(RateLimited):
        for i in range(POSTS):
            anonymous.submit(register(live.admin, Member(f"anon-{i}"), ["producer"]))
    patient = LedgerClient(live.server.url)  # waits up to 60 s by default
    receipts = [patient.submit(register(live.admin, Member(f"patient-{i}"), ["producer"])) for i in range(POSTS)]
    assert len({r["id"] for r in receipts}) == POSTS
