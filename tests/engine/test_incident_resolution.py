"""resolve_incidents (what settles leaks after a verified rotation) resolves each incident once: the saga and a
verify_remediation settling the same rotation at the same moment, or a person who resolved it first, leave one
resolution on its timeline, never overwritten."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.incidents import open_incident, resolve_incident, resolve_incidents
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from tests.engine.support import OPERATOR, migrated_engine

TENANT = "acme"


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url, TENANT) as e:
        yield e


async def leak(engine: Engine) -> str:
    return await open_incident(
        engine, TENANT, OPERATOR, kind="leaked_credential", severity="high", secret_id="prod/a", summary="found"
    )


async def resolutions(engine: Engine, incident_id: str) -> list[ev.IncidentResolved]:
    events, _ = await engine.load(naming.incident_stream(TENANT, incident_id))
    return [e for e in events if isinstance(e, ev.IncidentResolved)]


async def settle(engine: Engine, incident_ids: list[str], by: str) -> None:
    await resolve_incidents(
        engine, TENANT, incident_ids, resolution=f"rotation {by} verified", ref_kind="rotation", ref_id=by, actor=SYSTEM
    )


@pytest.mark.parametrize("settlers", [2, 5])
async def test_settlers_at_once_resolve_each_incident_once(engine: Engine, settlers: int) -> None:
    ids = [await leak(engine) for _ in range(3)]
    await asyncio.gather(*(settle(engine, ids, f"rot_{n}") for n in range(settlers)))
    for incident_id in ids:
        assert len(await resolutions(engine, incident_id)) == 1


async def test_a_resolution_by_hand_is_not_overwritten(engine: Engine) -> None:
    incident_id = await leak(engine)
    await resolve_incident(engine, TENANT, incident_id, OPERATOR, "rotated by hand and checked")
    await settle(engine, [incident_id], "rot_1")
    (only,) = await resolutions(engine, incident_id)
    assert only.resolution == "rotated by hand and checked"


async def test_an_open_incident_is_resolved_and_linked(engine: Engine) -> None:
    incident_id = await leak(engine)
    await settle(engine, [incident_id], "rot_1")
    events, _ = await engine.load(naming.incident_stream(TENANT, incident_id))
    linked, resolved = events[-2:]
    assert isinstance(linked, ev.IncidentLinked) and (linked.ref_kind, linked.ref_id) == ("rotation", "rot_1")
    assert isinstance(resolved, ev.IncidentResolved) and resolved.resolution == "rotation rot_1 verified"
