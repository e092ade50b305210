"""Interop, TESTPLAN T4: Filiera's RFC 8785 output is byte-identical to an independent
implementation, erdtman/canonicalize (npm), run under Node.js.

The package is pinned by `jcsnode/package-lock.json` (version and sha512 integrity) and installed
with `npm ci` into a cache directory outside the repository, once per lock file. The documents
are 10,000 I-JSON values drawn from a seeded generator that aims at the places canonical forms
differ: key order by UTF-16 code units (astral keys against keys in U+E000-U+FFFF), escapes of
control characters, doubles from random bit patterns (subnormals, exponents at the 1e21 and
1e-7 switch points), negative zero, deep nesting, plus the RFC 8785 reference pairs. The seed is
printed; FILIERA_JCS_SEED repeats a run and FILIERA_JCS_DOCS changes the count.

`.ci/run` sets FILIERA_REQUIRE_NODE=1: in CI a missing Node.js or npm fails the test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import LedgerError
from ledger.jcs import canonicalize, loads

HERE = Path(__file__).parent / "jcsnode"
VECTORS = Path(__file__).parents[1] / "vectors" / "jcs-rfc8785"
DOCS = int(os.environ.get("FILIERA_JCS_DOCS", "10000"))
SAFE = 2**53 - 1


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("FILIERA_REQUIRE_NODE") == "1":
        pytest.fail(f"{name} is required here (FILIERA_REQUIRE_NODE=1)")
    pytest.skip(f"{name} not installed")


@pytest.fixture(scope="module")
def node_canonicalize() -> Path:
    """A directory holding the pinned package, installed by `npm ci` once per lock file."""
    node, npm = _tool("node"), _tool("npm")
    lock = (HERE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "filiera"
    target = cache / f"jcsnode-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "canonicalize" / "package.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "canon.js"):
            shutil.copyfile(HERE / name, target / name)
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=target, capture_output=True, timeout=300, check=False,
        )
        assert proc.returncode == 0, f"npm ci failed: {proc.stderr.decode()[-2000:]}"
    shutil.copyfile(HERE / "canon.js", target / "canon.js")
    version = subprocess.run([node, "--version"], capture_output=True, check=True).stdout
    print(f"\nT4 JCS interop: node {version.decode().strip()}, canonicalize from {target}")
    return target


def _run_node(target: Path, lines: list[str]) -> list[str]:
    proc = subprocess.run(
        [_tool("node"), str(target / "canon.js")],
        input="\n".join(lines).encode() + b"\n",
        capture_output=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("utf-8").split("\n")
    assert out[-1] == ""
    return out[:-1]


# --- the generator ---------------------------------------------------------------------------

_KEY_CHARS = ["a", "b", "B", "é", "\u20ac", "\U0001f600", "\ue000", "\uffee", "\x7f", "\x01", "_", "1"]
_STR_CHARS = [*_KEY_CHARS, "\n", "\t", '"', "\\", "/", "\u2028", "\x1f", " ", "\u00a0", "\ufeff"]


def _double(rng: random.Random) -> float:
    """A finite double that is not an integer beyond 2**53 (which I-JSON cannot carry)."""
    while True:
        pick = rng.random()
        if pick < 0.5:
            value: float = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        elif pick < 0.7:
            value = rng.choice([1e21, 1e-7, 1e20, 1e-6, 5e-324, 2.2250738585072014e-308, 0.1, -0.0])
            value *= rng.choice([1, -1, 1.5, 9.99999])
        else:
            value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
        if math.isfinite(value) and not (value.is_integer() and abs(value) > SAFE):
            return value


def _string(rng: random.Random, chars: list[str], longest: int) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(0, longest)))


def _value(rng: random.Random, depth: int) -> Any:
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict", "dict"] if depth < 6 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -1, SAFE, -SAFE, rng.randint(-SAFE, SAFE), rng.randint(-1000, 1000)])
    if kind == "float":
        return _double(rng)
    if kind == "str":
        return _string(rng, _STR_CHARS, 12)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {_string(rng, _KEY_CHARS, 4): _value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def _document(rng: random.Random) -> Any:
    return {_string(rng, _KEY_CHARS, 4): _value(rng, 1) for _ in range(rng.randint(1, 8))}


def _wire(value: Any) -> str:
    """The JSON text both sides parse: Python's repr of doubles is the shortest round trip, so
    Node's JSON.parse gets the same bits Filiera's parser does."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False)


# --- the tests -------------------------------------------------------------------------------


def test_reference_pairs_agree_with_node(node_canonicalize: Path) -> None:
    names = sorted(p.stem for p in (VECTORS / "input").glob("*.json"))
    assert names, "the RFC 8785 reference pairs are missing"
    inputs = [json.dumps(json.loads((VECTORS / "input" / f"{n}.json").read_text("utf-8"))) for n in names]
    theirs = _run_node(node_canonicalize, inputs)
    for name, text, node_out in zip(names, inputs, theirs, strict=True):
        expected = (VECTORS / "output" / f"{name}.json").read_bytes()
        assert node_out.encode("utf-8") == expected, f"{name}: the Node implementation disagrees with RFC 8785"
        assert canonicalize(loads(text)) == expected, name


def test_generated_documents_are_byte_identical_to_node(node_canonicalize: Path) -> None:
    seed = int(os.environ.get("FILIERA_JCS_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\nT4 JCS interop: seed {seed} (FILIERA_JCS_SEED={seed} repeats this run), {DOCS} documents")
    rng = random.Random(seed)
    docs = [_document(rng) for _ in range(DOCS)]
    wires = [_wire(d) for d in docs]
    theirs = _run_node(node_canonicalize, wires)
    assert len(theirs) == len(docs)
    mismatches = []
    for i, (wire, node_out) in enumerate(zip(wires, theirs, strict=True)):
        try:
            ours = canonicalize(loads(wire)).decode("utf-8")
        except LedgerError as exc:  # an I-JSON document must never be refused
            mismatches.append((i, wire, f"refused: {exc}", node_out))
            continue
        if ours != node_out:
            mismatches.append((i, wire, ours, node_out))
    assert not mismatches, f"seed {seed}: {len(mismatches)} of {len(docs)} differ; first: {mismatches[0]!r}"


def test_the_comparison_can_fail(node_canonicalize: Path) -> None:
    """Negative control: a serializer that is not RFC 8785 (Python's sorted json.dumps) is
    caught by the same comparison on the same kind of documents."""
    rng = random.Random(8785)
    docs = [_document(rng) for _ in range(200)]
    theirs = _run_node(node_canonicalize, [_wire(d) for d in docs])
    naive = [json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for d in docs]
    assert sum(a != b for a, b in zip(naive, theirs, strict=True)) > 100
