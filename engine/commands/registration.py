"""What registration checks before it records anything: the imported value works at the provider, and no
other secret of the tenant already manages the same provider account (two secrets rotating one Redis user
or database role would retire each other's credentials)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from lockzero.engine.app import Engine
from lockzero.engine.domain.errors import Conflict, InvalidInput, Unavailable
from lockzero.engine.security.secret_config import sealed_config
from lockzero.providers.base import Credential
from lockzero.providers.registry import build_provider


def account_of(provider: str, cfg: Mapping[str, Any]) -> str | None:
    """The provider account a config manages, as a comparable string (no credential in it)."""

    def server(url: str) -> str:
        parts = urlsplit(url)
        return f"{(parts.hostname or 'localhost').lower()}:{parts.port or ''}"

    if provider == "redis_acl":
        return f"redis {server(str(cfg['url']))} user {cfg['username']}"
    if provider == "postgres_role":
        # Roles belong to the cluster, not to a database.
        return f"postgres {server(str(cfg['dsn']))} role {cfg['role']}"
    if provider == "mysql_user":
        return f"mysql {server(str(cfg['dsn']))} user {cfg['user']}@{cfg.get('host', '%')}"
    if provider == "aws_iam_access_key":
        return f"aws {cfg.get('endpoint_url') or 'aws'} user {cfg['user_name']}"
    return None  # generated and http secrets have no shared account to collide on


async def refuse_shared_account(
    engine: Engine, tenant: str, secret_id: str, provider: str, cfg: Mapping[str, Any]
) -> None:
    account = account_of(provider, cfg)
    if account is None:
        return
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT secret_id FROM rm_secrets WHERE tenant = ? AND provider = ? AND status <> 'revoked'"
            " AND secret_id <> ?",
            (tenant, provider, secret_id),
        )
    for (other,) in rows:
        other_cfg = await sealed_config(engine, tenant, str(other))
        if account_of(provider, other_cfg) == account:
            raise Conflict(
                f"secret {other!r} already manages this {provider} account ({account}); two secrets on one account"
                " retire each other's credentials. Pass --allow-shared if that is really what you want"
            )


async def check_imported_value(
    engine: Engine, provider: str, cfg: Mapping[str, Any], value: bytes, username: str | None
) -> None:
    """The value given with --value-stdin must authenticate now; a refusal or no answer registers nothing."""
    if provider == "generated":
        return  # Lockzero is that provider's authority: an imported value is valid by being registered
    live = build_provider(provider, cfg, outbound=engine.outbound)
    try:
        auth = await live.authenticate(Credential(value.decode("utf-8", "replace"), username))
    finally:
        await live.close()
    if auth.refused:
        raise InvalidInput(
            f"the value given on stdin is refused by {provider} ({auth.reason}); nothing was registered."
            " Pass the credential in use today, or --no-validate to register it unchecked"
        )
    if not auth.accepted:
        raise Unavailable(
            f"could not check the value given on stdin with {provider} ({auth.reason}); nothing was registered."
            " Retry when the provider answers, or pass --no-validate to register it unchecked"
        )
