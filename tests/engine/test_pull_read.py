"""The pull read (engine.commands.pull.current_for_dependent) on both store backends: the current version's value,
and a clear NotFound, changing nothing, when that value was destroyed or the secret deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.dependents import add_dependent
from lockzero.engine.commands.pull import PullDependent, current_for_dependent, identify
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


async def puller(engine: Engine) -> PullDependent:
    dep = await add_dependent(
        engine, TENANT, OPERATOR, secret_id=SID, service="billing", environment="prod", delivery="pull"
    )
    who = await identify(engine, dep.token or "")
    assert who is not None
    return who


async def test_pull_reads_the_current_value(engine: Engine) -> None:
    body = await current_for_dependent(engine, await puller(engine), SID)
    assert body["value"] == VALUE.decode() and body["version"] == "v1" and body["secret_id"] == SID


async def test_a_destroyed_value_is_not_found(engine: Engine) -> None:
    who = await puller(engine)
    async with engine.store.transaction() as tx:
        await tx.execute("DELETE FROM lz_secret_versions WHERE tenant = ? AND secret_id = ?", (TENANT, SID))
    with pytest.raises(NotFound, match="destroyed"):
        await current_for_dependent(engine, who, SID)


async def test_a_deleted_secret_is_not_found(engine: Engine) -> None:
    who = await puller(engine)
    await delete_secret(engine, TENANT, SID, OPERATOR, "leaked and retired")
    with pytest.raises(NotFound) as raised:
        await current_for_dependent(engine, who, SID)
    assert VALUE.decode() not in str(raised.value)


async def test_another_secrets_dependent_is_not_found(engine: Engine) -> None:
    who = await puller(engine)
    with pytest.raises(NotFound, match="not attached"):
        await current_for_dependent(engine, who, "prod/other")
