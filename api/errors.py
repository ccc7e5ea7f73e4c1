"""Domain errors as the API shows them: the JSON-RPC codes of SPEC §3 and the CLI's exit codes.

The engine raises domain errors that know nothing of JSON-RPC; this is the one place that numbers them.
"""

from __future__ import annotations

from lockzero.api.mcp.jsonrpc import INTERNAL_ERROR
from lockzero.engine.domain.errors import (
    ApprovalRequired,
    Conflict,
    Forbidden,
    InvalidInput,
    LockzeroError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
)

RPC_CODES: dict[type[LockzeroError], int] = {
    InvalidInput: -32602,
    NotFound: -32010,
    Forbidden: -32011,
    Conflict: -32012,
    ApprovalRequired: -32013,
    RateLimited: -32014,
    PayloadTooLarge: -32015,
    Unavailable: -32016,
}

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def rpc_code(exc: LockzeroError) -> int:
    """The code of the nearest mapped class (a subclass such as a bad service token answers as Forbidden)."""
    for cls in type(exc).__mro__:
        if cls in RPC_CODES:
            return RPC_CODES[cls]
    return INTERNAL_ERROR


def exit_code(exc: LockzeroError) -> int:
    return EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_FAILURE
