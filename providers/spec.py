"""The shape of a provider's declaration: each provider module ends with one ``SPEC = ProviderSpec(...)``.

Everything the engine and the CLI know about a provider comes from that declaration (through registry.py):
what ``--config`` takes, how to build the provider, what it can do, which account it manages and what its
admin credential must be allowed to do. This module imports no driver, so reading declarations stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import msgspec

from lockzero.providers.base import Provider

if TYPE_CHECKING:  # outbound imports httpx: declarations are read without it
    from lockzero.engine.security.outbound import OutboundPolicy


class ProviderConfigError(ValueError):
    """The message names keys, never values (config holds admin credentials)."""


class BuildContext(msgspec.Struct, frozen=True):
    """What the engine hands a factory beside the (decrypted) config."""

    #: Values Lockzero's events say are live (only the providers Lockzero is the authority of use it).
    live: set[str]
    #: Where outbound calls may connect; None: public hosts only.
    outbound: OutboundPolicy | None = None


#: How the first version of a secret comes to be when no value is given with ``--value-stdin``:
#: ``minted`` Lockzero chooses it offline; ``provider`` the provider's create issues it; ``imported`` only an
#: imported value will do (the service issues credentials Lockzero cannot create out of nothing).
FirstCredential = Literal["minted", "provider", "imported"]


class ProviderSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    #: One line: what the provider rotates and how (`lockzero provider list`).
    summary: str
    #: ``--config`` keys a registration must give, and what each means (in the order people read them).
    required: dict[str, str]
    #: Keys it may give.
    optional: dict[str, str]
    #: What the admin credential in the config must be allowed to do.
    permissions: str
    factory: Callable[[Mapping[str, Any], BuildContext], Provider]
    first_credential: FirstCredential = "provider"
    #: Config key naming the credential's user (pull responses include it as ``username``).
    username_key: str | None = None
    #: Values the ``strategy`` key takes; empty: the provider has no such key.
    strategies: frozenset[str] = frozenset()
    #: The account a config manages, as a comparable string without a credential; two secrets on one account
    #: would retire each other's credentials. None: the provider has no shared account to collide on.
    account: Callable[[Mapping[str, Any]], str] | None = None
    #: A fresh credential value for a config; None: 40 random characters.
    mint: Callable[[Mapping[str, Any]], str] | None = None
    #: Config keys holding URLs Lockzero connects to: checked like webhook targets (engine/security/outbound.py).
    outbound_url_keys: tuple[str, ...] = ()
    #: Further checks of a config whose keys and types are right; raises ProviderConfigError.
    check: Callable[[Mapping[str, Any]], None] | None = None
    #: Lockzero itself decides which values work (no external system): the live set comes from its events,
    #: and an imported value is valid by being registered.
    lockzero_is_authority: bool = False
    #: The provider reports who still uses a credential it no longer hands out (providers.base.SignalSource):
    #: the usage-anomaly watcher polls secrets of this provider.
    usage_signals: bool = False

    @property
    def keys(self) -> dict[str, str]:
        """Every config key and its meaning, required ones first."""
        return {**self.required, **self.optional}


def server_of(url: str) -> str:
    """``host:port`` of a connection URL, for comparing accounts (no user, no password)."""
    parts = urlsplit(url)
    return f"{(parts.hostname or 'localhost').lower()}:{parts.port or ''}"
