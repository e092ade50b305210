"""`filiera export` (docs/auditing.md "Exporting the ledger"): the audit bundle written from the
local database and from `filiera serve` with an auditor's key, on SQLite and PostgreSQL.

One demo ledger (all 14 entry types, several blocks) is served for the whole module and never
changes, so two exports of the same range are equal apart from their `created` time. Resuming
is tested by cutting a fresh export at every kind of place a transfer can stop, and by a server
that drops the connection half way.
"""

from __future__ import annotations

import http.server
import json
import os
import pty
import re
import stat
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.bundle import BundleBlock, BundleCheckpoint, BundleConsistency, BundleEnd, BundleEntry, BundleHeader, Record, read_records
from ledger.merkle import leaf_hash, verify_consistency
from ledger.notes import Checkpoint, NoteVerifier, verify_checkpoint

from .conftest import FILIERA, REPO, ModuleDbs, Server, clean_env, error_code, free_port, on, run, start_server, stop
from .test_cli import _read_pty

ORIGIN = "demo.filiera.example"
AUDITING_DOC = REPO / "docs" / "auditing.md"


@dataclass
class Demo:
    data: Path
    url: str
    server: Server
    work: Path

    @property
    def auditor(self) -> Path:
        return self.data / "revisori-associati.key"

    @property
    def producer(self) -> Path:
        return self.data / "masseria-ulivi.key"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.server.url + path, timeout=30) as resp:
            body: bytes = resp.read()
            return body


