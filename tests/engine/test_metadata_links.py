"""get_secret_metadata reads its links (open incidents, the rotation in flight, compromised versions) in one
query: each kind lands in its own field, and compromised versions come in version order (v9 before v10)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.compromise import mark_compromised
from lockzero.engine.commands.incidents import open_incident
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.commands.tenants import create_tenant
from lockzero.engine.queries.metadata import secret_metadata
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.engine.support import OPERATOR

SID = "prod/app/token"


class HeldQueue:
    """Starts nothing: the test runs each saga itself, or leaves one in flight on purpose."""

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        return None


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    e = Engine(await open_store(store_url), MasterKey.generate())
    await e.migrate()
    await create_tenant(e, "acme", OPERATOR)
    await register_secret(e, "acme", OPERATOR, secret_id=SID, provider="generated", environment="prod", config={})
    try:
        yield e
    finally:
        await e.close()


async def test_links_land_in_their_own_fields_in_version_order(engine: Engine) -> None:
    for _ in range(10):  # v1 .. v11
        started = await rotate(engine, HeldQueue(), "acme", SID, OPERATOR, "drill")
        assert await RotationSaga(engine).run("acme", SID, started.rotation_id) == "completed"
    await mark_compromised(engine, "acme", SID, [10, 2, 9], incident_id=None, source="test", actor=OPERATOR)
    incident = await open_incident(
        engine, "acme", OPERATOR, kind="leaked_credential", severity="high", secret_id=SID, summary="seen in a log"
    )
    in_flight = await rotate(engine, HeldQueue(), "acme", SID, OPERATOR, "left in flight")

    meta = await secret_metadata(engine, "acme", SID)
    assert meta.compromised_versions == ["v2", "v9", "v10"]
    assert meta.open_incident_ids == [incident]
    assert meta.in_flight_rotation_id == in_flight.rotation_id
    assert meta.current_version == "v11"
