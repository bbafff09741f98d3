"""The web console at `/ui`: pages for operators over the ledger, the catalog, models, identities,
limits and budgets, behind the admin token (ui/app.py). Templates and static files ship in the
package; charts are server-rendered SVG, so nothing is built with Node at install time."""

from mcp_gateway.ui.app import Services, console_routes

__all__ = ["Services", "console_routes"]
