"""Initial schema: the append-only log, the state projection and the intake queue.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LOG_TABLES = ("entries", "blocks", "merkle_nodes")

# Every unique key of each log table, as a condition on the row being inserted (NEW).
_SQLITE_KEYS = {
    "entries": "idx = NEW.idx OR id = NEW.id OR (author = NEW.author AND nonce = NEW.nonce)",
    "blocks": "height = NEW.height OR hash = NEW.hash OR tree_size = NEW.tree_size",
    "merkle_nodes": "level = NEW.level AND idx = NEW.idx",
}


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("height", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
        sa.Column("leaf_data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name="pk_entries"),
        sa.UniqueConstraint("id", name="uq_entries_id"),
        sa.UniqueConstraint("author", "nonce", name="uq_entries_author_nonce"),
    )
    op.create_index("ix_entries_height", "entries", ["height"])
    op.create_table(
        "blocks",
        sa.Column("height", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("first_index", sa.BigInteger(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(88), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("height", name="pk_blocks"),
        sa.UniqueConstraint("hash", name="uq_blocks_hash"),
        sa.UniqueConstraint("tree_size", name="uq_blocks_tree_size"),
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_merkle_nodes"),
    )
    op.create_table(
        "pending",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("leaf_data", sa.Text(), nullable=False),
        sa.Column("verified", sa.Text(), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_pending"),
        sa.UniqueConstraint("id", name="uq_pending_id"),
    )
    op.create_index("ix_pending_status_seq", "pending", ["status", "seq"])
    op.create_table(
        "participants",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("registered_index", sa.BigInteger(), nullable=False),
        sa.Column("registered_height", sa.BigInteger(), nullable=False),
        sa.Column("updated_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_participants"),
    )
    op.create_table(
        "participant_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("participant", sa.String(128), nullable=False),
        sa.Column("public_key", sa.String(44), nullable=False),
        sa.Column("added_index", sa.BigInteger(), nullable=False),
        sa.Column("added_height", sa.BigInteger(), nullable=False),
        sa.Column("revoked_index", sa.BigInteger(), nullable=True),
        sa.Column("revoked_height", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_participant_keys"),
    )
    op.create_index("ix_participant_keys_participant", "participant_keys", ["participant"])
    _append_only_triggers()


def _append_only_triggers() -> None:
    """The database itself refuses to rewrite history: UPDATE, DELETE (and TRUNCATE) fail."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in LOG_TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'filiera: {table} is append-only'); END"
                )
            # INSERT OR REPLACE deletes the row it collides with without firing DELETE
            # triggers (unless recursive_triggers is on, which a sqlite3 shell does not set),
            # so a replaced row would rewrite history: refuse any insert over an existing key.
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {_SQLITE_KEYS[table]}) "
                f"BEGIN SELECT RAISE(ABORT, 'filiera: {table} is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION filiera_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION 'filiera: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
            END $$
            """
        )
        for table in LOG_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION filiera_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION filiera_append_only()"
            )
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database dialect {dialect}")


def downgrade() -> None:
    # The log is permanent: there is no going back from the first revision.
    raise RuntimeError("the initial schema cannot be downgraded; the log is append-only")
