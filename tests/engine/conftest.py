"""Engine fixtures: a migrated engine per backend (through tests/conftest.py's ``store_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.app import Engine
from engine.crypto import MasterKey
from eventstore import open_store
from tests.engine.support import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(store_url: str, clock: ManualClock) -> AsyncIterator[Engine]:
    """A migrated engine on a fresh store of each backend, with a clock the test controls."""
    e = Engine(await open_store(store_url), MasterKey.generate(), clock)
    await e.migrate()
    try:
        yield e
    finally:
        await e.close()
