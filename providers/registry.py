"""Build the provider object for a secret from its (decrypted) config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockzero.engine.security.crypto import random_secret
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.providers.base import Provider
from lockzero.providers.generated import GeneratedProvider
from lockzero.providers.mysql_user import MysqlUserProvider
from lockzero.providers.postgres_role import PostgresRoleProvider
from lockzero.providers.redis_acl import RedisAclProvider


class ProviderNotAvailable(Exception):
    pass


def build_provider(
    name: str, config: Mapping[str, Any], live_values: set[str] | None = None, *, outbound: OutboundPolicy | None = None
) -> Provider:
    """``outbound`` limits where the http provider's hooks may connect (public hosts only when None)."""
    if name == "generated":
        return GeneratedProvider(config, live_values)
    if name == "redis_acl":
        return RedisAclProvider(config)
    if name == "postgres_role":
        return PostgresRoleProvider(config)
    if name == "mysql_user":
        return MysqlUserProvider(config)
    if name == "aws_iam_access_key":
        from lockzero.providers.aws_iam import AwsIamKeyProvider  # boto3 costs ~0.2 s at import: only when used

        return AwsIamKeyProvider(config)
    if name == "http":
        from lockzero.providers.http_hooks import HttpHooksProvider

        return HttpHooksProvider(config, outbound=outbound)
    raise ProviderNotAvailable(f"provider {name} cannot rotate in this build yet")


def mint_value(name: str, config: Mapping[str, Any]) -> str:
    """A fresh credential value for providers where Lockzero chooses it."""
    if name == "generated":
        return GeneratedProvider(config).mint()
    return random_secret(40)
