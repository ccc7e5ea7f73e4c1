"""Domain errors: what went wrong, in a message safe to show an agent. ``name`` is a stable machine-readable kind;
the front ends number them (api/errors.py: JSON-RPC codes, CLI exit codes)."""

from __future__ import annotations

from typing import Any


class LockzeroError(Exception):
    name: str = "internal_error"

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}

    def __init_subclass__(cls, name: str | None = None, **kwargs: object) -> None:
        # The kinds below are one line each: ``class NotFound(LockzeroError, name="not_found")``.
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name


class InvalidInput(LockzeroError, name="invalid_params"): ...


class NotFound(LockzeroError, name="not_found"): ...


class Forbidden(LockzeroError, name="forbidden"): ...


class Conflict(LockzeroError, name="conflict"): ...


class Unavailable(LockzeroError, name="unavailable"): ...


class ApprovalRequired(LockzeroError, name="approval_required"): ...


class RateLimited(LockzeroError, name="rate_limited"): ...


class PayloadTooLarge(LockzeroError, name="payload_too_large"): ...
