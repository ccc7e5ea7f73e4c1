"""The usage-anomaly watcher on real systems: after a rotation, a client that keeps using the old credential
(Redis: AUTH with the removed password; PostgreSQL and MariaDB: a session of the retired alternate account)
opens one usage_anomaly incident naming the account and the evidence; polling again adds nothing; a rotation
requested after it and verified resolves it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.incidents import active_incidents
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.detection.anomalies import watch_pass
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.queries.blast_radius import assess
from lockzero.engine.queries.timeline import incident_timeline
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.workers.inprocess import InProcessQueue
from tests.engine.support import OPERATOR, RecordingQueue, migrated_engine
from tests.providers.support import Account, new_account
from tests.saga.support import AclUser

TENANT = "acme"


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(sqlite_url, TENANT) as e:
        yield e


async def rotate_now(engine: Engine, sid: str) -> str:
    started = await rotate(engine, RecordingQueue(), TENANT, sid, OPERATOR, "scheduled")
    assert await RotationSaga(engine).run(TENANT, sid, started.rotation_id) == "completed"
    return started.rotation_id


async def anomalies(engine: Engine, sid: str) -> list[str]:
    page = await active_incidents(engine, TENANT, kind="usage_anomaly", secret_id=sid)
    return [i.incident_id for i in page.incidents]


async def evidence(engine: Engine, incident_id: str) -> list[ev.UsageAnomalyObserved]:
    events, _ = await engine.load(naming.incident_stream(TENANT, incident_id))
    return [e for e in events if isinstance(e, ev.UsageAnomalyObserved)]


async def test_redis_old_password_after_rotation_is_an_anomaly_within_the_interval(
    engine: Engine, acl_user: AclUser
) -> None:
    sid = f"prod/redis/{acl_user.name}"
    config = {"url": "redis://127.0.0.1:6379/0", "username": acl_user.name}
    await register_secret(
        engine, TENANT, OPERATOR, secret_id=sid, provider="redis_acl", environment="prod",
        config=config, value=acl_user.password.encode(),
    )  # fmt: skip
    # Before any rotation a refused AUTH is nobody's old password: nothing to say.
    assert acl_user.auth_error("not-the-password") is not None
    assert await watch_pass(engine) == []

    await rotate_now(engine, sid)
    assert acl_user.auth_error(acl_user.password) is not None  # the old password is refused now

    queue = InProcessQueue(engine, reconcile_every_s=0.2, schedule_every_s=3600, watch_every_s=0.3)
    queue.start()
    try:
        for _ in range(100):  # 10 s at most; the interval is 0.3 s
            if await anomalies(engine, sid):
                break
            await asyncio.sleep(0.1)
    finally:
        await queue.close()
    [incident_id] = await anomalies(engine, sid)
    [seen] = await evidence(engine, incident_id)
    assert seen.signal == "auth_failure" and seen.version == 1
    assert acl_user.name in seen.detail and "127.0.0.1" in seen.detail
    assert acl_user.password not in seen.detail

    # The same ACL LOG entry on the next poll, and the next: no new evidence, no second incident.
    assert acl_user.auth_error(acl_user.password) is not None
    again = await watch_pass(engine)
    assert all(r.duplicate for r in again) and again
    assert await anomalies(engine, sid) == [incident_id]
    assert len(await evidence(engine, incident_id)) == 1

    # The timeline and the blast radius show it.
    timeline = await incident_timeline(engine, TENANT, incident_id)
    assert any("auth_failure v1" in e.summary and acl_user.name in e.summary for e in timeline.entries)
    radius = await assess(engine, TENANT, sid)
    assert any(u.source == "usage_anomaly" and "auth_failure" in u.detail for u in radius.observed_usage)
    assert radius.risk == "high"

    # A rotation requested after the anomaly, verified, resolves it.
    await rotate_now(engine, sid)
    assert await anomalies(engine, sid) == []


@pytest.fixture(params=["postgres", "mysql"])
def alternating(request: pytest.FixtureRequest) -> Iterator[Account]:
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgres" else None
    acc = new_account(request.param, "alternating", cluster)
    try:
        yield acc
    finally:
        acc.drop()


async def test_database_session_of_a_retired_account_is_an_anomaly(engine: Engine, alternating: Account) -> None:
    acc = alternating
    sid = await acc.register(engine, TENANT)
    session = acc.hold_session(acc.current)  # a client that never picks up the new credential
    assert await watch_pass(engine) == []  # v1 is current: its session is ordinary use

    await rotate_now(engine, sid)
    assert acc.refused(acc.current) and acc.alive(session)  # retired for new logins, the session goes on
    [recorded] = await watch_pass(engine)
    assert recorded.opened
    [incident_id] = await anomalies(engine, sid)
    [seen] = await evidence(engine, incident_id)
    assert seen.signal == "retired_session" and seen.version == 1
    assert acc.name in seen.detail and "127.0.0.1" in seen.detail and acc.password not in seen.detail
    assert (await watch_pass(engine))[0].duplicate
    assert len(await evidence(engine, incident_id)) == 1
    dump = json.dumps([str(e) for e in (await engine.load(naming.incident_stream(TENANT, incident_id)))[0]])
    assert acc.password not in dump

    # Rotating back makes the v1 account current again (with a new password): its session is no longer
    # a retired one, and the verified rotation resolves the incident.
    await rotate_now(engine, sid)
    assert await anomalies(engine, sid) == []
    assert await watch_pass(engine) == []
