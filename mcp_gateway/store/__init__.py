"""Persistent state: API registrations (SQLite by default)."""
