"""Domain errors. Each maps to one SPEC error code and carries a message safe to show an agent."""

from __future__ import annotations

from typing import Any


class LockzeroError(Exception):
    code: int = -32603
    name: str = "internal_error"

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}


class InvalidInput(LockzeroError):
    code, name = -32602, "invalid_params"


class NotFound(LockzeroError):
    code, name = -32010, "not_found"


class Forbidden(LockzeroError):
    code, name = -32011, "forbidden"


class Conflict(LockzeroError):
    code, name = -32012, "conflict"


class Unavailable(LockzeroError):
    code, name = -32016, "unavailable"


class ApprovalRequired(LockzeroError):
    code, name = -32013, "approval_required"


class RateLimited(LockzeroError):
    code, name = -32014, "rate_limited"


class PayloadTooLarge(LockzeroError):
    code, name = -32015, "payload_too_large"
