"""The ledger the TESTPLAN T2 tamper suite edits, its copies, and the two checks it runs.

A consortium (three groves, a mill, a carrier, two shops, a certifier and an auditor) is
registered, then trades in runs: a contract, an origin with its attestation, custody from
grove to mill (co-signed or with a receipt), milling, the mill to the carrier, the carrier to
a shop under the contract, a receipt (one run in seven rejected and returned), a payment, its
confirmation and the contract's close. The carrier and a grove rotate keys (``key.add``, then
``key.revoke`` of the old key), the admin updates a member. Everything is signed by
tests/factories.py and tests/supply.py and sealed by :class:`ledger.sealing.Sealer` in blocks
of random sizes, so every position of the log, and which key may sign there, is known.

The checks are what users run: ``filiera verify`` (``verify_chain`` over ``db_source``) and the
offline audit of a bundle exported from the database (``bundle_lines``, ``audit_bundle``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from api.cli import init_ledger
from api.verify_sources import db_source
from ledger import jcs
from ledger.audit import AuditReport, audit_bundle
from ledger.config import Settings
from ledger.errors import ChainBroken
from ledger.keys import SigningKey, read_key_file
from ledger.notes import NoteVerifier, verifier_for
from ledger.sealing import Sealer
from ledger.storage import schema as t
from ledger.storage.export import ExportRange, bundle_lines
from ledger.storage.store import Store
from ledger.verify import verify_chain

from ..cli.conftest import ModuleDbs
from ..conftest import drop_pg_schema
from ..factories import ORIGIN, Member, key_add, key_revoke, register, update
from ..supply import attestation, close_contract, confirm, contract, handoff, lot, origin, payment, receipt, transform
from ..tampering import clone, connect, ledger_settings, sqlite_path

__all__ = [
    "SEED", "ENTRIES", "CAST", "CREATED", "Base", "KeySpan", "Row",
    "build_base", "dump", "export", "run_audit", "run_verify", "say",
]

CAST: dict[str, list[str]] = {
    "farm1": ["producer"],
    "farm2": ["producer"],
    "farm3": ["producer"],
    "mill": ["processor", "buyer"],
    "carrier": ["carrier"],
    "shop1": ["retailer", "buyer"],
    "shop2": ["retailer", "buyer"],
    "cert": ["certifier"],
    "auditor": ["auditor"],
}
SEED = int(os.environ.get("FILIERA_T2_SEED") or secrets.randbelow(2**32))
ENTRIES = int(os.environ.get("FILIERA_T2_ENTRIES", "400"))
CREATED = "2026-11-01T00:00:00Z"  # every bundle's "created", so that bundles compare byte for byte
MAX_BLOCK = 24  # entries per block are drawn from 1..MAX_BLOCK


@dataclass(frozen=True)
class KeySpan:
    """A member's key and the entries it may sign: indices in (added, revoked)."""

    member: str
    key: SigningKey
    added: int
    revoked: int | None = None

    def valid_at(self, index: int) -> bool:
        return self.added < index and (self.revoked is None or index < self.revoked)

    @property
    def key_id(self) -> str:
        return self.key.public_key.key_id


@dataclass(frozen=True)
class Row:
    idx: int
    id: str
    height: int
    type: str
    author: str
    leaf_hash: str
    leaf_data: str

    def leaf(self) -> dict[str, Any]:
        return json.loads(self.leaf_data)  # type: ignore[no-any-return]


@dataclass
class Base:
    """The untouched ledger: where it lives, what it holds, and what every copy starts from."""

    dbs: ModuleDbs
    url: str
    data: Path
    ledger_key: SigningKey
    admin: Member
    spans: list[KeySpan]
    rows: list[Row]
    blocks: list[Any]  # rows of the blocks table, by height
    nodes: list[tuple[int, int]]  # (level, idx) of every stored Merkle node
    tables: list[str]  # every table a copy must carry
    prefix: tuple[int, str]  # (h, url): the database as it was before block h was sealed
    digest: str = ""  # of every row of every table (see :func:`dump`)
    bundle: bytes = b""  # the whole log exported (see :func:`export`)
    copies: int = 0

    @property
    def backend(self) -> str:
        return self.dbs.backend

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def vkey(self) -> str:
        return verifier_for(ORIGIN, self.ledger_key.public_key.raw).vkey

    def settings(self, url: str) -> Settings:
        return ledger_settings(self.data, url)

    def height_of(self, index: int) -> int:
        return self.rows[index].height

    def block_range(self, height: int) -> range:
        b = self.blocks[height]
        return range(b.first_index, b.tree_size)

    def checkpoint(self, height: int | None = None) -> str:
        """The signed checkpoint of block ``height`` (the head's by default), as a monitor saved it."""
        return str(self.blocks[-1 if height is None else height].checkpoint)

    def copy(self) -> str:
        """A new database holding the same rows (see :func:`clone`)."""
        self.copies += 1
        return clone(self.dbs, self.url, f"copy{self.copies}", self.tables)

    def discard(self, url: str) -> None:
        """Drop a copy now rather than at the end of the module (a full run makes thousands)."""
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(sqlite_path(url) + suffix).unlink(missing_ok=True)
            return
        schema = self.dbs.schema(url)
        drop_pg_schema(schema)
        self.dbs.schemas.remove(schema)

    def key_valid_at(self, member: str, index: int) -> KeySpan | None:
        return next((s for s in self.spans if s.member == member and s.valid_at(index)), None)


