"""Sealed columns are declared in the schema (store/schema.py), no longer in a table.

`sealed_columns` held, per table, an SQLite expression giving each row's id; the row id is now
the primary key's values joined by NUL (the same ids the gateway's tables used), which works on
every backend. It held declarations only, no sealed value.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("sealed_columns")


def downgrade() -> None:
    op.create_table(
        "sealed_columns",
        sa.Column("table_name", sa.Text, primary_key=True),
        sa.Column("id_sql", sa.Text, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
    )
