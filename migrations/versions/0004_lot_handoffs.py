"""Provenance: ``lot_handoffs``, the handoffs that moved each lot, in log order.

A provenance query reads a lot's custody chain by the lot's key; the ``handoffs`` table keeps
each handoff's lots as a JSON list, which no index can serve. Existing handoffs are copied in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "lot_handoffs",
        sa.Column("lot", sa.String(200), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("handoff", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("lot", "idx", name="pk_lot_handoffs"),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, lots, idx FROM handoffs ORDER BY idx"))
    batch: list[dict[str, object]] = []
    for row in rows:
        batch.extend({"lot": lot, "idx": row.idx, "handoff": row.id} for lot in json.loads(row.lots))
        if len(batch) >= 5000:
            op.bulk_insert(table, batch)
            batch = []
    if batch:
        op.bulk_insert(table, batch)


def downgrade() -> None:
    # Filiera migrates forward only (see 0002).
    raise RuntimeError("Filiera schemas are not downgraded; restore a backup instead")
