"""What each provider accepts in ``--config`` and whether it can issue a first credential.

Validation only; the provider modules that talk to the real systems live beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockzero.engine.security.crypto import random_secret
from lockzero.engine.security.outbound import OutboundPolicy, OutboundRefused

#: The http provider's hook URLs: outbound targets, checked like webhooks (engine/security/outbound.py).
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


@dataclass(frozen=True)
class ProviderDoc:
    """What a user reads before registering a secret: `lockzero provider show P`, `secret add --help`, README."""

    summary: str
    #: Each config key and what it means (required ones first, as PROVIDERS lists them).
    keys: dict[str, str]
    #: What the admin credential in the config must be allowed to do.
    permissions: str


#: One entry per provider; tests check that it names exactly the keys PROVIDERS accepts.
PROVIDER_DOCS: dict[str, ProviderDoc] = {
    "redis_acl": ProviderDoc(
        "A Redis >= 6 ACL user. Two passwords are live during the switch (>new, later <old): zero downtime.",
        {
            "url": "admin connection, e.g. redis://default:PASSWORD@127.0.0.1:6379/0",
            "username": "the ACL user whose password rotates",
            "kill_clients": "true: retire also closes the old password's connections (CLIENT KILL USER); default false",
            "acl_rules": 'rules to create the user with if it does not exist, e.g. "~app:* +@read +@write"',
        },
        "the admin user needs ACL SETUSER and ACL GETUSER (+acl|setuser +acl|getuser), CLIENT LIST for observed"
        " usage, and CLIENT KILL for revoke and kill_clients; the rotated user needs no extra rights",
    ),
    "postgres_role": ProviderDoc(
        "A PostgreSQL login role. alternating (default): two roles take turns, zero downtime; single: ALTER ROLE.",
        {
            "dsn": "admin connection, e.g. postgresql://admin:PASSWORD@db:5432/app",
            "role": "the login role whose password rotates",
            "strategy": "alternating (two roles, zero downtime) or single (one role, ALTER ROLE … PASSWORD)",
            "clone_role": "the second role of alternating; default <role>_alt (created if missing)",
            "terminate_sessions": "true: retire also ends the old role's sessions; default false",
        },
        "the admin role needs CREATEROLE (PostgreSQL 16+: with ADMIN OPTION on the role) to ALTER ROLE … PASSWORD /"
        " LOGIN / NOLOGIN and to create the clone role; reading pg_stat_activity for observed usage and"
        " pg_terminate_backend for revoke need pg_read_all_stats and pg_signal_backend (or superuser)",
    ),
    "mysql_user": ProviderDoc(
        "A MariaDB / MySQL account 'user'@'host'. alternating (default): two accounts take turns; single: ALTER USER.",
        {
            "dsn": "admin connection, e.g. mysql://root:PASSWORD@127.0.0.1:3306/test",
            "user": "the account whose password rotates",
            "host": "the account's host part; default %",
            "strategy": "alternating (two accounts, zero downtime) or single (one account, ALTER USER)",
            "clone_user": "the second account of alternating; default <user>_alt (created if missing)",
        },
        "the admin account needs CREATE USER (ALTER USER, ACCOUNT LOCK), the grants of the rotated account WITH"
        " GRANT OPTION (they are copied onto the clone) and SELECT on mysql.user; PROCESS to see sessions for"
        " observed usage and CONNECTION ADMIN (or SUPER) to KILL them on revoke",
    ),
    "aws_iam_access_key": ProviderDoc(
        "An AWS IAM user's access keys. Two keys during the switch; the old one is deactivated, deleted after grace.",
        {
            "user_name": "the IAM user whose access keys rotate",
            "region": "AWS region; default us-east-1",
            "endpoint_url": "another IAM endpoint, e.g. a moto server for tests",
            "admin_access_key_id": "the admin key id; without it boto3's default credential chain",
            "admin_secret_access_key": "the admin secret key (encrypted at rest, never shown)",
        },
        "an IAM policy on the user's ARN allowing iam:CreateAccessKey, iam:UpdateAccessKey, iam:DeleteAccessKey,"
        " iam:ListAccessKeys and iam:GetAccessKeyLastUsed (observed usage)",
    ),
    "generated": ProviderDoc(
        "A value Lockzero generates and delivers (webhook signing secrets, internal tokens); no external system.",
        {
            "length": "characters, 16 to 512; default 40",
            "prefix": "text put in front of the random part, e.g. whsec_",
        },
        "none: there is no admin credential",
    ),
    "http": ProviderDoc(
        "Any service with HTTP hooks that create, validate, retire and revoke its credentials (JSON POSTs).",
        {
            "create_url": "POST here to issue a new credential",
            "validate_url": "POST here to check that a credential works",
            "retire_url": "POST here to disable the old credential after the switch",
            "revoke_url": "POST here to make a credential stop working now",
            "signing_secret": "when set, every hook call carries X-Lockzero-Signature: sha256=<HMAC of the body>",
        },
        "whatever the hooks require; each hook URL must be reachable (private or loopback hosts only when"
        " LOCKZERO_OUTBOUND_ALLOW lists them)",
    ),
}


def describe_provider(provider: str) -> str:
    """Plain text for people: what the provider does, its --config keys, the admin permissions it needs."""
    spec, doc = PROVIDERS[provider], PROVIDER_DOCS[provider]
    width = max(len(k) for k in doc.keys)
    lines = [f"{provider}: {doc.summary}", "", "--config keys:"]
    for key, meaning in doc.keys.items():
        need = "required" if key in spec.required else "optional"
        lines.append(f"  {key.ljust(width)}  {need}  {meaning}")
    lines += ["", f"admin permissions: {doc.permissions}"]
    return "\n".join(lines)


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
