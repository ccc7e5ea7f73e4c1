"""The MCP tools: typed arguments and results (msgspec), one registry, schemas generated from the types."""
