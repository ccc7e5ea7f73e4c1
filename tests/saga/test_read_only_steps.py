"""Validate and verify change nothing (they only log in), so the saga records them with the appends around them.

A rotation's saga used to make seven appends (each step's intent before its side effect, its outcome with the next
intent); now, when its first login proves it, the intent and outcome of a step that changes nothing go in one append
with the outcome before it and the intent after it: five appends, the same events in the same order. A first login
that does not prove it records the previous outcome and the intent before any retry. Shown on both store backends
with a real Redis ACL user: the appends are told apart by their recorded time (one per append). (A runner killed
during that first login is resumed from the previous step: tests/saga/test_saga_model.py cuts every step there.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import groupby

import msgspec
import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.saga.rotation import RotationSaga
from tests.engine.support import OPERATOR, RecordingQueue, migrated_engine
from tests.saga.support import AclUser


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url) as e:
        yield e


async def _register(engine: Engine, user: AclUser) -> str:
    sid = f"prod/redis/{user.name}"
    await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id=sid, provider="redis_acl", environment="prod",
        config={"url": "redis://127.0.0.1:6379/0", "username": user.name}, value=user.password.encode(),
    )  # fmt: skip
    return sid


def _label(event_type: str, data: bytes) -> str:
    fields = msgspec.json.decode(data)
    return f"{event_type}:{fields['step']}" if "step" in fields else event_type


def _tag(kind: type[ev.Event], step: str = "") -> str:
    tag = str(kind.__struct_config__.tag)
    return f"{tag}:{step}" if step else tag


STARTED, COMPLETED = ev.SagaStepStarted, ev.SagaStepCompleted


async def _saga_appends(engine: Engine, sid: str) -> list[list[str]]:
    """The saga's appends on the secret's stream, from its first step on: each a list of its events."""
    recorded = await engine.store.read_stream(naming.secret_stream("acme", sid))
    appends = [[_label(e.type, e.data) for e in group] for _, group in groupby(recorded, key=lambda e: e.recorded_at)]
    first = next((i for i, a in enumerate(appends) if _tag(STARTED, "create") in a), len(appends))
    return appends[first:]


async def test_a_rotation_records_validate_and_verify_with_the_appends_around_them(
    engine: Engine, acl_user: AclUser
) -> None:
    sid = await _register(engine, acl_user)
    started = await rotate(engine, RecordingQueue(), "acme", sid, OPERATOR, "leak")
    assert await RotationSaga(engine).run("acme", sid, started.rotation_id) == "completed"
    assert await _saga_appends(engine, sid) == [
        [_tag(STARTED, "create")],
        [
            _tag(COMPLETED, "create"),
            _tag(ev.SecretVersionCreated),
            _tag(STARTED, "validate"),
            _tag(COMPLETED, "validate"),
            _tag(STARTED, "shift"),
            _tag(ev.SecretVersionActivated),
        ],
        [_tag(COMPLETED, "shift"), _tag(STARTED, "retire")],
        [
            _tag(COMPLETED, "retire"),
            _tag(ev.SecretVersionRetired),
            _tag(STARTED, "verify"),
            _tag(COMPLETED, "verify"),
            _tag(ev.RotationFinished),
        ],
    ]
    assert len(acl_user.passwords()) == 1  # the old password is gone, the new one works (verify said so)


async def test_a_refused_first_login_records_the_step_before_retrying(engine: Engine, acl_user: AclUser) -> None:
    """Retries, sleeps and compensation come only after the previous outcome and the intent are recorded: a runner
    loading then resumes validate instead of repeating create (which, after a compensation, would re-add the
    discarded password). A runner killed in those retries is resumed at validate by a fresh one."""
    sid = await _register(engine, acl_user)
    old_hashes = acl_user.passwords()
    started = await rotate(engine, RecordingQueue(), "acme", sid, OPERATOR, "leak")
    acl_user.setuser("off")  # AUTH is refused: validate's first login fails, then it retries (and sleeps)
    doomed = asyncio.create_task(RotationSaga(engine).run("acme", sid, started.rotation_id))
    recorded = [_tag(COMPLETED, "create"), _tag(ev.SecretVersionCreated), _tag(STARTED, "validate")]
    for _ in range(400):
        if (await _saga_appends(engine, sid))[1:] == [recorded]:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"validate's intent was not recorded: {await _saga_appends(engine, sid)}")
    added = acl_user.passwords()
    assert len(added) == 2  # create added the new password beside the old one
    doomed.cancel()  # the worker dies in validate's retries
    with pytest.raises(asyncio.CancelledError):
        await doomed

    acl_user.setuser("on")
    assert await RotationSaga(engine).run("acme", sid, started.rotation_id) == "completed"
    appends = await _saga_appends(engine, sid)
    assert appends[1] == recorded
    assert appends[2][:3] == [_tag(COMPLETED, "validate"), _tag(STARTED, "shift"), _tag(ev.SecretVersionActivated)]
    # create ran once; retire removed the old password: only the new one is left.
    assert sum(a.count(_tag(STARTED, "create")) for a in appends) == 1
    final = acl_user.passwords()
    assert len(final) == 1 and final[0] in added and final[0] not in old_hashes
