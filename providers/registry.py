"""Every provider, one line each: its name and the module that declares it (``SPEC`` at the module's end).

A module is imported the first time its declaration is asked for, so naming the providers costs nothing
and boto3 (~0.2 s at import) is loaded only when the AWS provider is used or described.
Adding a provider: a new module ending in ``SPEC = ProviderSpec(...)``, one line here, and its tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from lockzero.engine.security.crypto import random_secret
from lockzero.providers.spec import BuildContext, ProviderSpec

if TYPE_CHECKING:
    from lockzero.engine.security.outbound import OutboundPolicy
    from lockzero.providers.base import Provider

MODULES: dict[str, str] = {
    "redis_acl": "lockzero.providers.redis_acl",
    "postgres_role": "lockzero.providers.postgres_role",
    "mysql_user": "lockzero.providers.mysql_user",
    "aws_iam_access_key": "lockzero.providers.aws_iam",
    "generated": "lockzero.providers.generated",
    "http": "lockzero.providers.http_hooks",
}


class ProviderNotAvailable(Exception):
    pass


@cache
def spec_of(name: str) -> ProviderSpec:
    """The declaration of a listed provider (KeyError for any other name)."""
    spec = importlib.import_module(MODULES[name]).SPEC
    if not isinstance(spec, ProviderSpec) or spec.name != name:
        raise TypeError(f"{MODULES[name]}.SPEC must be the ProviderSpec named {name!r}")
    return spec


def lookup(name: str) -> ProviderSpec | None:
    """The declaration, or None for a name this build does not list (e.g. a secret another build registered)."""
    return spec_of(name) if name in MODULES else None


class _Specs(Mapping[str, ProviderSpec]):
    """Name → declaration, in MODULES order; a declaration's module is imported when it is read."""

    def __getitem__(self, name: str) -> ProviderSpec:
        return spec_of(name)

    def __iter__(self) -> Iterator[str]:
        return iter(MODULES)

    def __len__(self) -> int:
        return len(MODULES)

    def __contains__(self, name: object) -> bool:
        return name in MODULES


PROVIDERS: Mapping[str, ProviderSpec] = _Specs()


def build_provider(
    name: str, config: Mapping[str, Any], live_values: set[str] | None = None, *, outbound: OutboundPolicy | None = None
) -> Provider:
    """``live_values``: the values Lockzero's events say are live (for the providers it is the authority of);
    ``outbound`` limits where outbound calls (the http provider's hooks) may connect, public hosts only when None."""
    spec = lookup(name)
    if spec is None:
        raise ProviderNotAvailable(f"provider {name} cannot rotate in this build yet")
    live = live_values if live_values is not None else set()
    return spec.factory(config, BuildContext(live, outbound))


def mint_value(name: str, config: Mapping[str, Any]) -> str:
    """A fresh credential value for providers where Lockzero chooses it."""
    spec = lookup(name)
    return spec.mint(config) if spec is not None and spec.mint is not None else random_secret(40)
