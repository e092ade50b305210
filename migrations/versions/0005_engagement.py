"""Consumer engagement: ``engagement_daily``, views of public product pages per day and lot.

Aggregate counts only (issue #6): no column can hold an IP address, user agent, cookie or
referrer. Not a log table, so no append-only trigger: operators delete old rows at will
(docs/privacy.md).

Revision ID: 0005
Revises: 0004 (the lead re-points this if the migrations are renumbered when merging)
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engagement_daily",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("lot", sa.String(200), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("country", sa.String(200), nullable=False),
        sa.Column("region", sa.String(200), nullable=False),
        sa.Column("views", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "lot", name="pk_engagement_daily"),
    )
    op.create_index("ix_engagement_daily_lot_day", "engagement_daily", ["lot", "day"])


def downgrade() -> None:
    # Filiera migrates forward only (see 0002).
    raise RuntimeError("Filiera schemas are not downgraded; restore a backup instead")