# --- the story ---------------------------------------------------------------------------


def _entry_id(env: dict[str, Any]) -> str:
    return hashlib.sha256(jcs.canonicalize(env["payload"])).hexdigest()


class _Story:
    """The envelopes in log order; ``index`` is the log position the next one will take."""

    def __init__(self, admin: Member, rng: random.Random) -> None:
        self.rng = rng
        self.admin = admin
        self.m = {pid: Member(pid) for pid in CAST}
        self.envs: list[dict[str, Any]] = []
        self.spans: list[KeySpan] = []

    @property
    def index(self) -> int:
        return 1 + len(self.envs)  # genesis is entry 0

    def add(self, env: dict[str, Any]) -> str:
        self.envs.append(env)
        return _entry_id(env)

    def rotate(self, pid: str) -> None:
        """key.add of a new key (both keys sign), then key.revoke of the old one (the new signs)."""
        old = self.m[pid]
        new = Member(pid, SigningKey.generate())
        added = self.index
        self.add(key_add(old, new.key))
        revoked = self.index
        self.add(key_revoke(new, old.key_id, reason="scheduled rotation"))
        span = next(s for s in self.spans if s.key_id == old.key_id)
        self.spans[self.spans.index(span)] = KeySpan(pid, old.key, span.added, revoked)
        self.spans.append(KeySpan(pid, new.key, added))
        self.m[pid] = new

    def register_all(self) -> None:
        for pid, roles in CAST.items():
            self.spans.append(KeySpan(pid, self.m[pid].key, self.index))
            self.add(register(self.admin, self.m[pid], roles))
        self.add(update(self.admin, "shop2", name="Feinkost shop2 GmbH"))

    def run(self, r: int) -> None:
        rng, m = self.rng, self.m
        farm, shop, mill, carrier = m[f"farm{r % 3 + 1}"], m[f"shop{r % 2 + 1}"], m["mill"], m["carrier"]
        cid = f"CTR-{r:05d}"
        self.add(contract(shop, mill, cid))
        olives = [f"OL-{r:05d}-{k}" for k in range(rng.randint(1, 3))]
        harvest = self.add(origin(farm, *(lot(x, "olives", str(rng.randrange(800, 2400, 10))) for x in olives), claims=["organic"]))
        self.add(attestation(m["cert"], harvest, ["organic"]))
        if rng.random() < 0.5:
            self.add(handoff(farm, mill, olives, cosign=True))
        else:
            self.add(receipt(mill, self.add(handoff(farm, mill, olives))))
        oil = f"OIL-{r:05d}"
        self.add(transform(mill, olives, lot(oil, "extra virgin olive oil", str(rng.randrange(100, 400)), "l")))
        self.add(handoff(mill, carrier, [oil], cosign=True))
        delivery = self.add(handoff(carrier, shop, [oil], contract=cid))
        if r % 7 == 3:
            self.add(receipt(shop, delivery, status="rejected"))
            self.add(handoff(carrier, mill, [oil], cosign=True))
            self.add(close_contract(shop, cid, status="terminated"))
            return
        self.add(receipt(shop, delivery))
        paid = self.add(payment(shop, mill, f"{rng.randrange(900, 9000)}.00", contract=cid))
        self.add(confirm(mill, paid))
        self.add(close_contract(rng.choice([shop, mill]), cid))
        if r % 5 == 4:  # the mill pays the grove, outside any contract
            self.add(confirm(farm, self.add(payment(mill, farm, f"{rng.randrange(300, 3000)}.00"))))


