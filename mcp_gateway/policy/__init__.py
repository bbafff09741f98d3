"""Who may see and call what: policies evaluated per principal and tool."""
