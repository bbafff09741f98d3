"""Inbound authentication: who is calling. Credentials in, a Principal out."""

from mcp_gateway.auth.principal import Principal

__all__ = ["Principal"]