def build_base(dbs: ModuleDbs, data: Path, *, entries: int, rng: random.Random) -> Base:
    """A ledger of about ``entries`` entries in blocks of 1..MAX_BLOCK, on ``dbs``'s backend."""
    url = dbs.new("base")
    settings = ledger_settings(data, url)
    init_ledger(settings, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
    admin = Member("admin", read_key_file(data / "admin.key").signing_key)
    ledger_key = read_key_file(data / "ledger.key").signing_key
    story = _Story(admin, rng)
    story.spans.append(KeySpan("admin", admin.key, 0))
    story.register_all()
    r = 0
    while story.index < entries:
        story.run(r)
        if r == 1:
            story.rotate("carrier")
        if r == 6:
            story.rotate("farm1")
        r += 1
    tables = [tb.name for tb in t.metadata.sorted_tables]
    prefix: tuple[int, str] | None = None
    store = Store.open(settings)
    try:
        sealer = Sealer(store, signing_key=ledger_key)
        pos, height = 0, 1
        while pos < len(story.envs):
            if prefix is None and pos >= 2 * len(story.envs) // 3:
                # Every table as it stood before block ``height``: a perfect rollback.
                prefix = (height, clone(dbs, url, "prefix", tables))
            batch = story.envs[pos : pos + rng.randint(1, MAX_BLOCK)]
            pos += len(batch)
            height += 1
            outcomes = sealer.submit_batch(batch)
            assert [o.status for o in outcomes] == ["created"] * len(batch), [o.error for o in outcomes if o.status != "created"]
    finally:
        store.dispose()
    assert prefix is not None
    with connect(url) as conn:
        rows = [
            Row(r.idx, r.id, r.height, r.type, r.author, r.leaf_hash, r.leaf_data)
            for r in conn.execute(text("SELECT * FROM entries ORDER BY idx"))
        ]
        blocks = list(conn.execute(text("SELECT * FROM blocks ORDER BY height")))
        nodes = [(r.level, r.idx) for r in conn.execute(text("SELECT level, idx FROM merkle_nodes ORDER BY level, idx"))]
    assert [r.idx for r in rows] == list(range(story.index))
    assert [b.height for b in blocks] == list(range(len(blocks)))
    base = Base(dbs, url, data, ledger_key, admin, story.spans, rows, blocks, nodes, tables, prefix)
    if dbs.backend == "sqlite":
        # Fold the WAL into the file, so that a byte flip in the file reaches the log.
        with sqlite3.connect(sqlite_path(url)) as conn3:
            conn3.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn3.close()
    with connect(url) as conn:
        base.digest = dump(conn, tables)
    base.bundle = export(base.settings(url))
    return base


# --- the checks --------------------------------------------------------------------------


def run_verify(settings: Settings, *, trusted: str | None = None) -> dict[str, Any] | None:
    """What `filiera verify` runs on the local database; the failure's facts, or None."""
    src = db_source(settings)
    try:
        verify_chain(src.blocks, node_check=src.node_check, state_check=src.state_check, trusted_checkpoint=trusted)
    except ChainBroken as exc:
        return {"reason": None, "height": None, "index": None, "entry": None, **exc.facts, "detail": exc.detail}
    finally:
        src.close()
    return None


def export(settings: Settings) -> bytes:
    """The whole log as a bundle, as `filiera export` writes it.

    The range is the whole log from block 0 to the head, built here rather than by
    ``plan_export``: its binary search over block heights refuses a store with a block
    missing, and the point is to let the audit, not the exporter, judge what is stored.
    """
    store = Store.open(settings)
    try:
        with store.read() as conn:
            head = store.head(conn)
        assert head is not None
        rng = ExportRange(start=0, end=head.tree_size, first_height=0, last_height=head.height, head=head, since=None)
        return b"".join(bundle_lines(store, rng, created=CREATED))
    finally:
        store.dispose()


def run_audit(bundle: bytes, vkey: str, *, trusted: str | None = None, workers: int = 0) -> AuditReport:
    return audit_bundle(bundle.splitlines(keepends=True), verifier=NoteVerifier.parse(vkey), trusted_checkpoint=trusted, workers=workers)


def dump(conn: Connection, tables: Sequence[str]) -> str:
    """A digest of every row of ``tables``, to tell an edit that changed nothing."""
    h = hashlib.sha256()
    for table in tables:
        for row in sorted(repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {table}"))):
            h.update(row.encode())
        h.update(b"|")
    return h.hexdigest()


def say(capsys: pytest.CaptureFixture[str], summary: dict[str, Any]) -> None:
    """Print a test's one-line JSON summary (with the seed), shown even when pytest captures
    output."""
    with capsys.disabled():
        print("\n" + json.dumps({"seed": SEED, **summary}, sort_keys=True))
