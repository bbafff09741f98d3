"""Persistent state in one database (SQLite by default, or PostgreSQL): see database.py and schema.py."""
