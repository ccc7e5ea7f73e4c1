"""What registration checks before it records anything: the imported value works at the provider, and no
other secret of the tenant already manages the same provider account (two secrets rotating one Redis user
or database role would retire each other's credentials)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockzero.engine.app import Engine
from lockzero.engine.domain.errors import Conflict, InvalidInput, Unavailable
from lockzero.engine.security.secret_config import sealed_config
from lockzero.providers.base import Credential
from lockzero.providers.registry import build_provider, lookup, spec_of


def account_of(provider: str, cfg: Mapping[str, Any]) -> str | None:
    """The provider account a config manages, as its declaration tells (None: no shared account to collide on)."""
    spec = lookup(provider)
    return spec.account(cfg) if spec is not None and spec.account is not None else None


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
    if spec_of(provider).lockzero_is_authority:
        return  # an imported value is valid by being registered
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
