"""Hourly totals of the ledger, kept after its raw rows are pruned.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEYS = ("kind", "consumer", "team", "org", "key_id", "api", "tool", "model", "provider")
SUMS = ("calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "reasoning_tokens", "estimated", "cost_pusd")  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "ledger_hourly",
        sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
        *(sa.Column(name, sa.Text, primary_key=True) for name in KEYS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in SUMS),
        sa.Column("latency_ms", sa.Double, nullable=False),
        sa.Column("last_at", sa.Double, nullable=False),
    )
    op.create_index("ledger_hourly_consumer", "ledger_hourly", ["consumer", "hour"])


def downgrade() -> None:
    op.drop_table("ledger_hourly")
