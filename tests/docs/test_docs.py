"""The docs stay true: test vectors, quoted values, settings, CLI usage and the README's tour.

* ``docs/vectors/core-v1.json`` is regenerated from the code and must match byte for byte;
* every value ``docs/protocol.md`` quotes must equal the committed vectors;
* every vector is recomputed from the documented rules with hashlib, PyNaCl and rfc8785 alone,
  never with Filiera's own code, as an implementer in another language would;
* every setting is documented; every ``filiera`` command line in the docs names
  commands and options that exist; the README's tour and its Python client example run
  against a fresh demo ledger.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import click
import pytest
import rfc8785
from click.testing import CliRunner

from api.cli import cli
from ledger.config import SETTINGS_ENV, Settings

from ..procs import free_port
from .gen_vectors import (
    PROTOCOL_DOC,
    ROOT,
    VECTORS_FILE,
    build_vectors,
    dumps,
    quoted_values,
    resolve,
)

README = ROOT / "README.md"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
WITNESSING_DOC = ROOT / "docs" / "witnessing.md"
WEBHOOKS_DOC = ROOT / "docs" / "webhooks.md"
TEST_ONLY_SETTINGS = ("FILIERA_TEST_PG_URL", "FILIERA_SKIP_PG", "FILIERA_FUZZ_EXAMPLES")


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return data


# --- the committed vectors are what the code produces ---------------------------------------


def test_vectors_match_what_the_code_produces(tmp_path: Path) -> None:
    regenerated = dumps(build_vectors(tmp_path))
    committed = VECTORS_FILE.read_text(encoding="utf-8")
    assert regenerated == committed, (
        "the code now produces different protocol bytes than docs/vectors/core-v1.json. If the "
        "change is intended (it breaks every client), run `.venv/bin/python -m "
        "tests.docs.gen_vectors` and review docs/protocol.md; otherwise fix the code."
    )


def test_vectors_describe_three_entries_in_two_blocks(vectors: dict[str, Any]) -> None:
    assert [e["index"] for e in vectors["entries"]] == [0, 1, 2]
    assert [e["type"] for e in vectors["entries"]] == [
        "ledger.genesis",
        "participant.register",
        "key.add",
    ]
    assert [b["height"] for b in vectors["blocks"]] == [0, 1]
    assert sorted(vectors["keys"]) == ["admin", "ledger", "producer", "producer_new"]
    assert len(vectors["entries"][2]["signatures"]) == 2
    assert len(vectors["consistency"]) == 2


# --- docs/protocol.md quotes the committed vectors -------------------------------------------

# Every value the protocol page must quote: removing one from the page fails too.
QUOTED = {
    "keys.ledger.seed",
    "keys.ledger.public_key",
    "keys.ledger.key_id",
    "keys.admin.seed",
    "keys.admin.public_key",
    "keys.admin.key_id",
    "keys.producer.public_key",
    "keys.producer_new.public_key",
    "note_verifier.vkey",
    "note_verifier.key_id",
    "entries.1.entry_id",
    "entries.1.signed_message_hex",
    "entries.1.signatures.0.sig",
    "entries.1.leaf_data",
    "entries.1.leaf_hash",
    "entries.2.entry_id",
    "entries.2.leaf_data",
    "entries.2.leaf_hash",
    "blocks.0.hash",
    "blocks.1.header_jcs",
    "blocks.1.hash",
    "blocks.1.signed_message_hex",
    "blocks.1.signature",
    "blocks.1.header.root",
    "blocks.1.checkpoint_body",
    "blocks.1.checkpoint_signature",
    "blocks.1.checkpoint_note",
    "inclusion.hashes.0",
    "inclusion.hashes.1",
    "consistency.0.hashes.0",
    "consistency.0.hashes.1",
    "receipt.tlog_proof",
}


def test_protocol_doc_quotes_every_vector_value(vectors: dict[str, Any]) -> None:
    quoted = quoted_values(PROTOCOL_DOC.read_text(encoding="utf-8"))
    paths = [path for path, _, _ in quoted]
    assert len(paths) == len(set(paths)), "a vector is quoted twice"
    assert set(paths) == QUOTED
    assert len(quoted) == 32


@pytest.mark.parametrize("path", sorted(QUOTED))
def test_protocol_doc_value_equals_vector(vectors: dict[str, Any], path: str) -> None:
    quoted = {p: (kind, text) for p, kind, text in quoted_values(PROTOCOL_DOC.read_text(encoding="utf-8"))}
    kind, text = quoted[path]
    value = str(resolve(vectors, path))
    if kind == "block":
        assert text == (value if value.endswith("\n") else value + "\n")
    else:
        assert text == value


# --- the vectors recomputed from the documented rules, without Filiera's code ----------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(leaf_hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 over leaf hashes, written naively."""
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = _split(len(leaf_hashes))
    return _sha256(b"\x01" + _mth(leaf_hashes[:k]) + _mth(leaf_hashes[k:]))


