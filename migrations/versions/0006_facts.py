"""The facts projection (docs/analytics.md): one table per kind of fact (each row with the
log indexes of the entries it names, for member visibility), and what the derivation
remembers between blocks (lot traces, contract progress).

Derived data, written in each block's transaction. A ledger sealed before this migration gets
its facts with ``filiera facts rebuild`` (``filiera verify`` names the missing ones until then).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
# Analytics follows the provenance (0004) and public page (0005) migrations.
down_revision = "0005"
branch_labels = None
depends_on = None

T, F, I, B = sa.Text, sa.Float, sa.BigInteger, sa.Boolean

# (table, index name, [(column, type)]) of each kind of fact; the columns of ledger.facts.COLUMNS
# as of this revision, after the common ones.
FACTS = [
    ("fact_shipments", [
        ("handoff", T), ("receipt", T), ("sender", T), ("recipient", T), ("customer", T),
        ("supplier", T), ("contract", T), ("product", T), ("region", T), ("lots", I),
        ("quantity", F), ("unit", T), ("dispatched_at", T), ("received_at", T),
        ("transit_hours", F), ("deliver_by", T), ("on_time", B), ("status", T), ("cosigned", B),
    ]),
    ("fact_dwell", [
        ("lot", T), ("site", T), ("product", T), ("region", T), ("arrived_at", T),
        ("departed_at", T), ("hours", F), ("arrival", T), ("handoff", T),
    ]),
    ("fact_deliveries", [
        ("lot", T), ("product", T), ("quantity", F), ("unit", T), ("customer", T), ("supplier", T),
        ("contract", T), ("region", T), ("origins", T), ("hops", I), ("certified", F),
        ("received_at", T),
    ]),
    ("fact_contracts", [
        ("contract", T), ("customer", T), ("supplier", T), ("product", T), ("region", T),
        ("ordered", F), ("delivered", F), ("unit", T), ("fulfilment", F), ("deliveries", I),
        ("status", T), ("deliver_by", T),
    ]),
    ("fact_payments", [
        ("payment", T), ("customer", T), ("supplier", T), ("contract", T), ("product", T),
        ("region", T), ("amount", F), ("currency", T), ("paid_at", T), ("received_at", T),
        ("days_to_pay", F),
    ]),
]


def upgrade() -> None:
    for name, columns in FACTS:
        op.create_table(
            name,
            sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("tree_size", sa.BigInteger(), nullable=False),
            sa.Column("entries", sa.Text(), nullable=False),
            sa.Column("entry_1", sa.BigInteger(), nullable=False),
            sa.Column("entry_2", sa.BigInteger(), nullable=True),
            sa.Column("entry_3", sa.BigInteger(), nullable=True),
            sa.Column("day", sa.String(10), nullable=False),
            *(sa.Column(col, kind(), nullable=True) for col, kind in columns),
            sa.PrimaryKeyConstraint("idx", "seq", name=f"pk_{name}"),
        )
        op.create_index(f"ix_{name}_day", name, ["day"])
    op.create_table(
        "fact_lot_traces",
        sa.Column("lot", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("custodian", sa.String(128), nullable=False),
        sa.Column("arrived_at", sa.String(32), nullable=False),
        sa.Column("arrival", sa.String(64), nullable=False),
        sa.Column("arrival_index", sa.BigInteger(), nullable=False),
        sa.Column("hops", sa.Integer(), nullable=False),
        sa.Column("origins", sa.Text(), nullable=False),
        sa.Column("certified", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("lot", name="pk_fact_lot_traces"),
    )
    op.create_index("ix_fact_lot_traces_created_by", "fact_lot_traces", ["created_by"])
    op.create_table(
        "fact_contract_progress",
        sa.Column("contract", sa.String(200), nullable=False),
        sa.Column("delivered", sa.String(40), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=True),
        sa.Column("receipt", sa.String(64), nullable=True),
        sa.Column("receipt_index", sa.BigInteger(), nullable=True),
        sa.Column("region", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("contract", name="pk_fact_contract_progress"),
    )


def downgrade() -> None:
    # Filiera migrates forward only (see 0002).
    raise RuntimeError("Filiera schemas are not downgraded; restore a backup instead")
