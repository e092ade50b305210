"""Database schema: the log tables (append-only), the state projection and the intake queue.

Alembic (``migrations/``) is how every database gets this schema; these ``Table`` objects are
what the code queries, and a test checks the two stay in step.

Log tables, which the database itself refuses to UPDATE or DELETE (triggers installed by the
migration): ``entries``, ``blocks``, ``merkle_nodes``. Everything else is derived from them
(``participants``, ``participant_keys``) or transient (``pending``), except the witnesses'
``cosignatures`` and ``cosignature_renewals``: evidence from outside, append-only like the log.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "metadata",
    "entries",
    "blocks",
    "merkle_nodes",
    "pending",
    "participants",
    "participant_keys",
    "lots",
    "lot_lineage",
    "lot_handoffs",
    "handoffs",
    "contracts",
    "payments",
    "attestations",
    "entry_parties",
    "request_nonces",
    "cosignatures",
    "cosignature_renewals",
    "engagement_daily",
    "LOG_TABLES",
    "APPEND_ONLY_TABLES",
    "FACT_TABLES",
    "fact_tables",
    "fact_lot_traces",
    "fact_contract_progress",
    "webhook_subscriptions",
    "webhook_deliveries",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

entries = Table(
    "entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(64), nullable=False, unique=True),
    Column("height", BigInteger, nullable=False, index=True),
    Column("type", String(64), nullable=False),
    Column("author", String(128), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("leaf_hash", String(64), nullable=False),
    # JCS of the whole envelope (PROTOCOL §3 leaf data): the bytes the log commits to.
    Column("leaf_data", Text, nullable=False),
    UniqueConstraint("author", "nonce", name="uq_entries_author_nonce"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("height", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("prev", String(64), nullable=False),
    Column("time", String(32), nullable=False),
    Column("first_index", BigInteger, nullable=False),
    Column("tree_size", BigInteger, nullable=False, unique=True),
    Column("root", String(64), nullable=False),
    Column("signature", String(88), nullable=False),
    Column("checkpoint", Text, nullable=False),
)

# Hash of every perfect subtree ever completed: (level, index) covers leaves
# [index << level, (index + 1) << level). Proofs read O(log n) of these, never the leaves.
merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Entries accepted (durably) but not sealed yet, and recent refusals at sealing so that the
# submitter learns why. Rows leave this table when their entry is sealed.
pending = Table(
    "pending",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("leaf_data", Text, nullable=False),
    # JSON list of [key_id, base64 public key] whose signatures the accepting worker verified.
    Column("verified", Text, nullable=False),
    Column("received_at", String(32), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("code", String(64), nullable=True),
    Column("detail", Text, nullable=True),
)
Index("ix_pending_status_seq", pending.c.status, pending.c.seq)

participants = Table(
    "participants",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("roles", Text, nullable=False),  # JSON list
    Column("attributes", Text, nullable=False),  # JSON object
    Column("registered_index", BigInteger, nullable=False),
    Column("registered_height", BigInteger, nullable=False),
    Column("updated_index", BigInteger, nullable=False),
)

participant_keys = Table(
    "participant_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("participant", String(128), nullable=False, index=True),
    Column("public_key", String(44), nullable=False),
    Column("added_index", BigInteger, nullable=False),
    Column("added_height", BigInteger, nullable=False),
    Column("revoked_index", BigInteger, nullable=True),
    Column("revoked_height", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
)

LOG_TABLES = ("entries", "blocks", "merkle_nodes")

# --- supply-chain projection (PROTOCOL §4), derived from the log in each block's transaction ---

lots = Table(
    "lots",
    metadata,
    Column("lot", String(200), primary_key=True),
    Column("product", String(200), nullable=False),
    Column("quantity", String(32), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("custodian", String(128), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_index", BigInteger, nullable=False),
    Column("parents", Text, nullable=False),  # JSON list of input lots
    Column("handoff", String(64), nullable=True),
    Column("updated_index", BigInteger, nullable=False),
)

# Lineage edges, both ways indexed, so provenance walks inputs of inputs without scanning.
lot_lineage = Table(
    "lot_lineage",
    metadata,
    Column("child", String(200), primary_key=True),
    Column("parent", String(200), primary_key=True),
    Column("entry", String(64), nullable=False),
)
Index("ix_lot_lineage_parent", lot_lineage.c.parent)

# Which handoffs moved a lot, in log order: a provenance query reads a lot's custody chain by
# its key instead of scanning the handoffs' JSON lists. Written when the handoff is sealed.
lot_handoffs = Table(
    "lot_handoffs",
    metadata,
    Column("lot", String(200), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("handoff", String(64), nullable=False),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("sender", String(128), nullable=False, index=True),
    Column("recipient", String(128), nullable=False, index=True),
    Column("lots", Text, nullable=False),  # JSON list
    Column("status", String(16), nullable=False),
    Column("dispatched_at", String(32), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("contract", String(200), nullable=True, index=True),
    Column("received_at", String(32), nullable=True),
    Column("closed_by", String(64), nullable=True),
)

contracts = Table(
    "contracts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("buyer", String(128), nullable=False, index=True),
    Column("seller", String(128), nullable=False, index=True),
    Column("terms", Text, nullable=False),  # JSON object
    Column("status", String(16), nullable=False),
    Column("entry", String(64), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("closed_index", BigInteger, nullable=True),
)

payments = Table(
    "payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("payer", String(128), nullable=False, index=True),
    Column("payee", String(128), nullable=False, index=True),
    Column("amount", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_at", String(32), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("contract", String(200), nullable=True, index=True),
    Column("confirmed_index", BigInteger, nullable=True),
)

attestations = Table(
    "attestations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("author", String(128), nullable=False),
    Column("subject", String(200), nullable=False, index=True),
    Column("claims", Text, nullable=False),  # JSON list
    Column("idx", BigInteger, nullable=False),
)

# Who may see an entry besides auditors and admins: its author, signers and the participants
# it names (PROTOCOL §6 visibility), one row each, written when the entry is sealed.
entry_parties = Table(
    "entry_parties",
    metadata,
    Column("participant", String(128), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
)

# Nonces of signed read requests seen in the replay window (RFC 9421 §7.2.2), shared by every
# worker so that a captured request cannot be replayed against another one. Pruned as it ages.
request_nonces = Table(
    "request_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("key_id", String(16), nullable=False),
    Column("seen_at", BigInteger, nullable=False, index=True),
)

# Witness cosignatures of the ledger's checkpoints (c2sp.org/tlog-cosignature v1), each verified
# against the witness's key and the checkpoint body of the block of that tree size before it
# is stored. Append-only (triggers in migration 0003): evidence is never rewritten.
cosignatures = Table(
    "cosignatures",
    metadata,
    # The witness's note key name and 8-hex key ID (type 0x04), as in its signature line.
    Column("witness", String(255), primary_key=True),
    Column("key_id", String(8), primary_key=True),
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("line", Text, nullable=False),
)
Index("ix_cosignatures_tree_size", cosignatures.c.tree_size)

# Later cosignatures of a checkpoint already cosigned (TESTPLAN T11): while the ledger is idle,
# the witnessing loop asks again every FILIERA_WITNESS_REFRESH seconds, so a reader can tell a
# live ledger from a stale one by the newest timestamp. The first cosignature stays in
# ``cosignatures``; renewals are append-only too (triggers in migration 0008).
cosignature_renewals = Table(
    "cosignature_renewals",
    metadata,
    Column("witness", String(255), primary_key=True),
    Column("key_id", String(8), primary_key=True),
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", BigInteger, primary_key=True, autoincrement=False),
    Column("line", Text, nullable=False),
)
Index("ix_cosignature_renewals_tree_size", cosignature_renewals.c.tree_size)

# Tables the database refuses to UPDATE or DELETE.
APPEND_ONLY_TABLES = (*LOG_TABLES, "cosignatures", "cosignature_renewals")
# Views of the public product pages (issue #6), as aggregate counts per day and lot with the
# lot's product and origin labels. Nothing about the viewer (IP address, user agent, cookie,
# referrer) has a column: privacy by construction. Not a log table: rows may be deleted.
engagement_daily = Table(
    "engagement_daily",
    metadata,
    Column("day", String(10), primary_key=True),  # UTC date, YYYY-MM-DD
    Column("lot", String(200), primary_key=True),
    Column("product", String(200), nullable=False),
    Column("country", String(200), nullable=False),  # the origins' countries, "IT, ES"
    Column("region", String(200), nullable=False),  # the origins' regions
    Column("views", BigInteger, nullable=False),
    Index("ix_engagement_daily_lot_day", "lot", "day"),
)

# --- the facts projection (docs/analytics.md), derived in each block's transaction ---------
# One table per kind of fact, keyed by the fact's position (the index of the entry that
# completes it, and its ordinal among that entry's facts); the columns after the common ones
# are ledger.facts.COLUMNS. ``entry_1`` to ``entry_3`` are the log indexes of the entries a
# fact names, which member visibility checks against ``entry_parties``. ``fact_lot_traces`` and
# ``fact_contract_progress`` are what the derivation remembers between blocks.

FACT_TABLES: dict[str, str] = {
    "shipment": "fact_shipments",
    "dwell": "fact_dwell",
    "delivery": "fact_deliveries",
    "contract": "fact_contracts",
    "payment": "fact_payments",
}

_FACT_TYPES = {"text": Text, "time": Text, "int": BigInteger, "float": Float, "bool": Boolean}


def _fact_table(kind: str, name: str) -> Table:
    from ..facts import COLUMNS

    table = Table(
        name,
        metadata,
        Column("idx", BigInteger, primary_key=True, autoincrement=False),
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("tree_size", BigInteger, nullable=False),
        Column("entries", Text, nullable=False),  # JSON list of entry ids
        # The log indexes of the (at most three) entries it names, for member visibility.
        Column("entry_1", BigInteger, nullable=False),
        Column("entry_2", BigInteger, nullable=True),
        Column("entry_3", BigInteger, nullable=True),
        Column("day", String(10), nullable=False, index=True),
        *(Column(col, _FACT_TYPES[kind_of](), nullable=True) for col, kind_of in COLUMNS[kind].items()),
    )
    return table


fact_tables: dict[str, Table] = {kind: _fact_table(kind, name) for kind, name in FACT_TABLES.items()}

fact_lot_traces = Table(
    "fact_lot_traces",
    metadata,
    Column("lot", String(200), primary_key=True),
    Column("created_by", String(64), nullable=False, index=True),
    Column("custodian", String(128), nullable=False),
    Column("arrived_at", String(32), nullable=False),
    Column("arrival", String(64), nullable=False),
    Column("arrival_index", BigInteger, nullable=False),
    Column("hops", Integer, nullable=False),
    Column("origins", Text, nullable=False),  # JSON list of [region, share]
    Column("certified", Float, nullable=False),
)

fact_contract_progress = Table(
    "fact_contract_progress",
    metadata,
    Column("contract", String(200), primary_key=True),
    Column("delivered", String(40), nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("received_at", String(32), nullable=True),
    Column("receipt", String(64), nullable=True),
    Column("receipt_index", BigInteger, nullable=True),
    Column("region", Text, nullable=True),
)

# --- webhooks (docs/webhooks.md): members' subscriptions and the delivery outbox -------------
# Not log tables: rows change as deliveries are attempted, and go when a member deletes the
# subscription. ``secret`` holds the signing secret sealed with the key file's key (never the
# secret itself: ledger/webhook_secrets.py). ``after_idx``/``after_seq`` is the subscription's
# cursor in the facts projection: every visible fact up to it is in the outbox already, so the
# worker fills the outbox by reading on from it, and nothing needs writing at sealing.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("member", String(64), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("types", String(100), nullable=False),  # fact kinds, comma-separated
    Column("description", String(200), nullable=True),
    Column("secret", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("after_idx", BigInteger, nullable=False),
    Column("after_seq", Integer, nullable=True),
    Column("status", String(16), nullable=False),  # active, or gone (the endpoint answered 410)
)

# One row per fact to deliver to a subscription, keyed by the fact's position; ``body`` is the
# exact bytes sent and signed on every attempt. Times are Unix milliseconds.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("subscription", String(40), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered
    Column("attempts", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_attempt_at", BigInteger, nullable=True),
    Column("last_result", String(200), nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_queue", "subscription", "status", "idx", "seq"),
)
