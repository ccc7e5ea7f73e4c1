"""Protocol versions and the per-request `_meta` keys of the 2026-07-28 era."""

from __future__ import annotations

MODERN = "2026-07-28"
#: Handshake era, newest first: initialize echoes the client's if listed, else offers the first.
HANDSHAKE = ("2025-11-25", "2025-06-18", "2025-03-26")
#: Assumed when a request carries no MCP-Protocol-Version header (spec: "SHOULD assume 2025-03-26").
DEFAULT_HANDSHAKE = "2025-03-26"
SUPPORTED = (MODERN, *HANDSHAKE)
BATCH_VERSIONS = ("2025-03-26",)

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"


def negotiate(requested: object) -> str:
    return requested if isinstance(requested, str) and requested in HANDSHAKE else HANDSHAKE[0]
