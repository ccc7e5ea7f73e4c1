"""Pull-side usage anomalies through the real pull read (engine.pull) and PullWatch, on both store backends:
a second source address raises one anomaly however many calls come from it; a removed dependent's token raises
one per address, not one per call; a rate far above the dependent's own baseline raises one per window."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.dependents import add_dependent
from lockzero.engine.commands.incidents import active_incidents
from lockzero.engine.commands.pull import current_for_dependent, identify
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.detection.anomalies import PullWatch
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from tests.engine.support import OPERATOR, ManualClock, migrated_engine

TENANT = "acme"
SID = "prod/app/api-key"


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url, TENANT, clock=ManualClock()) as e:
        await register_secret(
            e, TENANT, OPERATOR, secret_id=SID, provider="generated", environment="prod", config={},
            value=b"v1-value-0123456789abcdef",
        )  # fmt: skip
        yield e


async def evidence(engine: Engine) -> list[ev.UsageAnomalyObserved]:
    page = await active_incidents(engine, TENANT, kind="usage_anomaly", secret_id=SID)
    out = []
    for incident in page.incidents:
        events, _ = await engine.load(naming.incident_stream(TENANT, incident.incident_id))
        out += [e for e in events if isinstance(e, ev.UsageAnomalyObserved)]
    return out


async def test_second_address_is_one_anomaly_and_a_removed_token_is_too(engine: Engine) -> None:
    dep = await add_dependent(
        engine, TENANT, OPERATOR, secret_id=SID, service="billing", environment="prod", delivery="pull"
    )
    assert dep.token is not None
    watch = PullWatch(engine)

    async def pull(source: str) -> None:
        who = await identify(engine, dep.token or "")
        assert who is not None
        await current_for_dependent(engine, who, SID)
        await watch.pulled(TENANT, SID, dep.dependent_id, source)

    for _ in range(5):
        await pull("10.0.0.1")  # learned: its first address
    assert await evidence(engine) == []
    for _ in range(20):
        await pull("10.0.0.2")
    [seen] = await evidence(engine)
    assert seen.signal == "new_source" and "10.0.0.2" in seen.detail
    assert len((await active_incidents(engine, TENANT, kind="usage_anomaly")).incidents) == 1

    # A fresh PullWatch (another process, a restart) knows both addresses from the store.
    again = PullWatch(engine)
    await again.pulled(TENANT, SID, dep.dependent_id, "10.0.0.2")
    assert len(await evidence(engine)) == 1

    # No engine command removes a dependent yet (`dependent remove` is another task): append its event.
    removed_event = ev.DependentRemoved(
        at=engine.clock.now(), tenant=TENANT, secret_id=SID, dependent_id=dep.dependent_id
    )
    await engine.append(naming.secret_stream(TENANT, SID), [removed_event], OPERATOR)
    for _ in range(50):
        await watch.refused(dep.token, "10.0.0.9")
    await PullWatch(engine).refused(dep.token, "10.0.0.9")  # another process: the store dedupes
    removed = [e for e in await evidence(engine) if e.signal == "removed_token"]
    assert len(removed) == 1 and dep.dependent_id in removed[0].detail and dep.token not in removed[0].detail
    await watch.refused("lz_svc_never-issued", "10.0.0.9")  # an unknown token is no anomaly of anyone's
    assert len(await evidence(engine)) == 2


async def test_rate_far_above_its_own_baseline(engine: Engine) -> None:
    dep = await add_dependent(
        engine, TENANT, OPERATOR, secret_id=SID, service="worker", environment="prod", delivery="pull"
    )
    watch = PullWatch(engine)
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    for _ in range(8):  # a steady 3 pulls a minute builds the baseline
        for _ in range(3):
            await watch.pulled(TENANT, SID, dep.dependent_id, "10.0.0.1")
        clock.advance(seconds=60)
    assert await evidence(engine) == []
    for _ in range(200):  # then a burst in one minute
        await watch.pulled(TENANT, SID, dep.dependent_id, "10.0.0.1")
    [seen] = await evidence(engine)
    assert seen.signal == "pull_rate" and dep.dependent_id in seen.detail
