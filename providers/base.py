"""The one interface every provider implements, and the values it passes around.

A provider talks to one real system. Every call is idempotent: the saga may repeat a call after a
crash (it records intent before and outcome after), so "add this password" twice must leave one
password, and "retire" an already retired credential must succeed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

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


class Signal(msgspec.Struct, frozen=True):
    """A sign that a credential Lockzero no longer hands out is still presented or still connected.
    Names users/roles and client addresses only, never a credential."""

    kind: Literal["session", "auth_failure"]
    #: The user or role the sessions run as, or the one authentication was tried for.
    principal: str
    detail: str
    #: Stable at the provider for the same observation (e.g. principal + client host), so polls repeat it.
    key: str
    at: datetime | None = None


@runtime_checkable
class SignalSource(Protocol):
    """A provider that can tell the usage-anomaly watcher what it sees (optional beside ``Provider``)."""

    async def usage_signals(self, retired: Sequence[str], since: datetime | None) -> list[Signal]:
        """Sessions still running as one of the ``retired`` principals; with ``since`` (when the current
        version became current), refused logins of the managed account after it."""
        ...


Verdict = Literal["accepted", "refused", "unknown"]


class Auth(msgspec.Struct, frozen=True):
    """What the provider answered when the credential tried to authenticate.

    ``refused`` only when the system refused *authentication* itself (a protocol-level answer such as
    Redis WRONGPASS, PostgreSQL SQLSTATE 28P01/28000, MySQL error 1045, an unknown IAM key). Anything
    that did not let us see that answer (a timeout, an unreachable server, a permission error before
    authentication, a local AWS that does not enforce key status) is ``unknown``: never read as success.
    ``reason`` is one short line naming the protocol answer, never a credential.
    """

    verdict: Verdict
    reason: str

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"

    @property
    def refused(self) -> bool:
        return self.verdict == "refused"


def accepted(reason: str) -> Auth:
    return Auth("accepted", reason)


def refused(reason: str) -> Auth:
    return Auth("refused", reason)


def unknown(reason: str) -> Auth:
    return Auth("unknown", reason)


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

    async def authenticate(self, credential: Credential) -> Auth:
        """Try the credential at the provider right now. Never raises for an unreachable system: that is
        ``unknown``, with the reason."""
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