def _path(m: int, leaf_hashes: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    if len(leaf_hashes) == 1:
        return []
    k = _split(len(leaf_hashes))
    if m < k:
        return _path(m, leaf_hashes[:k]) + [_mth(leaf_hashes[k:])]
    return _path(m - k, leaf_hashes[k:]) + [_mth(leaf_hashes[:k])]


def _subproof(m: int, leaf_hashes: list[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(leaf_hashes)
    if m == n:
        return [] if complete else [_mth(leaf_hashes)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaf_hashes[:k], complete) + [_mth(leaf_hashes[k:])]
    return _subproof(m - k, leaf_hashes[k:], False) + [_mth(leaf_hashes[:k])]


def _signing_keys(vectors: dict[str, Any]) -> dict[str, nacl.signing.SigningKey]:
    return {
        name: nacl.signing.SigningKey(bytes.fromhex(k["seed"]))
        for name, k in vectors["keys"].items()
    }


def _public_keys_by_id(vectors: dict[str, Any]) -> dict[str, bytes]:
    return {
        hashlib.sha256(bytes(sk.verify_key)).hexdigest()[:16]: bytes(sk.verify_key)
        for sk in _signing_keys(vectors).values()
    }


def test_keys_recomputed_from_seeds(vectors: dict[str, Any]) -> None:
    for name, key in vectors["keys"].items():
        seed = hashlib.sha256(key["seed_label"].encode("ascii")).digest()
        assert seed.hex() == key["seed"], name
        public = bytes(nacl.signing.SigningKey(seed).verify_key)
        assert _b64(public) == key["public_key"], name
        assert hashlib.sha256(public).hexdigest()[:16] == key["key_id"], name


@pytest.mark.parametrize("index", [0, 1, 2])
def test_entry_recomputed_independently(vectors: dict[str, Any], index: int) -> None:
    entry = vectors["entries"][index]
    keys = _signing_keys(vectors)
    by_id = {k["key_id"]: (name, k["participant"]) for name, k in vectors["keys"].items()}
    payload = entry["submitted"]["payload"]
    entry_id = _sha256(rfc8785.dumps(payload))
    assert entry_id.hex() == entry["entry_id"]
    message = b"filiera/entry/v1\n" + entry_id
    assert len(message) == 49
    assert message.hex() == entry["signed_message_hex"]
    submitted = entry["submitted"]["signatures"]
    for sig in submitted:
        name, owner = by_id[sig["key_id"]]
        assert sig["signer"] == owner
        # Ed25519 is deterministic: signing again with the seed gives the very same bytes.
        assert _b64(keys[name].sign(message).signature) == sig["sig"]
        keys[name].verify_key.verify(message, base64.b64decode(sig["sig"]))
    ordered = sorted(submitted, key=lambda s: (s["signer"], s["key_id"]))
    assert entry["signatures"] == ordered
    leaf_data = rfc8785.dumps({"payload": payload, "signatures": ordered})
    assert leaf_data == entry["leaf_data"].encode("utf-8")
    assert _sha256(b"\x00" + leaf_data).hex() == entry["leaf_hash"]


def test_key_add_signatures_arrive_out_of_order(vectors: dict[str, Any]) -> None:
    entry = vectors["entries"][2]
    assert entry["submitted"]["signatures"] != entry["signatures"]
    assert entry["submitted"]["signatures"] == list(reversed(entry["signatures"]))


def test_genesis_names_the_ledger_key(vectors: dict[str, Any]) -> None:
    genesis = vectors["entries"][0]["submitted"]
    assert genesis["payload"]["ledger_key"] == vectors["keys"]["ledger"]["public_key"]
    assert genesis["payload"]["author"] == "ledger"
    assert [s["signer"] for s in genesis["signatures"]] == ["ledger"]


@pytest.mark.parametrize("height", [0, 1])
def test_block_recomputed_independently(vectors: dict[str, Any], height: int) -> None:
    block = vectors["blocks"][height]
    header = block["header"]
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in vectors["entries"]]
    prev = "0" * 64 if height == 0 else vectors["blocks"][height - 1]["hash"]
    assert header["prev"] == prev
    assert header["ledger"] == vectors["origin"]
    assert header["root"] == _mth(leaves[: header["tree_size"]]).hex()
    covered = vectors["entries"][header["first_index"] : header["tree_size"]]
    assert block["entries"] == [e["entry_id"] for e in covered]
    header_jcs = rfc8785.dumps(header)
    assert header_jcs == block["header_jcs"].encode("utf-8")
    block_hash = _sha256(header_jcs)
    assert block_hash.hex() == block["hash"]
    message = b"filiera/block/v1\n" + block_hash
    assert message.hex() == block["signed_message_hex"]
    ledger = _signing_keys(vectors)["ledger"]
    assert _b64(ledger.sign(message).signature) == block["signature"]
    ledger.verify_key.verify(message, base64.b64decode(block["signature"]))


@pytest.mark.parametrize("height", [0, 1])
def test_checkpoint_recomputed_independently(vectors: dict[str, Any], height: int) -> None:
    block = vectors["blocks"][height]
    header = block["header"]
    origin = vectors["origin"]
    ledger = _signing_keys(vectors)["ledger"]
    public = bytes(ledger.verify_key)
    body = f"{origin}\n{header['tree_size']}\n{_b64(bytes.fromhex(header['root']))}\n"
    assert body == block["checkpoint_body"]
    note_key_id = _sha256(origin.encode("utf-8") + b"\n" + b"\x01" + public)[:4]
    assert note_key_id.hex() == vectors["note_verifier"]["key_id"]
    material = _b64(b"\x01" + public)
    assert vectors["note_verifier"]["vkey"] == f"{origin}+{note_key_id.hex()}+{material}"
    signature = ledger.sign(body.encode("utf-8")).signature
    assert _b64(signature) == block["checkpoint_signature"]
    line = f"\u2014 {origin} {_b64(note_key_id + signature)}\n"
    assert line == block["checkpoint_signature_line"]
    assert block["checkpoint_note"] == body + "\n" + line


def test_proofs_recomputed_independently(vectors: dict[str, Any]) -> None:
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in vectors["entries"]]
    inclusion = vectors["inclusion"]
    assert (inclusion["index"], inclusion["tree_size"]) == (1, 3)
    path = _path(inclusion["index"], leaves[: inclusion["tree_size"]])
    assert [h.hex() for h in path] == inclusion["hashes"]
    for proof in vectors["consistency"]:
        expected = _subproof(proof["from"], leaves[: proof["to"]], True)
        assert [h.hex() for h in expected] == proof["hashes"]


def test_tlog_proof_recomputed_independently(vectors: dict[str, Any]) -> None:
    receipt = vectors["receipt"]
    entry = vectors["entries"][receipt["index"]]
    assert (receipt["id"], receipt["leaf_hash"]) == (entry["entry_id"], entry["leaf_hash"])
    block = vectors["blocks"][entry["height"]]
    assert receipt["height"] == block["height"]
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in vectors["entries"]]
    path = _path(receipt["index"], leaves[: block["header"]["tree_size"]])
    expected = (
        "c2sp.org/tlog-proof@v1\n"
        f"index {receipt['index']}\n"
        + "".join(f"{_b64(h)}\n" for h in path)
        + "\n"
        + block["checkpoint_note"]
    )
    assert receipt["tlog_proof"] == expected


