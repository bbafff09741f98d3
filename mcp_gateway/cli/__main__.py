"""`python -m mcp_gateway.cli`: the `mcp-gateway` command."""

import sys

from mcp_gateway.cli import main

sys.exit(main())
