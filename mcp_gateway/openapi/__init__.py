"""Ingest: OpenAPI / Swagger documents in, tool definitions out."""
