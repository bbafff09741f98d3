"""mcp-gateway: REST APIs described by OpenAPI, served as MCP tools."""

__version__ = "0.1.0"
