"""Open a secret's provider: decrypt its config, and hand the versions' credentials to the saga."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lockzero.engine.app import Engine
from lockzero.engine.commands.secrets import open_value, read_version_value
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.errors import Conflict
from lockzero.engine.security.secret_config import config_ref, open_config, sealed_config
from lockzero.providers.base import Credential, Provider
from lockzero.providers.registry import ProviderNotAvailable, build_provider, lookup

#: Credentials by version number, as :func:`open_with` read them (None: the version's value is gone).
Credentials = dict[int, Credential | None]


async def provider_config(engine: Engine, secret: Secret) -> dict[str, Any]:
    return await sealed_config(engine, secret.tenant, secret.secret_id)


def _credential(secret: Secret, version: int, raw: bytes | None) -> Credential | None:
    if raw is None:
        return None
    v = secret.version(version)
    return Credential(raw.decode(), v.username if v else None)


async def credential(engine: Engine, secret: Secret, version: int | None) -> Credential | None:
    if version is None:
        return None
    return _credential(secret, version, await read_version_value(engine, secret.tenant, secret.secret_id, version))


async def open_provider(engine: Engine, secret: Secret) -> Provider:
    provider, _ = await open_with(engine, secret, ())
    return provider


async def open_with(engine: Engine, secret: Secret, versions: Iterable[int | None]) -> tuple[Provider, Credentials]:
    """The provider and the credentials of ``versions``, from one read of the store: a saga step or a live check
    needs both, and each separate read is a round trip (and a pooled connection) of its own."""
    spec = lookup(secret.provider)
    authority = spec is not None and spec.lockzero_is_authority
    # Lockzero is an authority provider's source of truth: what works is what its events say is live.
    live = {v.number for v in secret.versions if v.status in ("live", "current")} if authority else set()
    wanted = sorted({v for v in versions if v is not None} | live)
    ref = config_ref(secret.secret_id)
    sql = "SELECT 0, 0, ciphertext FROM lz_sealed WHERE tenant = ? AND ref = ?"
    if wanted:
        sql += (
            " UNION ALL SELECT 1, version, ciphertext FROM lz_secret_versions"
            f" WHERE tenant = ? AND secret_id = ? AND version IN ({', '.join('?' * len(wanted))})"
        )
    params = (secret.tenant, ref, *((secret.tenant, secret.secret_id, *wanted) if wanted else ()))
    async with engine.store.reader() as tx:
        found = await tx.fetchall(sql, params)
    sealed = next((bytes(c) for kind, _, c in found if kind == 0), None)
    rows = {int(n): None if c is None else bytes(c) for kind, n, c in found if kind == 1}
    keys = await engine.tenant_keys(secret.tenant)
    config = open_config(keys, secret.secret_id, sealed) if sealed is not None else {}
    creds: Credentials = {}
    for n in wanted:
        c = rows.get(n)
        creds[n] = _credential(secret, n, open_value(keys, secret.secret_id, n, c) if c is not None else None)
    live_values = {cred.value for n in live if (cred := creds[n]) is not None}
    try:
        return build_provider(secret.provider, config, live_values, outbound=engine.outbound), creds
    except ProviderNotAvailable as exc:
        raise Conflict(str(exc)) from None
