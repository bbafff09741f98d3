"""The store's tables, declared once for every backend (SQLite, PostgreSQL).

This is the schema at the newest migration (store/migrations/versions/): a change here needs a
new revision there too (tests/test_store_migrations.py compares the two). Times are epoch
seconds as doubles. Columns holding values sealed by the vault carry `info={"sealed": True}`:
their values are bound to (table, row id, column), the row id being the primary key's values
joined by NUL, and master-key rotation re-encrypts every such column (see `sealed_tables`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, ForeignKey, Index, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()

SEALED = {"sealed": True}

# Revision counters: each area bumps its own in every write transaction (Database.transaction).
meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Integer, nullable=False),
)

apis = Table(
    "apis",
    metadata,
    Column("name", Text, primary_key=True),
    Column("config", Text, nullable=False),
    Column("spec_text", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("name", Text, primary_key=True),
    Column("config", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

consumers = Table(
    "consumers",
    metadata,
    Column("name", Text, primary_key=True),
    Column("team", Text),
    Column("org", Text),
    Column("disabled", Integer, nullable=False, server_default="0"),
    Column("created_at", Double, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("consumer", Text, ForeignKey("consumers.name", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("description", Text),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double),
    Column("revoked_at", Double),
    Index("api_keys_consumer", "consumer"),
)

policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subject_kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("effect", Text, nullable=False),
    Column("selector", Text, nullable=False),
    Column("description", Text),
    Column("created_at", Double, nullable=False),
    sqlite_autoincrement=True,  # ids are never reused: a deleted policy's id names no other
)

secrets = Table(
    "secrets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False, info=SEALED),
    Column("description", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

oauth_connections = Table(
    "oauth_connections",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("api", Text, primary_key=True),
    Column("access_token", LargeBinary, nullable=False, info=SEALED),
    Column("refresh_token", LargeBinary, info=SEALED),
    Column("expires_at", Double),
    Column("issued_at", Double, nullable=False),
    Column("scope", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

oauth_pending = Table(
    "oauth_pending",
    metadata,
    Column("key_hash", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("consumer", Text, nullable=False),
    Column("api", Text, nullable=False),
    Column("verifier", LargeBinary, info=SEALED),
    Column("expires_at", Double, nullable=False),
)

drift_tools = Table(
    "drift_tools",
    metadata,
    Column("api", Text, primary_key=True),
    Column("tool", Text, primary_key=True),
    Column("checked", Integer, nullable=False, server_default="0"),
    Column("dropped", Integer, nullable=False, server_default="0"),
    Column("last_checked", Double),
)

drift_findings = Table(
    "drift_findings",
    metadata,
    Column("api", Text, primary_key=True),
    Column("tool", Text, primary_key=True),
    Column("status", Integer, primary_key=True, autoincrement=False),
    Column("kind", Text, primary_key=True),
    Column("path", Text, primary_key=True),
    Column("message", Text, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
)


# The ledger: one row per tool or model call (metering/records.py's CallRecord). Costs are
# integer picodollars (1e-12 USD): exact on every backend, summed exactly by SQL. `hour` is
# `at` // 3600, so that grouping by hour or day is integer arithmetic on every backend.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite's rowid alias must be INTEGER

ledger = Table(
    "ledger",
    metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("hour", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("consumer", Text),
    Column("team", Text),
    Column("org", Text),
    Column("key_id", Text),
    Column("api", Text),
    Column("tool", Text),
    Column("model", Text),
    Column("provider", Text),
    Column("provider_model", Text),
    Column("deployment", Text),
    Column("status", Integer, nullable=False),
    Column("error", Integer, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("ttft_ms", Double),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("estimated", Integer, nullable=False),
    Column("cost_pusd", BigInteger),
    Column("request_bytes", BigInteger, nullable=False),
    Column("response_bytes", BigInteger, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("fallbacks", Integer, nullable=False),
    Column("streamed", Integer, nullable=False),
    Column("endpoint", Text),
    Column("trace_id", Text),
    Index("ledger_at", "at"),
    Index("ledger_consumer_hour", "consumer", "hour"),
    Index("ledger_key_hour", "key_id", "hour"),
)


# Hourly totals of the ledger, kept after raw rows are pruned (store/ledger.py rolls them up).
# Absent names are '' here (a primary key holds no NULL).
ROLLUP_KEYS = ("kind", "consumer", "team", "org", "key_id", "api", "tool", "model", "provider")
ROLLUP_SUMS = ("calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "reasoning_tokens", "estimated", "cost_pusd", "latency_ms")  # fmt: skip

ledger_hourly = Table(
    "ledger_hourly",
    metadata,
    Column("hour", Integer, primary_key=True, autoincrement=False),
    *(Column(name, Text, primary_key=True) for name in ROLLUP_KEYS),
    *(Column(name, BigInteger, nullable=False) for name in ROLLUP_SUMS[:-1]),
    Column("latency_ms", Double, nullable=False),  # the sum, for means
    Column("last_at", Double, nullable=False),  # the hour's last call
    Index("ledger_hourly_consumer", "consumer", "hour"),
)


def _rules_table(name: str) -> Table:
    """Rules of one kind added at run time (CLI, admin API), beside the config file's."""
    return Table(
        name,
        metadata,
        Column("name", Text, primary_key=True),
        Column("rule", Text, nullable=False),  # the rule (LimitRule, BudgetRule) as JSON
        Column("created_at", Double, nullable=False),
    )


limit_rules = _rules_table("limit_rules")
budget_rules = _rules_table("budget_rules")


# Console sessions ended by logging out (their signed cookies would otherwise be valid on every
# replica until they expire); rows go once they have expired.
console_logouts = Table(
    "console_logouts",
    metadata,
    Column("session_id", Text, primary_key=True),
    Column("expires_at", Double, nullable=False),
)


def sealed_tables() -> list[tuple[Table, tuple[Column, ...]]]:
    """Every table with sealed columns and those columns, by table name."""
    found = []
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        columns = tuple(c for c in table.columns if c.info.get("sealed"))
        if columns:
            found.append((table, columns))
    return found


def row_id(*key: object) -> str:
    """The row id sealed values are bound to: the primary key's values joined by NUL."""
    return "\0".join(str(part) for part in key)
