"""MCP API keys (engine/security/keys.py) on both backends: creation, authentication, revocation, expiry, scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import tenants
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.security import keys
from lockzero.engine.security.crypto import MasterKey
from tests.engine.support import OPERATOR, T0, ManualClock, all_events, table_rows


@pytest.fixture
async def acme(engine: Engine) -> str:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    return "acme"


async def test_create_then_authenticate(engine: Engine, acme: str) -> None:
    created = await keys.create_key(engine, acme, OPERATOR, name="ci", read_only=True, scopes=("prod/*",))
    assert created.key.startswith("lz_mcp_")
    assert created.key_id.startswith("key_")
    assert (created.tenant, created.name, created.read_only, created.scopes) == (acme, "ci", True, ("prod/*",))

    key = await keys.authenticate(engine, created.key)
    assert key is not None
    assert (key.key_id, key.tenant, key.name, key.read_only, key.scopes) == (
        created.key_id,
        acme,
        "ci",
        True,
        ("prod/*",),
    )
    assert key.created_at == T0
    assert key.revoked_at is None and key.expires_at is None


async def test_the_token_is_never_stored(engine: Engine, acme: str) -> None:
    created = await keys.create_key(engine, acme, OPERATOR)
    token = created.key.encode()
    for event in await all_events(engine):
        assert token not in event.data and token not in event.metadata
    rows = await table_rows(engine, "rm_api_keys")
    assert len(rows) == 1
    assert all(token not in str(c).encode() for c in rows[0])
    assert engine.tokens.hash(created.key) in rows[0]


async def test_default_name_is_the_key_id(engine: Engine, acme: str) -> None:
    created = await keys.create_key(engine, acme, OPERATOR)
    assert created.name == created.key_id
    (view,) = await keys.list_keys(engine, acme)
    assert view.name == created.key_id
    assert (view.permission, view.scopes, view.status) == ("read-write", (), "active")


GARBAGE_TOKENS = ["", "lz_mcp_", "Bearer lz_mcp_x", "lz_svc_" + "a" * 43, "lz_mcp_" + "a" * 43, "lz_mcp_" + "a" * 400]


async def test_wrong_or_garbage_tokens_do_not_authenticate(engine: Engine, acme: str) -> None:
    created = await keys.create_key(engine, acme, OPERATOR)
    for token in [*GARBAGE_TOKENS, "lz_svc_" + created.key.removeprefix("lz_mcp_")]:
        assert await keys.authenticate(engine, token) is None, token


async def test_near_miss_tokens_do_not_authenticate(engine: Engine, acme: str) -> None:
    token = (await keys.create_key(engine, acme, OPERATOR)).key
    assert await keys.authenticate(engine, token) is not None
    for near in (token[:-1], token + "x", token.upper(), token[:-1] + ("A" if token[-1] != "A" else "B")):
        assert await keys.authenticate(engine, near) is None


async def test_another_master_key_does_not_authenticate(engine: Engine, acme: str) -> None:
    """Token hashes are keyed by the master key: the same store under another key knows no token."""
    token = (await keys.create_key(engine, acme, OPERATOR)).key
    other = Engine(engine.store, MasterKey.generate(), engine.clock)
    assert await keys.authenticate(other, token) is None


async def test_revoked_key_does_not_authenticate(engine: Engine, acme: str, clock: ManualClock) -> None:
    keep = await keys.create_key(engine, acme, OPERATOR, name="keep")
    gone = await keys.create_key(engine, acme, OPERATOR, name="gone")
    clock.advance(minutes=5)
    view = await keys.revoke_key(engine, gone.key_id, OPERATOR)
    assert view.status == "revoked"
    assert view.revoked_at == (T0 + timedelta(minutes=5)).isoformat()
    assert await keys.authenticate(engine, gone.key) is None
    assert await keys.authenticate(engine, keep.key) is not None
    statuses = {k.key_id: k.status for k in await keys.list_keys(engine, acme)}
    assert statuses == {keep.key_id: "active", gone.key_id: "revoked"}
    with pytest.raises(Conflict):
        await keys.revoke_key(engine, gone.key_id, OPERATOR)


async def test_revoke_unknown_key(engine: Engine, acme: str) -> None:
    with pytest.raises(NotFound):
        await keys.revoke_key(engine, "key_0000000000000000", OPERATOR)


async def test_expired_key_does_not_authenticate(engine: Engine, acme: str, clock: ManualClock) -> None:
    past = await keys.create_key(engine, acme, OPERATOR, expires_at=T0 - timedelta(seconds=1))
    assert await keys.authenticate(engine, past.key) is None

    soon = await keys.create_key(engine, acme, OPERATOR, expires_at=T0 + timedelta(hours=1))
    assert await keys.authenticate(engine, soon.key) is not None
    statuses = {k.key_id: k.status for k in await keys.list_keys(engine, acme)}
    assert statuses == {past.key_id: "expired", soon.key_id: "active"}

    clock.advance(minutes=59)
    assert await keys.authenticate(engine, soon.key) is not None
    clock.advance(minutes=1)  # exactly at expires_at: no longer usable
    assert await keys.authenticate(engine, soon.key) is None
    assert {k.key_id: k.status for k in await keys.list_keys(engine, acme)}[soon.key_id] == "expired"


async def test_bad_scopes_are_rejected(engine: Engine, acme: str) -> None:
    for scope in ("", "prod db", "prod/*;drop", "x" * 257, "prod/\n"):
        with pytest.raises(InvalidInput):
            await keys.create_key(engine, acme, OPERATOR, scopes=("ok/*", scope))
    assert await keys.list_keys(engine, acme) == []


async def test_bad_names_are_rejected(engine: Engine, acme: str) -> None:
    for name in ("x" * 129, "line\nbreak"):
        with pytest.raises(InvalidInput):
            await keys.create_key(engine, acme, OPERATOR, name=name)
    assert await keys.list_keys(engine, acme) == []


async def test_unknown_tenant(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await keys.create_key(engine, "ghost", OPERATOR)
    with pytest.raises(NotFound):
        await keys.list_keys(engine, "ghost")


async def test_tenant_isolation(engine: Engine) -> None:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await tenants.create_tenant(engine, "beta", OPERATOR)
    a1 = await keys.create_key(engine, "acme", OPERATOR)
    a2 = await keys.create_key(engine, "acme", OPERATOR, read_only=True)
    b1 = await keys.create_key(engine, "beta", OPERATOR)
    assert {k.key_id for k in await keys.list_keys(engine, "acme")} == {a1.key_id, a2.key_id}
    assert [k.key_id for k in await keys.list_keys(engine, "beta")] == [b1.key_id]
    authenticated = await keys.authenticate(engine, b1.key)
    assert authenticated is not None and authenticated.tenant == "beta"
    # A tenant-bound revoke of another tenant's key looks like "no such key", and changes nothing.
    with pytest.raises(NotFound):
        await keys.revoke_key(engine, a1.key_id, OPERATOR, tenant="beta")
    assert await keys.authenticate(engine, a1.key) is not None


def _key(*scopes: str) -> ApiKey:
    return ApiKey("acme", "key_1", "k", "h", False, scopes, T0)


@pytest.mark.parametrize(
    ("scopes", "secret_id", "allowed"),
    [
        ((), "anything/at/all", True),
        (("prod/*",), "prod/db", True),
        (("prod/*",), "prod/db/password", True),  # * crosses "/" (fnmatch semantics)
        (("prod/*",), "staging/db", False),
        (("prod/*",), "prod", False),
        (("prod/*",), "PROD/db", False),  # case-sensitive
        (("*/api-key",), "openai/api-key", True),
        (("*/api-key",), "openai/api-key2", False),
        (("prod/db?",), "prod/db1", True),
        (("prod/db?",), "prod/db12", False),
        (("prod/db",), "prod/db", True),
        (("prod/db",), "prod/db2", False),
        (("staging/*", "prod/db"), "prod/db", True),
        (("staging/*", "prod/db"), "prod/cache", False),
    ],
)
def test_scope_globs(scopes: tuple[str, ...], secret_id: str, allowed: bool) -> None:
    assert _key(*scopes).in_scope(secret_id) is allowed


def test_usable() -> None:
    key = _key()
    assert key.usable(T0)
    assert not ApiKey("a", "k", "n", "h", False, (), T0, expires_at=T0).usable(T0)
    assert ApiKey("a", "k", "n", "h", False, (), T0, expires_at=T0 + timedelta(seconds=1)).usable(T0)
    assert not ApiKey("a", "k", "n", "h", False, (), T0, revoked_at=T0).usable(T0 - timedelta(days=1))
