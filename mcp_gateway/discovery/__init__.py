"""Discovery: find tools by what they do, for catalogs too large to list to an agent."""
