"""Supply-chain projection: lots, lineage, handoffs, contracts, payments, attestations, the
parties of each entry (for member-only reads), and the nonces of signed read requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column("lot", sa.String(200), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("quantity", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("custodian", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_index", sa.BigInteger(), nullable=False),
        sa.Column("parents", sa.Text(), nullable=False),
        sa.Column("handoff", sa.String(64), nullable=True),
        sa.Column("updated_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lot", name="pk_lots"),
    )
    op.create_index("ix_lots_custodian", "lots", ["custodian"])
    op.create_table(
        "lot_lineage",
        sa.Column("child", sa.String(200), nullable=False),
        sa.Column("parent", sa.String(200), nullable=False),
        sa.Column("entry", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("child", "parent", name="pk_lot_lineage"),
    )
    op.create_index("ix_lot_lineage_parent", "lot_lineage", ["parent"])
    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(128), nullable=False),
        sa.Column("recipient", sa.String(128), nullable=False),
        sa.Column("lots", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dispatched_at", sa.String(32), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(200), nullable=True),
        sa.Column("received_at", sa.String(32), nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_handoffs"),
    )
    op.create_index("ix_handoffs_sender", "handoffs", ["sender"])
    op.create_index("ix_handoffs_recipient", "handoffs", ["recipient"])
    op.create_index("ix_handoffs_contract", "handoffs", ["contract"])
    op.create_table(
        "contracts",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("buyer", sa.String(128), nullable=False),
        sa.Column("seller", sa.String(128), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entry", sa.String(64), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("closed_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_contracts"),
    )
    op.create_index("ix_contracts_buyer", "contracts", ["buyer"])
    op.create_index("ix_contracts_seller", "contracts", ["seller"])
    op.create_table(
        "payments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("payer", sa.String(128), nullable=False),
        sa.Column("payee", sa.String(128), nullable=False),
        sa.Column("amount", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("paid_at", sa.String(32), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(200), nullable=True),
        sa.Column("confirmed_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
    )
    op.create_index("ix_payments_payer", "payments", ["payer"])
    op.create_index("ix_payments_payee", "payments", ["payee"])
    op.create_index("ix_payments_contract", "payments", ["contract"])
    op.create_table(
        "attestations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("claims", sa.Text(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attestations"),
    )
    op.create_index("ix_attestations_subject", "attestations", ["subject"])
    op.create_table(
        "entry_parties",
        sa.Column("participant", sa.String(128), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("participant", "idx", name="pk_entry_parties"),
    )
    op.create_table(
        "request_nonces",
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_request_nonces"),
    )
    op.create_index("ix_request_nonces_seen_at", "request_nonces", ["seen_at"])


def downgrade() -> None:
    # Filiera migrates forward only: a downgrade would leave a ledger that newer entries in its
    # log cannot be applied to.
    raise RuntimeError("Filiera schemas are not downgraded; restore a backup instead")
