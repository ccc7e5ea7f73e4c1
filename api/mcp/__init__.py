"""MCP over Streamable HTTP (both protocol eras) and direct JSON-RPC calls, on one endpoint."""
