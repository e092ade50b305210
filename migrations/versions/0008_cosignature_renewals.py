"""Renewed witness cosignatures (TESTPLAN T11): while the ledger is idle, its witnesses cosign
the same checkpoint again every FILIERA_WITNESS_REFRESH seconds, and each renewal is kept here,
append-only like the first cosignatures (0003).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "cosignature_renewals"
# The primary key, as a condition on the row being inserted (NEW); see 0001's _SQLITE_KEYS.
_SQLITE_KEY = (
    "witness = NEW.witness AND key_id = NEW.key_id AND tree_size = NEW.tree_size "
    "AND timestamp = NEW.timestamp"
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("timestamp", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("witness", "key_id", "tree_size", "timestamp", name="pk_cosignature_renewals"),
    )
    op.create_index("ix_cosignature_renewals_tree_size", TABLE, ["tree_size"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, 'filiera: {TABLE} is append-only'); END"
            )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_replace BEFORE INSERT ON {TABLE} "
            f"WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE {_SQLITE_KEY}) "
            f"BEGIN SELECT RAISE(ABORT, 'filiera: {TABLE} is append-only'); END"
        )
    elif dialect == "postgresql":
        # filiera_append_only() was created by 0001.
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION filiera_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION filiera_append_only()"
        )
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database dialect {dialect}")


def downgrade() -> None:
    raise RuntimeError("Filiera schemas are not downgraded; restore a backup instead")
