"""Checking a ``--config`` against its provider's declaration, and describing providers to people.

Everything here reads the declarations through registry.py; no provider is named in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockzero.providers.registry import MODULES, PROVIDERS, mint_value, spec_of
from lockzero.providers.spec import ProviderConfigError

__all__ = [
    "PROVIDERS",
    "ProviderConfigError",
    "describe_provider",
    "issue_initial_value",
    "username_of",
    "validate_config",
]


def describe_provider(provider: str) -> str:
    """Plain text for people: what the provider does, its --config keys, the admin permissions it needs."""
    spec = spec_of(provider)
    width = max(len(k) for k in spec.keys)
    lines = [f"{provider}: {spec.summary}", "", "--config keys:"]
    for key, meaning in spec.keys.items():
        need = "required" if key in spec.required else "optional"
        lines.append(f"  {key.ljust(width)}  {need}  {meaning}")
    lines += ["", f"admin permissions: {spec.permissions}"]
    return "\n".join(lines)


def validate_config(provider: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if provider not in MODULES:
        raise ProviderConfigError(f"unknown provider {provider!r}; one of: {', '.join(sorted(MODULES))}")
    spec = spec_of(provider)
    if not isinstance(config, Mapping):
        raise ProviderConfigError("--config must be a JSON object")
    missing = sorted(spec.required.keys() - config.keys())
    if missing:
        raise ProviderConfigError(f"provider {provider} needs config key(s): {', '.join(missing)}")
    unknown = sorted(config.keys() - spec.keys.keys())
    if unknown:
        raise ProviderConfigError(f"provider {provider} does not take config key(s): {', '.join(unknown)}")
    for key, value in config.items():
        if not isinstance(value, str | int | bool) or isinstance(value, float):
            raise ProviderConfigError(f"config key {key!r} must be a string, integer or boolean")
    strategy = config.get("strategy")
    if strategy is not None and strategy not in spec.strategies:
        raise ProviderConfigError(f"strategy must be one of: {', '.join(sorted(spec.strategies))}")
    if spec.outbound_url_keys:
        _check_urls(config, spec.outbound_url_keys)
    if spec.check is not None:
        spec.check(config)
    return dict(config)


def _check_urls(config: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    # Imported here: outbound pulls in httpx, which describing providers does not need.
    from lockzero.engine.security.outbound import OutboundPolicy, OutboundRefused

    for key in keys:
        if key in config:
            try:
                OutboundPolicy().check_syntax(str(config[key]), f"config key {key!r}")
            except OutboundRefused as exc:
                raise ProviderConfigError(str(exc)) from None


def username_of(provider: str, config: Mapping[str, Any]) -> str | None:
    key = spec_of(provider).username_key
    return str(config[key]) if key and key in config else None


def issue_initial_value(provider: str, config: Mapping[str, Any]) -> str | None:
    """A first credential for providers that can mint one offline; None means: the provider issues it, or it
    must be imported (--value-stdin)."""
    return mint_value(provider, config) if spec_of(provider).first_credential == "minted" else None