@pytest.fixture(scope="module")
def demo(module_dbs: ModuleDbs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`filiera demo --lots 4` (an olive-oil consortium, an auditor among its members), served."""
    work = tmp_path_factory.mktemp("export")
    data, url = work / "data", module_dbs.new("export")
    made = run([*on(data, url), "demo", "--lots", "4"])
    assert made.exit_code == 0, made.output
    server = start_server(data, url, work)
    try:
        yield Demo(data, url, server, work)
    finally:
        stop(server.process)


def _export(demo: Demo, out: Path, *args: str, remote: bool, key: Path | None = None) -> Any:
    if remote:
        return run(["export", "--url", demo.server.url, "--key", str(key or demo.auditor), "--out", str(out), *args])
    return run([*on(demo.data, demo.url), "export", "--out", str(out), *args])


def _records(path: Path) -> list[Record]:
    with path.open("rb") as f:
        return list(read_records(f))


def _without_created(path: Path) -> list[bytes]:
    """The file's lines, the header's `created` time blanked: all that may differ."""
    lines = path.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["created"] = ""
    return [json.dumps(header).encode(), *lines[1:]]


def _fresh(demo: Demo, tmp_path: Path, *args: str, remote: bool, name: str = "fresh.ndjson") -> Path:
    out = tmp_path / name
    result = _export(demo, out, *args, remote=remote)
    assert result.exit_code == 0, result.output
    return out


def _audits_clean(demo: Demo, path: Path) -> None:
    """The offline audit (`filiera audit`) accepts the file against the ledger's verifier key."""
    vkey = json.loads(demo.get("/v1/ledger"))["verifier_key"]
    result = run(["audit", str(path), "--verifier-key", vkey, "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output


def _nothing_written(out: Path) -> None:
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_local_and_http_exports_are_equal_apart_from_created(demo: Demo, tmp_path: Path) -> None:
    local = tmp_path / "local.ndjson"
    result = _export(demo, local, "--json", remote=False)
    assert result.exit_code == 0, result.output
    remote = _fresh(demo, tmp_path, remote=True, name="remote.ndjson")
    assert _without_created(local) == _without_created(remote)
    assert local.read_bytes() != remote.read_bytes()  # only `created` differs, and it does
    _audits_clean(demo, remote)

    # The bundle is the ledger: every entry once and in order under its block, leaf hashes
    # recomputed, and the final checkpoint the one the server publishes, signed by its key.
    info = json.loads(demo.get("/v1/ledger"))
    records = _records(local)
    header, end, checkpoint = records[0], records[-1], records[-2]
    assert isinstance(header, BundleHeader) and (header.origin, header.genesis, header.from_index) == (ORIGIN, info["genesis"], 0)
    entries = [r for r in records if isinstance(r, BundleEntry)]
    blocks = [r for r in records if isinstance(r, BundleBlock)]
    assert [e.index for e in entries] == list(range(info["tree_size"]))
    assert all(e.leaf_hash == leaf_hash(e.leaf_data).hex() for e in entries)
    assert [b.header["height"] for b in blocks] == list(range(info["height"] + 1))
    assert isinstance(checkpoint, BundleCheckpoint) and checkpoint.checkpoint.encode() == demo.get("/v1/checkpoint")
    verify_checkpoint(checkpoint.checkpoint, verifier=NoteVerifier.parse(info["verifier_key"]), origin=ORIGIN)
    assert isinstance(end, BundleEnd) and (end.blocks, end.entries, end.tree_size) == (len(blocks), len(entries), info["tree_size"])

    summary = json.loads(result.stdout)
    assert summary == {
        "ok": True, "file": str(local), "origin": ORIGIN, "from_index": 0, "tree_size": info["tree_size"],
        "blocks": len(blocks), "entries": len(entries), "bytes": local.stat().st_size, "since": None,
        "resumed_at": None, "already_complete": False,
    }
    # Every entry, commercial terms included: readable by its owner only, like a key file.
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert not local.with_name(local.name + ".partial").exists()


def test_a_member_who_is_not_an_auditor_is_refused(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "x.ndjson"
    result = _export(demo, out, "--json", remote=True, key=demo.producer)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["code"] == "auditors_only"
    assert error_code(result.stderr) == "auditors_only"
    _nothing_written(out)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "http"])
@pytest.mark.parametrize(
    "args",
    [["--from", "-1"], ["--to", "-5"], ["--from", "100000"], ["--to", "100000"], ["--from", "9", "--to", "3"], ["--from", "2", "--to", "3"]],
    ids=["negative-from", "negative-to", "from-past-head", "to-past-head", "from-after-to", "no-whole-block"],
)
def test_bad_ranges_exit_2_and_write_nothing(demo: Demo, tmp_path: Path, args: list[str], remote: bool) -> None:
    out = tmp_path / "bad.ndjson"
    result = _export(demo, out, *args, remote=remote)
    assert result.exit_code == 2, result.output
    assert error_code(result.stderr) == "invalid_export_range"
    _nothing_written(out)


def test_usage_errors_exit_2(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "u.ndjson"
    not_a_number = _export(demo, out, "--from", "abc", remote=False)
    assert not_a_number.exit_code == 2 and "--from" in not_a_number.stderr
    for args, code in (
        (["export", "--out", str(out), "--url", demo.server.url], "configuration_error"),
        (["export", "--out", str(out), "--key", str(demo.auditor)], "configuration_error"),
        ([*on(demo.data, demo.url), "export", "--out", str(out), "--resume", "--force"], "configuration_error"),
        (["export", "--out", str(out), "--url", f"http://127.0.0.1:{free_port()}", "--key", str(demo.auditor)], "unavailable"),
    ):
        result = run(args)
        assert result.exit_code == 2, (args, result.output)
        assert error_code(result.stderr) == code
    _nothing_written(out)


def _cut_points(path: Path) -> dict[str, int]:
    """Byte offsets at which a transfer of ``path`` might have stopped."""
    lines = path.read_bytes().splitlines(keepends=True)
    starts = [sum(len(ln) for ln in lines[:i]) for i in range(len(lines) + 1)]
    kinds = [json.loads(ln)["type"] for ln in lines]
    second_block = [i for i, k in enumerate(kinds) if k == "block"][1]
    mid_entry = [i for i, k in enumerate(kinds) if k == "entry"][len(kinds) // 2 - 3]
    return {
        "mid-header": 25,
        "after-header": starts[1],
        "mid-first-block-line": starts[1] + 40,
        "after-a-block": starts[second_block],
        "mid-entry-line": starts[mid_entry] + len(lines[mid_entry]) // 2,
        "before-checkpoint": starts[-3],
        "before-end": starts[-2],
        "mid-end": starts[-2] + 10,
    }


@pytest.mark.parametrize("remote", [False, True], ids=["local", "http"])
@pytest.mark.parametrize("cut", ["mid-header", "after-header", "mid-first-block-line", "after-a-block", "mid-entry-line", "before-checkpoint", "before-end", "mid-end"])
def test_resume_completes_a_cut_export_equal_to_a_fresh_one(demo: Demo, tmp_path: Path, cut: str, remote: bool) -> None:
    fresh = _fresh(demo, tmp_path, remote=remote)
    out = tmp_path / "resumed.ndjson"
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(fresh.read_bytes()[: _cut_points(fresh)[cut]])

    # Without --resume a partial export is never silently overwritten.
    refused = _export(demo, out, remote=remote)
    assert (refused.exit_code, error_code(refused.stderr)) == (2, "configuration_error")

    result = _export(demo, out, "--resume", "--json", remote=remote)
    assert result.exit_code == 0, result.output
    assert _without_created(out) == _without_created(fresh)
    assert not partial.exists()
    _audits_clean(demo, out)
    summary = json.loads(result.stdout)
    end = _records(fresh)[-1]
    assert isinstance(end, BundleEnd)
    assert (summary["entries"], summary["blocks"], summary["tree_size"]) == (end.entries, end.blocks, end.tree_size)
    if cut != "mid-header":  # with no complete header line there was nothing to keep
        assert summary["resumed_at"] is not None

    # Once complete, --resume has nothing left to do.
    again = _export(demo, out, "--resume", "--json", remote=remote)
    assert again.exit_code == 0 and json.loads(again.stdout)["already_complete"] is True


class _CutServer(http.server.BaseHTTPRequestHandler):
    """Answers any GET with the first ``cut`` bytes of ``body``, then hangs up."""

    body = b""
    cut = 0
    headers_out: dict[str, str] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        for k, v in self.headers_out.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(self.body[: self.cut])

    def log_message(self, *args: Any) -> None:
        pass


def test_a_dropped_connection_leaves_a_partial_that_resume_completes(demo: Demo, tmp_path: Path) -> None:
    fresh = _fresh(demo, tmp_path, remote=True)
    body = fresh.read_bytes()
    handler = type("Cut", (_CutServer,), {
        "body": body, "cut": len(body) * 2 // 3,
        "headers_out": {"Content-Type": "application/x-ndjson", "Filiera-Export-From": "0",
                        "Filiera-Export-To": str(json.loads(body.splitlines()[-1])["tree_size"])},
    })
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "dropped.ndjson"
        cut = run(["export", "--url", f"http://127.0.0.1:{server.server_address[1]}", "--key", str(demo.auditor), "--out", str(out)])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert cut.exit_code == 2
    assert error_code(cut.stderr) == "unavailable" and "--resume" in cut.stderr
    partial = out.with_name(out.name + ".partial")
    assert not out.exists()
    # What arrived is kept, up to the last whole line: never half a record.
    kept = partial.read_bytes()
    assert body.startswith(kept) and kept.endswith(b"\n") and len(body) * 2 // 3 - len(kept) < 4096

    result = _export(demo, out, "--resume", remote=True)
    assert result.exit_code == 0, result.output
    assert _without_created(out) == _without_created(fresh)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "http"])
def test_a_partial_export_since_a_trusted_checkpoint(demo: Demo, tmp_path: Path, remote: bool) -> None:
    whole = _records(_fresh(demo, tmp_path, remote=False, name="whole.ndjson"))
    blocks = [r for r in whole if isinstance(r, BundleBlock)]
    trusted_block = blocks[1]
    assert trusted_block.checkpoint is not None
    trusted_file = tmp_path / "trusted-checkpoint.txt"
    trusted_file.write_text(trusted_block.checkpoint, encoding="utf-8")
    trusted = Checkpoint.parse_body(trusted_block.checkpoint.partition("\n\n")[0] + "\n")
    size = trusted.tree_size

    fresh = _fresh(demo, tmp_path, "--from", str(size), "--since-checkpoint", str(trusted_file), remote=remote)
    records = _records(fresh)
    header, consistency, first_block, final = records[0], records[1], records[2], records[-2]
    assert isinstance(header, BundleHeader) and header.from_index == size
    assert isinstance(first_block, BundleBlock) and first_block.header["height"] == 2
    assert isinstance(consistency, BundleConsistency) and isinstance(final, BundleCheckpoint)
    head = Checkpoint.parse_body(final.checkpoint.partition("\n\n")[0] + "\n")
    assert (consistency.from_size, consistency.to_size) == (size, head.tree_size)
    verify_consistency(
        old_size=size, new_size=head.tree_size, proof=[bytes.fromhex(h) for h in consistency.hashes],
        old_root=trusted.root, new_root=head.root,
    )
    assert [e.index for e in records if isinstance(e, BundleEntry)] == list(range(size, head.tree_size))

    # Cut mid-entry and resumed: the same file, the consistency record kept where it was.
    out = tmp_path / "since.ndjson"
    out.with_name(out.name + ".partial").write_bytes(fresh.read_bytes()[: _cut_points(fresh)["mid-entry-line"]])
    other = tmp_path / "other-checkpoint.txt"
    other.write_text(blocks[0].checkpoint or "", encoding="utf-8")
    disagree = _export(demo, out, "--resume", "--since-checkpoint", str(other), remote=remote)
    assert (disagree.exit_code, error_code(disagree.stderr)) == (2, "configuration_error")
    result = _export(demo, out, "--resume", "--since-checkpoint", str(trusted_file), remote=remote)
    assert result.exit_code == 0, result.output
    assert _without_created(out) == _without_created(fresh)


def test_existing_files_are_kept_unless_forced(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "kept.ndjson"
    out.write_bytes(b"an earlier export\n")
    refused = _export(demo, out, remote=False)
    assert (refused.exit_code, error_code(refused.stderr)) == (2, "configuration_error")
    not_ours = _export(demo, out, "--resume", remote=False)
    assert (not_ours.exit_code, error_code(not_ours.stderr)) == (2, "configuration_error")
    assert out.read_bytes() == b"an earlier export\n"

    forced = _export(demo, out, "--force", remote=False)
    assert forced.exit_code == 0, forced.output
    assert _without_created(out) == _without_created(_fresh(demo, tmp_path, remote=False))

    # A bundle cut short under its final name (fetched with curl, say) is continued too.
    cut = tmp_path / "curl.ndjson"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    resumed = _export(demo, cut, "--resume", remote=True)
    assert resumed.exit_code == 0, resumed.output
    assert _without_created(cut) == _without_created(out)


def test_resume_refuses_a_partial_export_of_another_ledger(demo: Demo, tmp_path: Path) -> None:
    fresh = _fresh(demo, tmp_path, remote=True)
    data = fresh.read_bytes()
    header = json.loads(data.splitlines()[0])
    forged = data.replace(header["genesis"].encode(), b"0" * 64, 1)
    out = tmp_path / "forged.ndjson"
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(forged[: len(forged) // 2])
    result = _export(demo, out, "--resume", remote=True)
    assert (result.exit_code, error_code(result.stderr)) == (2, "origin_mismatch")
    assert not out.exists() and partial.exists()


def test_progress_goes_to_stderr_and_the_summary_to_stdout(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "bar.ndjson"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [FILIERA, *on(demo.data, demo.url), "export", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=follower, env=clean_env(), cwd=REPO,
    )
    os.close(follower)
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read().decode()
    terminal = _read_pty(leader, proc).decode()
    os.close(leader)
    assert proc.returncode == 0
    entries = json.loads(demo.get("/v1/ledger"))["tree_size"]
    assert "exporting" in terminal and f"{entries}/{entries}" in terminal
    assert stdout.count("\n") == 1 and stdout.startswith(f"exported: {out}: {ORIGIN} entries 0 to {entries - 1}")


def _section(doc: Path, title: str) -> str:
    text = doc.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"{doc.name} has no '## {title}' section"
    return match.group(1)


def test_the_documented_export_commands_exist(tmp_path: Path) -> None:
    from ..docs.test_docs import _check_invocation, _command_lines

    section = tmp_path / "exporting.md"
    section.write_text(_section(AUDITING_DOC, "Exporting the ledger"), encoding="utf-8")
    invocations = _command_lines(section)
    assert {_check_invocation(args) for args in invocations} == {"export"}
    options = {word for args in invocations for word in args if word.startswith("--")}
    assert {"--url", "--key", "--from", "--to", "--since-checkpoint", "--resume", "--json"} <= options
    # Every record type of the format is described.
    text = section.read_text(encoding="utf-8")
    for kind in ("bundle", "consistency", "block", "entry", "checkpoint", "end"):
        assert f'"type":"{kind}"' in text or f"`{kind}`" in text, kind
