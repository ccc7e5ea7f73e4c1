"""The pull read (engine.commands.pull.current_for_dependent) on both store backends: the current version's value,
and a clear NotFound, changing nothing, when that value was destroyed or the secret deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.dependents import add_dependent
from lockzero.engine.commands.pull import current_for_dependent, identify
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.commands.tombstone import delete_secret
from lockzero.engine.domain.errors import NotFound
from tests.engine.support import OPERATOR, ManualClock, migrated_engine

TENANT = "acme"
SID = "prod/app/api-key"
VALUE = b"canary-pull-read-0123456789abcdef"


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url, TENANT, clock=ManualClock()) as e:
        await register_secret(
            e, TENANT, OPERATOR, secret_id=SID, provider="generated", environment="prod", config={}, value=VALUE
        )
        yield e


async def puller(engine: Engine) -> str:
    """A pull dependent's lz_svc_ token."""
    dep = await add_dependent(
        engine, TENANT, OPERATOR, secret_id=SID, service="billing", environment="prod", delivery="pull"
    )
    assert dep.token is not None
    return dep.token


# The API reads the dependent and its secret's current version in one query (one_read); the engine also reads them
# apart. Either way the same answer, read after whatever the test changed.
ONE_READ = pytest.mark.parametrize("one_read", [False, True], ids=["two-reads", "one-read"])


async def pull(engine: Engine, token: str, secret_id: str, one_read: bool) -> dict[str, Any]:
    who = await identify(engine, token, with_current=one_read)
    assert who is not None
    assert (who.current is not None) is one_read
    return await current_for_dependent(engine, who, secret_id)


@ONE_READ
async def test_pull_reads_the_current_value(engine: Engine, one_read: bool) -> None:
    body = await pull(engine, await puller(engine), SID, one_read)
    assert body["value"] == VALUE.decode() and body["version"] == "v1" and body["secret_id"] == SID


@ONE_READ
async def test_a_destroyed_value_is_not_found(engine: Engine, one_read: bool) -> None:
    token = await puller(engine)
    async with engine.store.transaction() as tx:
        await tx.execute("DELETE FROM lz_secret_versions WHERE tenant = ? AND secret_id = ?", (TENANT, SID))
    with pytest.raises(NotFound, match="destroyed"):
        await pull(engine, token, SID, one_read)


async def test_a_deleted_secret_is_not_found(engine: Engine) -> None:
    token = await puller(engine)
    who = await identify(engine, token)
    assert who is not None
    await delete_secret(engine, TENANT, SID, OPERATOR, "leaked and retired")
    with pytest.raises(NotFound) as raised:
        await current_for_dependent(engine, who, SID)
    assert VALUE.decode() not in str(raised.value)
    # Its dependents go with it: read now, the token is nobody's, with or without the current version.
    assert await identify(engine, token) is None
    assert await identify(engine, token, with_current=True) is None


@ONE_READ
async def test_another_secrets_dependent_is_not_found(engine: Engine, one_read: bool) -> None:
    with pytest.raises(NotFound, match="not attached"):
        await pull(engine, await puller(engine), "prod/other", one_read)


async def test_the_one_read_does_not_show_its_sealed_value(engine: Engine) -> None:
    who = await identify(engine, await puller(engine), with_current=True)
    assert who is not None and who.current is not None and who.current[2] is not None
    assert who.current[2].hex() not in repr(who) and "ciphertext" not in repr(who).lower()
