"""A rotation's status is derived in one place (engine/domain/rotation_status.py): the aggregate and the rm_rotations
read model, folding the same events, always agree, and both match the status's definition written out here."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation, fold_secret
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.engine.support import ManualClock, scalar

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS: tuple[ev.SagaStep, ...] = ("create", "validate", "shift", "retire", "verify")
_ids = itertools.count()


def definition(r: Rotation) -> str:
    """What the status means, spelled out independently of the implementation."""
    if r.outcome is not None:
        return r.outcome
    if not r.approved:
        return "pending_approval"
    if any(s.status == "failed" and not s.compensating for s in r.steps):
        return "compensating"
    return "in_progress"


@st.composite
def rotation_lives(draw: st.DrawFn) -> list[ev.Event]:
    """One rotation's events in an order the saga could record them, cut off anywhere."""
    ids = {"tenant": "acme", "secret_id": "prod/db", "rotation_id": "rot-1"}
    n = itertools.count(1)

    def at() -> datetime:
        return T0 + timedelta(seconds=next(n))

    required = draw(st.integers(0, 2))
    events: list[ev.Event] = [
        ev.RotationRequested(
            at=at(), **ids, kind="rotate", reason="leak", from_version=1, to_version=2, required_approvals=required
        )
    ]
    given_approvals = draw(st.integers(0, required))
    events += [ev.RotationApproved(at=at(), **ids, by=f"person-{i}") for i in range(given_approvals)]
    if given_approvals < required:
        return events
    if required:
        people = tuple(f"person-{i}" for i in range(required))
        events.append(ev.RotationApprovalsMet(at=at(), **ids, approvers=people))
    compensating = False
    for step in draw(st.lists(st.sampled_from(STEPS), max_size=6)):
        events.append(ev.SagaStepStarted(at=at(), **ids, step=step, compensating=compensating))
        if draw(st.booleans()):
            events.append(ev.SagaStepCompleted(at=at(), **ids, step=step, compensating=compensating))
        else:
            events.append(ev.SagaStepFailed(at=at(), **ids, step=step, compensating=compensating, error="refused"))
            compensating = True
    if draw(st.booleans()):
        outcome = "compensated" if compensating else draw(st.sampled_from(["completed", "failed", "cancelled"]))
        events.append(ev.RotationFinished(at=at(), **ids, outcome=outcome))
    return events


async def _read_model_status(db: Path, events: list[ev.Event]) -> str:
    engine = Engine(await open_store(f"sqlite:///{db}"), MasterKey.generate(), ManualClock())
    try:
        await engine.migrate()
        meta = ev.EventMeta(actor_id="test", actor_type="system")
        await engine.append(naming.secret_stream("acme", "prod/db"), events, meta)
        return str(await scalar(engine, "SELECT status FROM rm_rotations WHERE rotation_id = 'rot-1'"))
    finally:
        await engine.close()


REGISTERED = ev.SecretRegistered(
    at=T0,
    tenant="acme",
    secret_id="prod/db",
    provider="generated",
    environment="prod",
    labels={},
    policy=ev.Policy(),
    has_config=False,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(life=rotation_lives())
def test_aggregate_and_read_model_agree_on_the_status(life: list[ev.Event], tmp_path: Path) -> None:
    secret = fold_secret([REGISTERED, *life])
    assert secret is not None
    (rotation,) = secret.rotations
    assert rotation.status == definition(rotation)
    db = tmp_path / f"status-{next(_ids)}.db"
    assert asyncio.run(_read_model_status(db, [REGISTERED, *life])) == rotation.status


def test_a_finished_rotation_keeps_its_outcome_whatever_was_recorded_before() -> None:
    ids = {"tenant": "acme", "secret_id": "prod/db", "rotation_id": "rot-1"}
    life: list[ev.Event] = [
        ev.RotationRequested(at=T0, **ids, kind="rotate", reason="r", from_version=1, to_version=2),
        ev.SagaStepFailed(at=T0, **ids, step="validate", error="refused"),
        ev.RotationFinished(at=T0, **ids, outcome="compensated"),
    ]
    secret = fold_secret([REGISTERED, *life])
    assert secret is not None
    assert [r.status for r in secret.rotations] == ["compensated"]


@pytest.mark.parametrize("required", [0, 1, 3])
def test_a_requested_rotation_waits_for_people_only_when_policy_asks(required: int) -> None:
    ids = {"tenant": "acme", "secret_id": "prod/db", "rotation_id": "rot-1"}
    requested = ev.RotationRequested(
        at=T0, **ids, kind="rotate", reason="r", from_version=1, to_version=2, required_approvals=required
    )
    secret = fold_secret([REGISTERED, requested])
    assert secret is not None
    assert secret.rotations[0].status == ("pending_approval" if required else "in_progress")
