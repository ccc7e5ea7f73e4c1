"""Open a secret's provider: decrypt its config, and hand the versions' credentials to the saga."""

from __future__ import annotations

from typing import Any

from lockzero.engine.app import Engine
from lockzero.engine.commands.secrets import read_version_value
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.errors import Conflict
from lockzero.engine.security.secret_config import sealed_config
from lockzero.providers.base import Credential, Provider
from lockzero.providers.registry import ProviderNotAvailable, build_provider, lookup


async def provider_config(engine: Engine, secret: Secret) -> dict[str, Any]:
    return await sealed_config(engine, secret.tenant, secret.secret_id)


async def credential(engine: Engine, secret: Secret, version: int | None) -> Credential | None:
    if version is None:
        return None
    raw = await read_version_value(engine, secret.tenant, secret.secret_id, version)
    if raw is None:
        return None
    v = secret.version(version)
    return Credential(raw.decode(), v.username if v else None)


async def open_provider(engine: Engine, secret: Secret) -> Provider:
    config = await provider_config(engine, secret)
    live: set[str] = set()
    spec = lookup(secret.provider)
    if spec is not None and spec.lockzero_is_authority:
        # Lockzero is this provider's authority: what works is what its events say is live.
        for v in secret.versions:
            if v.status in ("live", "current"):
                cred = await credential(engine, secret, v.number)
                if cred is not None:
                    live.add(cred.value)
    try:
        return build_provider(secret.provider, config, live, outbound=engine.outbound)
    except ProviderNotAvailable as exc:
        raise Conflict(str(exc)) from None
