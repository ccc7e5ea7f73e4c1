"""Tenants: the isolation boundary. Creating one also creates its wrapped data key."""

from __future__ import annotations

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import parse_iso
from lockzero.engine.domain.errors import Conflict, NotFound
from lockzero.eventstore import NO_STREAM, ConcurrencyError


class TenantView(msgspec.Struct, frozen=True):
    tenant: str
    created_at: str


async def create_tenant(engine: Engine, name: str, actor: ev.EventMeta) -> TenantView:
    name = naming.tenant_name(name)
    now = engine.clock.now()
    _, store_key = engine.new_tenant_keys(name)
    try:
        await engine.append(
            naming.tenant_stream(name), [ev.TenantCreated(at=now, tenant=name)], actor, NO_STREAM, store_key
        )
    except ConcurrencyError:
        raise Conflict(f"tenant {name!r} already exists") from None
    return TenantView(name, now.isoformat())


async def get_tenant(engine: Engine, name: str) -> TenantView:
    naming.tenant_name(name)
    async with engine.store.reader() as tx:
        row = await tx.fetchone("SELECT tenant, created_at FROM rm_tenants WHERE tenant = ?", (name,))
    if row is None:
        raise NotFound(f"tenant {name!r} does not exist; create it with `lockzero tenant create {name}`")
    return TenantView(row[0], parse_iso(row[1]).isoformat())


async def list_tenants(engine: Engine) -> list[TenantView]:
    async with engine.store.reader() as tx:
        rows = await tx.fetchall("SELECT tenant, created_at FROM rm_tenants ORDER BY tenant")
    return [TenantView(r[0], parse_iso(r[1]).isoformat()) for r in rows]