def test_vectors_verify_with_libsodium_only(vectors: dict[str, Any]) -> None:
    """Every signature verifies under the public key it names, with the signed bytes rebuilt."""
    public = _public_keys_by_id(vectors)
    checked = 0
    for entry in vectors["entries"]:
        message = b"filiera/entry/v1\n" + bytes.fromhex(entry["entry_id"])
        for sig in entry["signatures"]:
            nacl.signing.VerifyKey(public[sig["key_id"]]).verify(message, base64.b64decode(sig["sig"]))
            checked += 1
    assert checked == 4


# --- settings, error codes and command lines in the docs ------------------------------------

_CONFIG_ROW = re.compile(r"^\| `(FILIERA_[A-Z_]+)` \| (.+?) \| (.+?) \|$", re.MULTILINE)


def _readme_settings() -> dict[str, str]:
    rows = _CONFIG_ROW.findall(README.read_text(encoding="utf-8"))
    documented = [name for name, _, _ in rows]
    assert len(documented) == len(set(documented)), "a setting has two rows in the README"
    return {name: default for name, default, _ in rows}


def test_every_setting_is_in_the_readme() -> None:
    documented = _readme_settings()
    assert set(documented) == set(SETTINGS_ENV) | set(TEST_ONLY_SETTINGS)
    assert len(SETTINGS_ENV) >= 12


