"""The schema as the store created it before migrations (CREATE TABLE IF NOT EXISTS per area).

A database made then has some or all of these tables and no `alembic_version`: this revision
keeps every table it finds (rows and all) and creates only the missing ones, which adopts it.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list[sa.SchemaItem], dict[str, object]]]:
    text, double, integer, blob = sa.Text, sa.Double, sa.Integer, sa.LargeBinary
    return [
        ("meta", [sa.Column("key", text, primary_key=True), sa.Column("value", integer, nullable=False)], {}),
        (
            "apis",
            [
                sa.Column("name", text, primary_key=True),
                sa.Column("config", text, nullable=False),
                sa.Column("spec_text", text),
                sa.Column("created_at", double, nullable=False),
                sa.Column("updated_at", double, nullable=False),
            ],
            {},
        ),
        (
            "models",
            [
                sa.Column("name", text, primary_key=True),
                sa.Column("config", text, nullable=False),
                sa.Column("created_at", double, nullable=False),
                sa.Column("updated_at", double, nullable=False),
            ],
            {},
        ),
        (
            "consumers",
            [
                sa.Column("name", text, primary_key=True),
                sa.Column("team", text),
                sa.Column("org", text),
                sa.Column("disabled", integer, nullable=False, server_default="0"),
                sa.Column("created_at", double, nullable=False),
            ],
            {},
        ),
        (
            "api_keys",
            [
                sa.Column("key_id", text, primary_key=True),
                sa.Column("consumer", text, sa.ForeignKey("consumers.name", ondelete="CASCADE"), nullable=False),
                sa.Column("secret_hash", text, nullable=False),
                sa.Column("description", text),
                sa.Column("created_at", double, nullable=False),
                sa.Column("expires_at", double),
                sa.Column("revoked_at", double),
            ],
            {},
        ),
        (
            "policies",
            [
                sa.Column("id", integer, primary_key=True),
                sa.Column("subject_kind", text, nullable=False),
                sa.Column("subject", text, nullable=False),
                sa.Column("effect", text, nullable=False),
                sa.Column("selector", text, nullable=False),
                sa.Column("description", text),
                sa.Column("created_at", double, nullable=False),
            ],
            {"sqlite_autoincrement": True},
        ),
        (
            "secrets",
            [
                sa.Column("name", text, primary_key=True),
                sa.Column("value", blob, nullable=False),
                sa.Column("description", text),
                sa.Column("created_at", double, nullable=False),
                sa.Column("updated_at", double, nullable=False),
            ],
            {},
        ),
        (
            "sealed_columns",
            [
                sa.Column("table_name", text, primary_key=True),
                sa.Column("id_sql", text, nullable=False),
                sa.Column("columns", text, nullable=False),
            ],
            {},
        ),
        (
            "oauth_connections",
            [
                sa.Column("consumer", text, primary_key=True),
                sa.Column("api", text, primary_key=True),
                sa.Column("access_token", blob, nullable=False),
                sa.Column("refresh_token", blob),
                sa.Column("expires_at", double),
                sa.Column("issued_at", double, nullable=False),
                sa.Column("scope", text),
                sa.Column("created_at", double, nullable=False),
                sa.Column("updated_at", double, nullable=False),
            ],
            {},
        ),
        (
            "oauth_pending",
            [
                sa.Column("key_hash", text, primary_key=True),
                sa.Column("kind", text, nullable=False),
                sa.Column("consumer", text, nullable=False),
                sa.Column("api", text, nullable=False),
                sa.Column("verifier", blob),
                sa.Column("expires_at", double, nullable=False),
            ],
            {},
        ),
        (
            "drift_tools",
            [
                sa.Column("api", text, primary_key=True),
                sa.Column("tool", text, primary_key=True),
                sa.Column("checked", integer, nullable=False, server_default="0"),
                sa.Column("dropped", integer, nullable=False, server_default="0"),
                sa.Column("last_checked", double),
            ],
            {},
        ),
        (
            "drift_findings",
            [
                sa.Column("api", text, primary_key=True),
                sa.Column("tool", text, primary_key=True),
                sa.Column("status", integer, primary_key=True, autoincrement=False),
                sa.Column("kind", text, primary_key=True),
                sa.Column("path", text, primary_key=True),
                sa.Column("message", text, primary_key=True),
                sa.Column("count", integer, nullable=False),
                sa.Column("first_seen", double, nullable=False),
                sa.Column("last_seen", double, nullable=False),
            ],
            {},
        ),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns, options in _tables():
        if name not in existing:
            op.create_table(name, *columns, **options)
            if name == "api_keys":
                op.create_index("api_keys_consumer", "api_keys", ["consumer"])


def downgrade() -> None:
    for name, _columns, _options in reversed(_tables()):
        op.drop_table(name)
