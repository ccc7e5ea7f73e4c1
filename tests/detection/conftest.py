"""Detection fixtures: a migrated engine per backend (through tests/conftest.py's ``store_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.engine.support import ManualClock


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    e = Engine(await open_store(store_url), MasterKey.generate(), ManualClock())
    await e.migrate()
    try:
        yield e
    finally:
        await e.close()