def test_readme_defaults_match_the_code() -> None:
    documented = _readme_settings()
    defaults = Settings.from_env({})
    compared = 0
    for name, (attr, _) in SETTINGS_ENV.items():
        match = re.fullmatch(r"`([^`]+)`", documented[name].strip())
        value = getattr(defaults, attr)
        if match is None or isinstance(value, Path) or attr == "database_url":
            continue
        text = match.group(1)
        if isinstance(value, (int, float)):
            assert float(text) == value, name
        else:
            assert text == value, name
        compared += 1
    assert compared == 25


# Snake-case names the docs quote that are not error codes: fields, tables, settings, functions.
NOT_ERROR_CODES = {
    "admin_quorum", "first_index", "from_root", "key_id", "ledger_key", "public_key",
    "tlog_proof", "to_root", "tree_size", "verifier_key",
    "deliver_by", "dispatched_at", "paid_at", "produced_on", "received_at", "valid_until",
    "entry_parties", "lot_handoffs", "lot_lineage", "participant_keys", "request_nonces",
    "verify_inclusion", "verify_consistency",
    "crypto_core_ed25519_is_valid_point", "crypto_sign_open", "crypto_sign_verify_detached",
    "full_page_writes", "remote_apply", "remote_write", "synchronous_commit", "jit_above_cost", "journal_size_limit",
    "pg_dump", "pg_restore", "pg_basebackup", "synchronous_standby_names", "pg_stat_replication", "pg_stat_wal_receiver", "replica_lag",
    "request_id", "oldest_pending_age",
}


