"""MCP API keys: random tokens shown once, stored as keyed hashes, scoped by secret-id globs."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Final

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.tenants import get_tenant
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.api_key import ApiKey, fold_api_key
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.security.crypto import MCP_KEY_PREFIX, new_id, new_token
from lockzero.eventstore import NO_STREAM

_SCOPE = re.compile(r"[A-Za-z0-9/_.:*?-]{1,256}")
_NAME_MAX = 128


def mint_token(engine: Engine, name: str, kind: str, token_prefix: str) -> tuple[str, str, str]:
    """A new ``kind`` credential's id (``key_…``, ``int_…``: the kind's first three letters), its token (shown
    once) and the token's keyed hash (what is stored); ``name`` is checked first, as the person gave it."""
    if len(name) > _NAME_MAX or any(ord(c) < 32 for c in name):
        raise InvalidInput(f"{kind} name must be at most {_NAME_MAX} printable characters")
    token = new_token(token_prefix)
    return new_id(kind[:3]), token, engine.tokens.hash(token)


#: Every API process refuses a revoked key within this long of the revocation (the key cache's bound).
REVOKED_KEYS_REFUSED_WITHIN_S: Final = 0.8


class CreatedKey(msgspec.Struct, frozen=True):
    key_id: str
    #: The token; returned exactly once, at creation.
    key: str
    tenant: str
    name: str
    read_only: bool
    scopes: tuple[str, ...]


class KeyView(msgspec.Struct, frozen=True):
    key_id: str
    tenant: str
    name: str
    permission: str
    scopes: tuple[str, ...]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    status: str


async def create_key(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    *,
    name: str = "",
    read_only: bool = False,
    scopes: tuple[str, ...] = (),
    expires_at: datetime | None = None,
) -> CreatedKey:
    await get_tenant(engine, tenant)
    for scope in scopes:
        if not _SCOPE.fullmatch(scope):
            raise InvalidInput("scope must be a glob of [A-Za-z0-9/_.:-] with * and ?, e.g. prod/*")
    key_id, token, token_hash = mint_token(engine, name, "key", MCP_KEY_PREFIX)
    event = ev.ApiKeyCreated(
        at=engine.clock.now(),
        tenant=tenant,
        key_id=key_id,
        name=name or key_id,
        token_hash=token_hash,
        read_only=read_only,
        scopes=tuple(scopes),
        expires_at=expires_at,
    )
    await engine.append(naming.api_key_stream(tenant, key_id), [event], actor, NO_STREAM)
    return CreatedKey(key_id, token, tenant, event.name, read_only, tuple(scopes))


def _view(row: tuple[object, ...], now: str) -> KeyView:
    key_id, tenant, name, read_only, scopes, created, expires, revoked = row
    status = "revoked" if revoked else ("expired" if expires is not None and str(expires) <= now else "active")
    return KeyView(
        str(key_id),
        str(tenant),
        str(name),
        "read" if read_only else "read-write",
        tuple(msgspec.json.decode(str(scopes))),
        parse_iso(str(created)).isoformat(),
        parse_iso(str(expires)).isoformat() if expires else None,
        parse_iso(str(revoked)).isoformat() if revoked else None,
        status,
    )


_KEY_COLUMNS = "key_id, tenant, name, read_only, scopes, created_at, expires_at, revoked_at"


async def list_keys(engine: Engine, tenant: str) -> list[KeyView]:
    await get_tenant(engine, tenant)
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT {_KEY_COLUMNS} FROM rm_api_keys WHERE tenant = ? ORDER BY created_at, key_id", (tenant,)
        )
    now = iso(engine.clock.now())
    return [_view(r, now) for r in rows]


async def revoke_key(engine: Engine, key_id: str, actor: ev.EventMeta, tenant: str | None = None) -> KeyView:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(f"SELECT {_KEY_COLUMNS} FROM rm_api_keys WHERE key_id = ?", (key_id,))
    if row is None or (tenant is not None and row[1] != tenant):
        raise NotFound(f"no API key {key_id!r}; `lockzero key list --tenant NAME` shows the ids")
    owner = str(row[1])
    stream = naming.api_key_stream(owner, key_id)
    events, version = await engine.load(stream)
    state = fold_api_key(events)
    if state is None:
        raise NotFound(f"no API key {key_id!r}")
    if state.revoked_at is not None:
        raise Conflict(f"API key {key_id} is already revoked")
    await engine.append(stream, [ev.ApiKeyRevoked(at=engine.clock.now(), tenant=owner, key_id=key_id)], actor, version)
    # API processes cache keys (key_cache.py) and drop them within this bound: answer once it has passed, so that a
    # revoke that returned means refused everywhere.
    await asyncio.sleep(REVOKED_KEYS_REFUSED_WITHIN_S)
    views = [k for k in await list_keys(engine, owner) if k.key_id == key_id]
    return views[0]


async def authenticate(engine: Engine, token: str) -> ApiKey | None:
    """The key behind a bearer token, or None (unknown, revoked or expired all look the same)."""
    if not token.startswith(MCP_KEY_PREFIX) or len(token) > 200:
        return None
    digest = engine.tokens.hash(token)
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT key_id, tenant, name, token_hash, read_only, scopes, created_at, expires_at, revoked_at"
            " FROM rm_api_keys WHERE token_hash = ?",
            (digest,),
        )
    if row is None or not engine.tokens.matches(token, str(row[3])):
        return None
    key = ApiKey(
        tenant=str(row[1]),
        key_id=str(row[0]),
        name=str(row[2]),
        token_hash=str(row[3]),
        read_only=bool(row[4]),
        scopes=tuple(msgspec.json.decode(str(row[5]))),
        created_at=parse_iso(str(row[6])),
        expires_at=parse_iso(str(row[7])) if row[7] else None,
        revoked_at=parse_iso(str(row[8])) if row[8] else None,
    )
    return key if key.usable(engine.clock.now()) else None
