"""Database schema: the log tables (append-only), the state projection and the intake queue.

Alembic (``migrations/``) is how every database gets this schema; these ``Table`` objects are
what the code queries, and a test checks the two stay in step.

Log tables, which the database itself refuses to UPDATE or DELETE (triggers installed by the
migration): ``entries``, ``blocks``, ``merkle_nodes``. Everything else is derived from them
(``participants``, ``participant_keys``) or transient (``pending``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
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
    "LOG_TABLES",
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