def test_error_codes_quoted_in_the_docs_exist() -> None:
    """A renamed or invented code in the docs fails here (docs/errors.md has its own test)."""
    from ledger.errors import all_error_classes

    codes = {cls.code for cls in all_error_classes()}
    quoted: set[str] = set()
    for doc in (README, PROTOCOL_DOC, OPERATIONS_DOC):
        quoted |= set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)`", doc.read_text(encoding="utf-8")))
    # Prometheus metric names (docs/operations.md#metrics) are not error codes either.
    unknown = {q for q in quoted if not q.startswith("filiera_")} - codes - NOT_ERROR_CODES
    assert unknown == set(), f"not error codes (add real field names to NOT_ERROR_CODES): {unknown}"
    assert len(quoted & codes) >= 30


_FENCE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_OPERATORS = {"|", "||", "&", "&&", ";", "(", ")", "<", ">", ">>"}
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_FILIERA = re.compile(r"(?:[^=\s]*/)?filiera")


def _command_lines(doc: Path) -> list[list[str]]:
    """The words after ``filiera`` of every invocation in the doc's fenced code blocks.

    A word is an invocation in command position: first on the line, after a shell operator
    (``|``, ``;``, ``&&``, ``$(`` ...) or after ``VAR=value`` words; a systemd ``ExecStart=``
    line counts too. JSON lines of heredocs and comments are skipped.
    """
    found: list[list[str]] = []
    for block in _FENCE.findall(doc.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            if line.lstrip().startswith(("{", '"', "#")):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
            command_position = True
            for i, token in enumerate(tokens):
                if token in _OPERATORS or token.endswith("$"):
                    command_position = True  # "$(" arrives as "...$" then "("
                    continue
                if not command_position:
                    continue
                assignment = _ASSIGNMENT.fullmatch(token)
                if assignment and assignment.group(1) != "ExecStart":
                    continue  # an environment assignment before the command
                word = assignment.group(2) if assignment else token
                if _FILIERA.fullmatch(word):
                    args: list[str] = []
                    for rest in tokens[i + 1 :]:
                        if rest in _OPERATORS:
                            break
                        args.append(rest)
                    found.append(args)
                command_position = False
    return found


def _option_names(params: list[Any]) -> set[str]:
    names: set[str] = set()
    for param in params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def _check_invocation(args: list[str]) -> str:
    """Check one command line against the click tree; return its command name."""
    global_options = _option_names(cli.params)
    position = 0
    while position < len(args) and args[position].startswith("-"):
        name = args[position].split("=", 1)[0]
        assert name in global_options, f"filiera has no global option {name}"
        position += 1 if "=" in args[position] else 2
    assert position < len(args), f"no command in `filiera {' '.join(args)}`"
    name = args[position]
    assert name in cli.commands, f"filiera has no command {name!r}"
    command = cli.commands[name]
    rest = args[position + 1 :]
    label = name
    if isinstance(command, click.Group):
        # A command family (`filiera witness serve ...`): check the subcommand's options.
        assert rest and rest[0] in command.commands, f"`filiera {name}` has no command {rest[:1]}"
        label = f"{name} {rest[0]}"
        command, rest = command.commands[rest[0]], rest[1:]
    options = _option_names(command.params) | {"--help", "-h"}
    for word in rest:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in options, f"`filiera {label}` has no option {option}"
    return name


@pytest.mark.parametrize("doc", [README, OPERATIONS_DOC, WITNESSING_DOC, WEBHOOKS_DOC], ids=["README", "operations", "witnessing", "webhooks"])
def test_documented_command_lines_exist(doc: Path) -> None:
    invocations = _command_lines(doc)
    used = {_check_invocation(args) for args in invocations}
    runner = CliRunner()
    for name in sorted(used):
        result = runner.invoke(cli, [name, "--help"], prog_name="filiera")
        assert result.exit_code == 0, (name, result.output)
    if doc == README:
        assert {"keygen", "sign", "submit", "get", "verify"} <= used
        assert len(invocations) == 24
    elif doc == WITNESSING_DOC:
        assert {"witness", "serve"} <= used
        assert len(invocations) == 4
    elif doc == WEBHOOKS_DOC:
        assert used == {"webhooks", "worker"}
        assert len(invocations) == 6
    else:
        assert {"init", "serve", "verify"} <= used


def test_command_line_parser_finds_invocations(tmp_path: Path) -> None:
    """The parser above must see through pipes, $(...), assignments and unit files."""
    sample = (
        "```sh\n"
        "filiera keygen --participant a1 --out x.key | tee out.json\n"
        "ID=$(filiera submit x.json --url $URL | field id)\n"
        "FILIERA_DATABASE_URL=postgresql://u@h/filiera filiera --data-dir d verify --json\n"
        "pg_dump --file f postgresql://filiera@db/filiera\n"
        "Environment=FILIERA_DATA_DIR=/srv/filiera\n"
        "ExecStart=/opt/filiera/.venv/bin/filiera serve --port 8000\n"
        "```\n"
    )
    path = tmp_path / "sample.md"
    path.write_text(sample, encoding="utf-8")
    found = _command_lines(path)
    assert [args[0] if not args[0].startswith("-") else args[2] for args in found] == [
        "keygen",
        "submit",
        "verify",
        "serve",
    ]
    with pytest.raises(AssertionError):
        _check_invocation(["keygen", "--no-such-option"])
    with pytest.raises(AssertionError):
        _check_invocation(["no-such-command"])
    with pytest.raises(AssertionError):
        _check_invocation(["witness", "serve", "--no-such-option"])
    with pytest.raises(AssertionError):
        _check_invocation(["witness", "no-such-command"])
    assert _check_invocation(["witness", "init", "--name", "w", "--out", "w.key"]) == "witness"


# --- the README's tour, run as a reader would ------------------------------------------------

