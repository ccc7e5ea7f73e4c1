"""Master key rotation (engine/security/master_key.py), on both backends: afterwards the new key alone opens every
tenant key, value and token; the previous key alone opens nothing; a rerun changes nothing; an interrupted
rotation (some tenants moved, some not) finishes; a key that opens neither is refused before anything moves."""

from __future__ import annotations

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import dependents, pull, secrets, tenants
from lockzero.engine.config import ConfigError
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.security import keys
from lockzero.engine.security.crypto import MasterKey
from lockzero.engine.security.master_key import rotate_master_key
from lockzero.eventstore import open_store
from tests.engine.support import OPERATOR, add_imported_redis

VALUES = {"acme": b"canary-acme-8c1f", "beta": b"canary-beta-42aa", "gamma": b"canary-gamma-77e0"}


async def _fill(url: str, key: MasterKey) -> dict[str, str]:
    engine = Engine(await open_store(url), key)
    tokens: dict[str, str] = {}
    try:
        await engine.migrate()
        for tenant, value in VALUES.items():
            await tenants.create_tenant(engine, tenant, OPERATOR)
            await add_imported_redis(engine, tenant, "prod/db", value)
            tokens[f"mcp-{tenant}"] = (await keys.create_key(engine, tenant, OPERATOR)).key
            dep = await dependents.add_dependent(
                engine, tenant, OPERATOR, secret_id="prod/db", service="api", environment="prod", delivery="pull"
            )
            tokens[f"pull-{tenant}"] = dep.token or ""
    finally:
        await engine.close()
    return tokens


async def _rotate(url: str, old: MasterKey, new: MasterKey) -> tuple[list[str], list[str], str]:
    store = await open_store(url)
    try:
        report = await rotate_master_key(store, old, new)
    finally:
        await store.close()
    return report.rewrapped, report.already, report.token_key


async def _serves_everything(url: str, key: MasterKey, tokens: dict[str, str], *, again: bool = False) -> None:
    """Every tenant's value and MCP key work under ``key``; the first time also pull tokens and a new tenant."""
    engine = await Engine.open(url, key)
    try:
        for tenant, value in VALUES.items():
            assert await secrets.read_version_value(engine, tenant, "prod/db", 1) == value
            assert (await keys.authenticate(engine, tokens[f"mcp-{tenant}"])) is not None
            if again:
                continue
            who = await pull.identify(engine, tokens[f"pull-{tenant}"])
            assert who is not None and who.tenant == tenant
        if again:
            return
        # A tenant created after the rotation is wrapped under the new key and its tokens hash alike.
        await tenants.create_tenant(engine, "delta", OPERATOR)
        fresh = await keys.create_key(engine, "delta", OPERATOR)
        assert await keys.authenticate(engine, fresh.key) is not None
    finally:
        await engine.close()


async def test_rotation_moves_every_tenant_and_keeps_every_token(store_url: str) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    tokens = await _fill(store_url, old)

    assert await _rotate(store_url, old, new) == (["acme", "beta", "gamma"], [], "stored")
    await _serves_everything(store_url, new, tokens)
    with pytest.raises(ConfigError, match="does not open"):
        await Engine.open(store_url, old)

    # Idempotent: a rerun finds everything (delta included) under the new key.
    assert await _rotate(store_url, old, new) == ([], ["acme", "beta", "delta", "gamma"], "already")

    # A second rotation moves the kept token-hash key along: tokens issued under the first key still work.
    third = MasterKey.generate()
    assert await _rotate(store_url, new, third) == (["acme", "beta", "delta", "gamma"], [], "rewrapped")
    await _serves_everything(store_url, third, tokens, again=True)
    with pytest.raises(ConfigError, match="does not open"):
        await Engine.open(store_url, new)


async def test_an_interrupted_rotation_finishes_on_the_next_run(store_url: str) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    tokens = await _fill(store_url, old)
    # The state a rotation killed after its first tenant leaves behind: beta moved, the others not yet.
    store = await open_store(store_url)
    try:
        async with store.transaction() as tx:
            row = await tx.fetchone("SELECT wrapped_key FROM lz_tenant_keys WHERE tenant = 'beta'")
            assert row is not None
            moved = old.rewrap_tenant_key("beta", bytes(row[0]), new)
            await tx.execute("UPDATE lz_tenant_keys SET wrapped_key = ? WHERE tenant = 'beta'", (moved,))
    finally:
        await store.close()
    with pytest.raises(ConfigError, match="does not open"):
        await Engine.open(store_url, new)  # half done: the new key alone is refused, not half-working

    assert await _rotate(store_url, old, new) == (["acme", "gamma"], ["beta"], "stored")
    await _serves_everything(store_url, new, tokens)


async def test_a_wrong_previous_key_changes_nothing(store_url: str) -> None:
    old = MasterKey.generate()
    tokens = await _fill(store_url, old)
    with pytest.raises(ConfigError, match="open under neither"):
        await _rotate(store_url, MasterKey.generate(), MasterKey.generate())
    with pytest.raises(InvalidInput, match="same key"):
        await _rotate(store_url, old, old)
    engine = await Engine.open(store_url, old)
    try:
        assert await keys.authenticate(engine, tokens["mcp-acme"]) is not None
        async with engine.store.reader() as tx:
            assert await tx.fetchall("SELECT name FROM lz_store_keys") == []
    finally:
        await engine.close()
