"""Engine fixtures: a migrated engine per backend (through tests/conftest.py's ``store_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.security.crypto import MasterKey
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.eventstore import open_store
from tests.engine.support import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(store_url: str, clock: ManualClock) -> AsyncIterator[Engine]:
    """A migrated engine on a fresh store of each backend, with a clock the test controls. Its outbound
    targets may be on loopback (the tests' local receivers), as LOCKZERO_OUTBOUND_ALLOW=127.0.0.1 would allow."""
    e = Engine(await open_store(store_url), MasterKey.generate(), clock, OutboundPolicy.allowing("127.0.0.1"))
    await e.migrate()
    try:
        yield e
    finally:
        await e.close()
