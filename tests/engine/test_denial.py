"""Denying a rotation that waits for people: one person's no cancels it, nothing runs, and nothing else can."""

from __future__ import annotations

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import approvals, denial, secrets, tenants
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.queries.history import rotation_history
from tests.engine.support import OPERATOR, RunNow

SID = "prod/db/password"


async def _pending(engine: Engine, queue: RunNow) -> str:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id=SID, provider="generated", environment="prod",
        policy=ev.Policy(required_approvals=2),
    )  # fmt: skip
    started = await rotate(engine, queue, "acme", SID, OPERATOR, "leaked in CI")
    assert started.status == "pending_approval"
    return started.rotation_id


async def test_one_denial_cancels_a_rotation_waiting_for_approvals(engine: Engine) -> None:
    queue = RunNow(engine)
    rotation_id = await _pending(engine, queue)
    await approvals.approve(engine, "acme", rotation_id, "alice", queue)
    before = len(await engine.store.read_stream(naming.secret_stream("acme", SID)))

    for person, reason, error in (
        ("bob", "  ", InvalidInput),
        ("", "no", InvalidInput),
        ("bob", "x" * 501, InvalidInput),
    ):
        with pytest.raises(error):
            await denial.deny(engine, "acme", rotation_id, person, reason)
    with pytest.raises(NotFound):
        await denial.deny(engine, "acme", "rot_nope", "bob", "no")
    with pytest.raises(NotFound):  # another tenant's rotation is not found, not denied
        await denial.deny(engine, "other", rotation_id, "bob", "no")
    assert len(await engine.store.read_stream(naming.secret_stream("acme", SID))) == before, "refusals wrote nothing"

    result = await denial.deny(engine, "acme", rotation_id, "bob", "not during the freeze")
    assert (result.status, result.denied_by) == ("cancelled", "bob")
    records = await engine.store.read_stream(naming.secret_stream("acme", SID))
    last = ev.decode(records[-1].data)
    assert isinstance(last, ev.RotationFinished) and last.outcome == "cancelled"
    assert last.reason == "denied by bob: not during the freeze"
    assert ev.decode_meta(records[-1].metadata).actor_id == "bob"

    # Nothing ran and nothing can start it now: approving or denying again is a conflict.
    with pytest.raises(Conflict):
        await approvals.approve(engine, "acme", rotation_id, "carol", queue)
    with pytest.raises(Conflict, match="cancelled"):
        await denial.deny(engine, "acme", rotation_id, "carol", "again")
    assert queue.enqueued == []
    history = await rotation_history(engine, "acme", SID)
    assert history.rotations[0].outcome == "cancelled" and history.rotations[0].steps == []
    assert [v.state for v in history.versions] == ["current"]


async def test_a_running_rotation_cannot_be_denied(engine: Engine) -> None:
    queue = RunNow(engine)
    rotation_id = await _pending(engine, queue)
    await approvals.approve(engine, "acme", rotation_id, "alice", queue)
    await approvals.approve(engine, "acme", rotation_id, "bob", queue)
    assert queue.enqueued == [rotation_id]
    with pytest.raises(Conflict, match="not waiting for approvals"):
        await denial.deny(engine, "acme", rotation_id, "carol", "too late")
