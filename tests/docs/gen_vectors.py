"""Generate Filiera's own protocol test vectors: ``docs/vectors/core-v1.json``.

Everything is fixed (key seeds, times, nonces) and Ed25519 is deterministic, so the output is
the same byte for byte on every run. The vectors come out of the real code path: a three-entry
ledger is sealed by :class:`ledger.sealing.Sealer` on a throw-away SQLite database with a fixed
clock, then every value is read back (entry ids, leaf data, block headers, signatures,
checkpoints, the receipt's tlog-proof). ``tests/docs/test_docs.py`` regenerates the file and
compares it with the committed one, so a change to the code that alters a byte fails loudly,
and recomputes every value independently (hashlib, PyNaCl, rfc8785) from the rules written in
``docs/protocol.md``.

Run from the repository root to rewrite the file and the values quoted in the docs::

    .venv/bin/python -m tests.docs.gen_vectors
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ledger import jcs
from ledger.clock import FixedClock
from ledger.config import Settings
from ledger.entries import entry_message, parse_envelope, sign_payload
from ledger.keys import SigningKey
from ledger.merkle import build_proof, consistency_plan, inclusion_plan, plan_nodes
from ledger.notes import verifier_for
from ledger.sealing import Sealer
from ledger.storage.migrate import upgrade
from ledger.storage.store import Store

__all__ = [
    "ROOT",
    "VECTORS_FILE",
    "PROTOCOL_DOC",
    "ORIGIN",
    "build_vectors",
    "dumps",
    "resolve",
    "quoted_values",
    "render_doc",
    "main",
]

ROOT = Path(__file__).resolve().parents[2]
VECTORS_FILE = ROOT / "docs" / "vectors" / "core-v1.json"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"

ORIGIN = "vectors.filiera.example"
GENESIS_TIME = datetime(2025, 3, 1, 8, 0, 0, tzinfo=timezone.utc)
BLOCK_1_TIME = GENESIS_TIME + timedelta(minutes=30)

# Seeds are SHA-256 of these ASCII labels: anyone can re-derive them.
SEED_LABELS = {
    "ledger": ("ledger", "filiera core-v1 ledger key"),
    "admin": ("consorzio", "filiera core-v1 admin key"),
    "producer": ("masseria-ulivi", "filiera core-v1 producer key"),
    "producer_new": ("masseria-ulivi", "filiera core-v1 producer second key"),
}


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode("ascii")).digest()


def _keys() -> dict[str, tuple[str, SigningKey]]:
    return {name: (who, SigningKey(_seed(label))) for name, (who, label) in SEED_LABELS.items()}


def _payloads(keys: dict[str, tuple[str, SigningKey]]) -> list[dict[str, Any]]:
    """The two member entries of block 1 (genesis is built by the Sealer itself)."""
    producer = keys["producer"][1].public_key.b64
    register = {
        "ledger": ORIGIN,
        "type": "participant.register",
        "author": "consorzio",
        # Carried verbatim: payload times keep the author's precision (here two digits).
        "time": "2025-03-01T08:29:30.25Z",
        "nonce": "core-v1-register-0001",
        "participant": {
            "id": "masseria-ulivi",
            "name": "Masseria degli Ulivi Società Agricola",
            "roles": ["producer"],
            "keys": [{"public_key": producer}],
            "attributes": {"country": "IT", "region": "Puglia"},
        },
    }
    key_add = {
        "ledger": ORIGIN,
        "type": "key.add",
        "author": "masseria-ulivi",
        "time": "2025-03-01T08:29:45Z",
        "nonce": "core-v1-key-add-0001",
        "participant": "masseria-ulivi",
        "public_key": keys["producer_new"][1].public_key.b64,
    }
    return [register, key_add]


def _envelopes(keys: dict[str, tuple[str, SigningKey]]) -> list[dict[str, Any]]:
    register, key_add = _payloads(keys)
    first = sign_payload(register, [keys["admin"]])
    # Two signatures by one signer, submitted in the reverse of their canonical order, so that
    # the vector shows the leaf data sorting them by (signer, key_id).
    signers = sorted([keys["producer"], keys["producer_new"]], key=lambda k: k[1].public_key.key_id)
    second = sign_payload(key_add, list(reversed(signers)))
    return [first, second]


def _key_json(name: str, who: str, key: SigningKey) -> dict[str, str]:
    return {
        "participant": who,
        "seed_label": SEED_LABELS[name][1],
        "seed": key.seed.hex(),
        "public_key": key.public_key.b64,
        "key_id": key.public_key.key_id,
    }


def build_vectors(workdir: Path) -> dict[str, Any]:
    """Seal the vector ledger in ``workdir`` (which must be empty) and describe it."""
    keys = _keys()
    ledger_key = keys["ledger"][1]
    settings = Settings.from_env(
        {},
        data_dir=workdir,
        ledger_key_file=workdir / "ledger.key",
        database_url=f"sqlite:///{workdir / 'vectors.db'}",
    )
    store = Store.open(settings, check=False)
    try:
        upgrade(store.engine)
        clock = FixedClock(GENESIS_TIME)
        sealer = Sealer(store, signing_key=ledger_key, clock=clock)
        admin_who, admin_key = keys["admin"]
        sealer.genesis(
            origin=ORIGIN,
            admins=[
                {
                    "id": admin_who,
                    "name": "Consorzio Olio Extravergine",
                    "roles": ["admin"],
                    "keys": [{"public_key": admin_key.public_key.b64}],
                }
            ],
            admin_quorum=1,
            nonce="core-v1-genesis-0001",
        )
        clock.advance(BLOCK_1_TIME - GENESIS_TIME)
        submitted = _envelopes(keys)
        outcomes = sealer.submit_batch(submitted, raise_first=True)
        receipt = outcomes[0].receipt
        assert receipt is not None
        with store.read() as conn:
            blocks = store.blocks(conn, start=0, limit=10)
            rows = store.entries_range(conn, 0, blocks[-1].tree_size)
            size = blocks[-1].tree_size
            plans = {
                "inclusion": inclusion_plan(index=receipt.index, tree_size=size),
                **{
                    f"consistency_{old}": consistency_plan(old_size=old, new_size=size)
                    for old in (1, 2)
                },
            }
            nodes = store.nodes(conn, set().union(*(plan_nodes(p) for p in plans.values())))
    finally:
        store.dispose()

    entries = []
    for row in rows:
        env = parse_envelope(jcs.loads(row.leaf_data), origin=ORIGIN)
        as_submitted = submitted[row.idx - 1] if row.idx else env.to_json()
        entries.append(
            {
                "index": row.idx,
                "height": row.height,
                "type": row.type,
                "submitted": as_submitted,
                "entry_id": env.id,
                "signed_message_hex": entry_message(env.id_raw).hex(),
                "signatures": [s.to_json() for s in env.signatures],
                "leaf_data": env.leaf_data.decode("utf-8"),
                "leaf_hash": env.leaf_hash.hex(),
            }
        )
    block_list = []
    for b in blocks:
        header = b.header_json(ORIGIN)
        note = b.checkpoint
        body, _, signature_line = note.rpartition("\n\n")
        # "— <name> <base64(4-byte note key id || 64-byte Ed25519 signature)>"
        signed = base64.b64decode(signature_line.rstrip("\n").rsplit(" ", 1)[1])
        block_list.append(
            {
                "height": b.height,
                "header": header,
                "header_jcs": jcs.canonicalize(header).decode("utf-8"),
                "hash": b.hash,
                "signed_message_hex": (b"filiera/block/v1\n" + bytes.fromhex(b.hash)).hex(),
                "signature": b.signature,
                "checkpoint_body": body + "\n",
                "checkpoint_signature_line": signature_line,
                "checkpoint_signature": base64.b64encode(signed[4:]).decode("ascii"),
                "checkpoint_note": note,
                "entries": [r.id for r in rows if r.height == b.height],
            }
        )
    verifier = verifier_for(ORIGIN, ledger_key.public_key.raw)
    return {
        "name": "filiera-core-v1",
        "about": (
            "Filiera protocol v1 test vectors, generated by tests/docs/gen_vectors.py and "
            "explained in docs/protocol.md. A three-entry ledger: genesis (block 0), then a "
            "participant.register and a key.add sealed together in block 1."
        ),
        "origin": ORIGIN,
        "keys": {name: _key_json(name, who, key) for name, (who, key) in keys.items()},
        "note_verifier": {"key_id": verifier.key_id.hex(), "vkey": verifier.vkey},
        "entries": entries,
        "blocks": block_list,
        "receipt": receipt.to_json(),
        "inclusion": {
            "index": receipt.index,
            "tree_size": size,
            "hashes": [h.hex() for h in build_proof(plans["inclusion"], nodes)],
        },
        "consistency": [
            {
                "from": old,
                "to": size,
                "hashes": [h.hex() for h in build_proof(plans[f"consistency_{old}"], nodes)],
            }
            for old in (1, 2)
        ],
    }


def dumps(vectors: dict[str, Any]) -> str:
    """The committed file's exact text: sorted keys, two-space indent, UTF-8, final newline."""
    return json.dumps(vectors, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def resolve(vectors: Any, path: str) -> Any:
    """Look up a dotted path such as ``entries.1.leaf_hash`` (numbers index lists)."""
    value = vectors
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


# --- values quoted in docs/protocol.md -----------------------------------------------------
#
# A short value is a table row "| `path` | `value` |"; a long or multi-line one is a fenced
# block right after an HTML comment "<!-- vector: path -->". Both only inside the section
# between the "<!-- vectors:begin -->" and "<!-- vectors:end -->" markers.

import re  # noqa: E402  (kept beside the parser it serves)

_SECTION = re.compile(r"<!-- vectors:begin -->\n(.*?)<!-- vectors:end -->", re.DOTALL)
_ROW = re.compile(r"^\| `([a-z0-9_.]+)` \| `([^`]*)` \|$", re.MULTILINE)
_BLOCK = re.compile(r"<!-- vector: ([a-z0-9_.]+) -->\n```[a-z]*\n(.*?)```\n", re.DOTALL)


def _block_text(value: str) -> str:
    return value if value.endswith("\n") else value + "\n"


def quoted_values(doc: str) -> list[tuple[str, str, str]]:
    """(path, kind, quoted text) for every vector value quoted in ``doc``, in order.

    ``kind`` is ``row`` or ``block``; a block's text is compared as :func:`_block_text`.
    Raises ValueError if the doc has no vectors section.
    """
    match = _SECTION.search(doc)
    if match is None:
        raise ValueError("docs/protocol.md has no <!-- vectors:begin --> section")
    section = match.group(1)
    found = [(m.start(), m.group(1), "row", m.group(2)) for m in _ROW.finditer(section)]
    found += [(m.start(), m.group(1), "block", m.group(2)) for m in _BLOCK.finditer(section)]
    return [(path, kind, text) for _, path, kind, text in sorted(found)]


def render_doc(doc: str, vectors: dict[str, Any]) -> str:
    """``doc`` with every quoted vector value replaced by the current one."""

    def row(m: re.Match[str]) -> str:
        return f"| `{m.group(1)}` | `{resolve(vectors, m.group(1))}` |"

    def block(m: re.Match[str]) -> str:
        fence = m.group(0).split("\n", 2)[1]
        return f"<!-- vector: {m.group(1)} -->\n{fence}\n{_block_text(str(resolve(vectors, m.group(1))))}```\n"

    def section(m: re.Match[str]) -> str:
        body = _ROW.sub(row, m.group(1))
        body = _BLOCK.sub(block, body)
        return f"<!-- vectors:begin -->\n{body}<!-- vectors:end -->"

    return _SECTION.sub(section, doc)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vectors = build_vectors(Path(tmp))
    VECTORS_FILE.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_FILE.write_text(dumps(vectors), encoding="utf-8")
    print(f"wrote {VECTORS_FILE.relative_to(ROOT)}")
    if PROTOCOL_DOC.exists() and "--no-docs" not in sys.argv:
        old = PROTOCOL_DOC.read_text(encoding="utf-8")
        new = render_doc(old, vectors)
        if new != old:
            PROTOCOL_DOC.write_text(new, encoding="utf-8")
            print(f"updated the values quoted in {PROTOCOL_DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
