"""The ledger: one row per tool or model call.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text, double, integer, big = sa.Text, sa.Double, sa.Integer, sa.BigInteger
    op.create_table(
        "ledger",
        sa.Column("id", big().with_variant(integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", double, nullable=False),
        sa.Column("hour", integer, nullable=False),
        sa.Column("kind", text, nullable=False),
        *(sa.Column(name, text) for name in ("consumer", "team", "org", "key_id", "api", "tool", "model")),
        *(sa.Column(name, text) for name in ("provider", "provider_model", "deployment")),
        sa.Column("status", integer, nullable=False),
        sa.Column("error", integer, nullable=False),
        sa.Column("latency_ms", double, nullable=False),
        sa.Column("ttft_ms", double),
        *(
            sa.Column(f"{name}_tokens", big, nullable=False)
            for name in ("input", "output", "cache_read", "cache_write", "reasoning")
        ),
        sa.Column("estimated", integer, nullable=False),
        sa.Column("cost_pusd", big),
        sa.Column("request_bytes", big, nullable=False),
        sa.Column("response_bytes", big, nullable=False),
        sa.Column("retries", integer, nullable=False),
        sa.Column("fallbacks", integer, nullable=False),
        sa.Column("streamed", integer, nullable=False),
        sa.Column("endpoint", text),
        sa.Column("trace_id", text),
    )
    op.create_index("ledger_at", "ledger", ["at"])
    op.create_index("ledger_consumer_hour", "ledger", ["consumer", "hour"])
    op.create_index("ledger_key_hour", "ledger", ["key_id", "hour"])


def downgrade() -> None:
    op.drop_table("ledger")
