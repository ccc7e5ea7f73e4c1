"""What each provider accepts in ``--config`` and whether it can issue a first credential.

Validation only; the provider modules that talk to the real systems live beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.crypto import random_secret
from engine.outbound import OutboundPolicy, OutboundRefused

#: The http provider's hook URLs: outbound targets, checked like webhooks (engine/outbound.py).
HTTP_HOOK_URL_KEYS = ("create_url", "validate_url", "retire_url", "revoke_url")


class ProviderConfigError(ValueError):
    """The message names keys, never values (config holds admin credentials)."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    required: frozenset[str]
    optional: frozenset[str]
    #: Config key naming the credential's user (pull responses include it as ``username``).
    username_key: str | None = None
    strategies: frozenset[str] = frozenset()


PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec("redis_acl", frozenset({"url", "username"}), frozenset({"kill_clients", "acl_rules"}), "username"),
        ProviderSpec(
            "postgres_role",
            frozenset({"dsn", "role"}),
            frozenset({"strategy", "clone_role", "terminate_sessions"}),
            "role",
            frozenset({"alternating", "single"}),
        ),
        ProviderSpec(
            "mysql_user",
            frozenset({"dsn", "user"}),
            frozenset({"host", "strategy", "clone_user"}),
            "user",
            frozenset({"alternating", "single"}),
        ),
        ProviderSpec(
            "aws_iam_access_key",
            frozenset({"user_name"}),
            frozenset({"region", "endpoint_url", "admin_access_key_id", "admin_secret_access_key"}),
            None,
        ),
        ProviderSpec("generated", frozenset(), frozenset({"length", "prefix"})),
        ProviderSpec(
            "http",
            frozenset({"create_url", "validate_url"}),
            frozenset({"retire_url", "revoke_url", "signing_secret"}),
        ),
    )
}


def validate_config(provider: str, config: Mapping[str, Any]) -> dict[str, Any]:
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise ProviderConfigError(f"unknown provider {provider!r}; one of: {', '.join(sorted(PROVIDERS))}")
    if not isinstance(config, Mapping):
        raise ProviderConfigError("--config must be a JSON object")
    missing = sorted(spec.required - config.keys())
    if missing:
        raise ProviderConfigError(f"provider {provider} needs config key(s): {', '.join(missing)}")
    unknown = sorted(config.keys() - spec.required - spec.optional)
    if unknown:
        raise ProviderConfigError(f"provider {provider} does not take config key(s): {', '.join(unknown)}")
    for key, value in config.items():
        if not isinstance(value, str | int | bool) or isinstance(value, float):
            raise ProviderConfigError(f"config key {key!r} must be a string, integer or boolean")
    strategy = config.get("strategy")
    if strategy is not None and strategy not in spec.strategies:
        raise ProviderConfigError(f"strategy must be one of: {', '.join(sorted(spec.strategies))}")
    if provider == "http":
        for key in HTTP_HOOK_URL_KEYS:
            if key in config:
                try:
                    OutboundPolicy().check_syntax(str(config[key]), f"config key {key!r}")
                except OutboundRefused as exc:
                    raise ProviderConfigError(str(exc)) from None
    if provider == "generated":
        length = config.get("length", 40)
        if not isinstance(length, int) or isinstance(length, bool) or not 16 <= length <= 512:
            raise ProviderConfigError("config key 'length' must be an integer from 16 to 512")
    return dict(config)


def username_of(provider: str, config: Mapping[str, Any]) -> str | None:
    spec = PROVIDERS[provider]
    return str(config[spec.username_key]) if spec.username_key and spec.username_key in config else None


def issue_initial_value(provider: str, config: Mapping[str, Any]) -> str | None:
    """A first credential for providers that can mint one offline; None means: import it (--value-stdin)."""
    if provider == "generated":
        return random_secret(int(config.get("length", 40)), str(config.get("prefix", "")))
    return None