_TOUR = re.compile(r"^## A five-minute tour\n(.*?)^## ", re.MULTILINE | re.DOTALL)
_SH = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TOUR_URL = "URL=http://127.0.0.1:8000"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FILIERA_", "VIRTUAL_ENV"))}


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A demo ledger in tmp_path/var served like `make run` does, on a free port."""
    if shutil.which("curl") is None:
        pytest.fail("the README's tour uses curl; install it")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    filiera = str(ROOT / ".venv" / "bin" / "filiera")
    env = {**_clean_env(), "FILIERA_DATA_DIR": str(tmp_path / "var")}
    subprocess.run([filiera, "demo", "--if-missing"], cwd=tmp_path, env=env, check=True, capture_output=True)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [filiera, "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("filiera serve did not come up:\n" + (tmp_path / "serve.log").read_text())
            time.sleep(0.2)
        yield tmp_path, port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _head(port: int) -> tuple[int, int]:
    """(blocks, entries) of the served ledger, from the public health check."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5) as resp:
        health = json.loads(resp.read())
    return health["height"] + 1, health["tree_size"]


def test_readme_tour_runs_against_a_demo_ledger(demo_server: tuple[Path, int]) -> None:
    workdir, port = demo_server
    text = README.read_text(encoding="utf-8")
    match = _TOUR.search(text)
    assert match is not None, "README.md has no '## A five-minute tour' section"
    blocks = _SH.findall(match.group(1))
    assert len(blocks) == 9
    script = "\n".join(blocks)
    assert script.count(_TOUR_URL) == 1
    script = script.replace(_TOUR_URL, f"URL=http://127.0.0.1:{port}")
    demo_blocks, demo_entries = _head(port)
    # The README describes the demo `make run` builds; its figures must be the real ones.
    assert f"take {demo_entries} entries in {demo_blocks} blocks" in text
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=workdir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Unsigned reads of member resources are refused, and the 401 says how to sign.
    assert "HTTP/1.1 401" in out
    assert "WWW-Authenticate: Signature" in out
    assert 'Accept-Signature: filiera=("@method" "@target-uri")' in out
    assert '"code": "signature_required"' in out
    # What the tour promises: a sealed registration and key rotation, a refusal with
    # key_revoked; an origin, a handoff and its receipt sealed, a second handoff of the same lot
    # refused with not_custodian.
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"file"')]
    assert [line["status"] for line in lines] == [201, 201, 201, 403, 201, 201, 201, 422]
    assert lines[3]["code"] == "key_revoked"
    assert lines[-1]["code"] == "not_custodian"
    assert lines[-1]["custodian"] == "frantoio-bari"
    assert "refused, as it should be" in out
    assert "refused: the mill holds the lot" in out
    # Signed reads: the auditor reads a member, the new member its own registration and record,
    # the mill the handoff; the Munich retailer, party to none of it, is told there is no such
    # entry.
    assert '"registered_index": 1' in out
    assert '"code": "entry_not_found"' in out
    assert "not a party: 404" in out
    sealed = 6
    assert f"OK: demo.filiera.example: {demo_blocks + sealed} blocks, {demo_entries + sealed} entries" in out
    report = json.loads(out.strip().splitlines()[-1])
    assert (report["ok"], report["tree_size"]) == (True, demo_entries + sealed)


_CLIENT = re.compile(r"^### The Python client\n(.*?)^## ", re.MULTILINE | re.DOTALL)
_PY = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_CLIENT_URL = 'URL = "http://127.0.0.1:8000"'


def test_readme_python_client_example_runs(demo_server: tuple[Path, int]) -> None:
    workdir, port = demo_server
    match = _CLIENT.search(README.read_text(encoding="utf-8"))
    assert match is not None, "README.md has no '### The Python client' section"
    (code,) = _PY.findall(match.group(1))
    assert code.count(_CLIENT_URL) == 1
    code = code.replace(_CLIENT_URL, f'URL = "http://127.0.0.1:{port}"')
    demo_blocks, demo_entries = _head(port)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code],
        cwd=workdir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The origin and the co-signed handoff are sealed, the handoff readable by the mill; the
    # grove's second handoff is refused and raised as NotCustodian.
    assert result.stdout.splitlines() == [
        f"handoff sealed at index {demo_entries + 1}",
        "refused: not_custodian",
    ]
    assert _head(port) == (demo_blocks + 2, demo_entries + 2)
