"""A saga that fails must leave its rotation_failed incident, even when the runner dies while finishing.

The runner is stopped at the one point that used to lose the incident (between the last compensation and the
recorded outcome), then a fresh runner resumes from the events alone. On real Redis, both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets
from lockzero.engine.commands.incidents import active_incidents
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.incident import fold_incident
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.saga.rotation import Finish, RotationSaga, failure_incident_id, next_action
from tests.engine.support import OPERATOR, migrated_engine
from tests.saga.support import AclUser


class Recording:
    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        return None  # the test drives the saga by hand


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url) as e:
        yield e


@pytest.fixture
def user(acl_user: AclUser) -> AclUser:
    return acl_user


@pytest.mark.parametrize("crash", ["before_incident", "after_incident"])
async def test_a_runner_dying_while_finishing_a_failed_saga_leaves_exactly_one_incident(
    engine: Engine, user: AclUser, crash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "lockzero.engine.saga.rotation.VALIDATE_ATTEMPTS", 1
    )  # one WRONGPASS is enough to fail validate
    sid = f"prod/redis/{user.name}"
    await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id=sid, provider="redis_acl", environment="prod",
        config={"url": "redis://127.0.0.1:6379/0", "username": user.name}, value=user.password.encode(),
    )  # fmt: skip
    user.setuser("off")  # Redis refuses every AUTH: validate fails, the saga compensates
    started = await rotate(engine, Recording(), "acme", sid, OPERATOR, "leak")
    doomed = RotationSaga(engine)
    stream = naming.secret_stream("acme", sid)
    while True:
        events, metas, version = await engine.load_with_meta(stream)
        secret = fold_secret(events, metas)
        assert secret is not None
        rotation = secret.rotation(started.rotation_id)
        assert rotation is not None
        action = next_action(rotation)
        if isinstance(action, Finish):
            assert action.outcome == "compensated"
            if crash == "after_incident":
                await doomed.open_failure_incident(secret, rotation, action.outcome)
            break  # the process dies here: the outcome is never recorded by this runner
        await doomed._advance(secret, rotation, version, action)

    assert await RotationSaga(engine).run("acme", sid, started.rotation_id) == "compensated"
    assert await RotationSaga(engine).run("acme", sid, started.rotation_id) == "compensated"  # and again: no-op

    failed = [
        i for i in (await active_incidents(engine, "acme", secret_id=sid)).incidents if i.kind == "rotation_failed"
    ]
    assert [i.incident_id for i in failed] == [failure_incident_id(started.rotation_id)], failed
    assert started.rotation_id in failed[0].summary and "WRONGPASS" in failed[0].summary
    incident_events, _ = await engine.load(naming.incident_stream("acme", failed[0].incident_id))
    incident = fold_incident(incident_events)
    assert incident is not None and len(incident_events) == 1, "opened once, not twice"
    events, _ = await engine.load(stream)
    finished = fold_secret(events)
    assert finished is not None and finished.current_version == 1
