"""Front doors: the MCP server over stdio and Streamable HTTP, and the admin API."""
