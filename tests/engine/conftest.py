"""Engine fixtures: a migrated engine per backend (through tests/conftest.py's ``store_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.commands.tenants import create_tenant
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.workers.inprocess import InProcessQueue
from tests.engine.support import OPERATOR, ManualClock, migrated_engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(store_url: str, clock: ManualClock) -> AsyncIterator[Engine]:
    """A migrated engine on a fresh store of each backend, with a clock the test controls. Its outbound
    targets may be on loopback (the tests' local receivers), as LOCKZERO_OUTBOUND_ALLOW=127.0.0.1 would allow."""
    async with migrated_engine(store_url, None, clock=clock, outbound=OutboundPolicy.allowing("127.0.0.1")) as e:
        yield e


@pytest.fixture
async def queue(engine: Engine) -> AsyncIterator[InProcessQueue]:
    """The in-process queue without start(): no background reconciler or scheduler runs, the test drives."""
    q = InProcessQueue(engine)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def acme(engine: Engine) -> str:
    """Tenant acme with one secret, prod/db (provider generated)."""
    await create_tenant(engine, "acme", OPERATOR)
    await register_secret(engine, "acme", OPERATOR, secret_id="prod/db", provider="generated", environment="prod")
    return "acme"
