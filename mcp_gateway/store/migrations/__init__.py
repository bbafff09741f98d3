"""Alembic migrations of the store's schema (see store/upgrade.py)."""
