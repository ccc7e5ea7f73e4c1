"""A secret's provider config: sealed at rest (it holds admin credentials), opened only to talk to the provider."""

from __future__ import annotations

from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.security.crypto import TenantKeys


def config_ref(secret_id: str) -> str:
    return f"secret/{secret_id}/config"


async def sealed_config(engine: Engine, tenant: str, secret_id: str) -> dict[str, Any]:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT ciphertext FROM lz_sealed WHERE tenant = ? AND ref = ?", (tenant, config_ref(secret_id))
        )
    if row is None:
        return {}
    return open_config(await engine.tenant_keys(tenant), secret_id, bytes(row[0]))


def open_config(keys: TenantKeys, secret_id: str, ciphertext: bytes) -> dict[str, Any]:
    """Decrypt a secret's sealed provider config."""
    config: dict[str, Any] = msgspec.json.decode(
        keys.open(ciphertext, ref=config_ref(secret_id), version=0, purpose="config")
    )
    return config
