"""The one interface every provider implements, and the values it passes around.

A provider talks to one real system. Every call is idempotent: the saga may repeat a call after a
crash (it records intent before and outcome after), so "add this password" twice must leave one
password, and "retire" an already retired credential must succeed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import msgspec


class Credential(msgspec.Struct, frozen=True):
    """One version's credential. ``value`` is secret: never log, never put in an event or an error."""

    value: str
    username: str | None = None
    #: Provider-side handle that is not secret (an access key id, an alternating role name).
    handle: str | None = None

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, handle={self.handle!r}, value=<redacted>)"


class Usage(msgspec.Struct, frozen=True):
    source: str
    detail: str
    at: datetime | None = None


class ProviderError(Exception):
    """A provider call failed. The message must name the operation, never a credential."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Provider(Protocol):
    name: str
    #: Two credentials can be live at once (zero-downtime switch).
    overlapping: bool

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        """Make ``new`` work beside ``previous``; returns it with any provider handle filled in."""
        ...

    async def validate(self, credential: Credential) -> bool:
        """True when the credential authenticates right now."""
        ...

    async def retire(self, credential: Credential) -> None:
        """Stop the credential working, restorably (rollback may bring it back within the grace period)."""
        ...

    async def restore(self, credential: Credential) -> None:
        """Make a retired credential work again."""
        ...

    async def revoke(self, credentials: list[Credential]) -> None:
        """Stop every given credential working now, for good, and cut live sessions where possible."""
        ...

    async def discard(self, credential: Credential) -> None:
        """Compensation of create: remove a credential that never became current."""
        ...

    async def observed_usage(self) -> list[Usage]:
        """Who uses the credential right now, as the provider can tell."""
        ...

    async def close(self) -> None: ...


class ProviderFactory(Protocol):
    def __call__(self, config: Mapping[str, Any]) -> Provider: ...
