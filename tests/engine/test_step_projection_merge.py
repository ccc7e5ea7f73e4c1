"""project() writes a run of saga step events of one rotation as one rm_rotations update. Property: for any
sequence of step events and finishes (of two rotations, interleaved), projecting them in one append leaves every
rotation's row exactly as projecting each event in an append of its own (one update per event) does, on both
backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from tests.engine.support import OPERATOR, T0, ManualClock, migrated_engine

TENANT = "acme"
STEPS: tuple[ev.SagaStep, ...] = ("create", "validate", "shift", "retire", "verify")

#: (which of the two rotations, event kind, step, compensating)
steps = st.lists(
    st.tuples(
        st.sampled_from((0, 1)),
        st.sampled_from(("started", "completed", "failed", "finished")),
        st.sampled_from(STEPS),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url, TENANT, clock=ManualClock()) as e:
        yield e


def step_event(rotation_id: str, secret_id: str, i: int, kind: str, step: ev.SagaStep, comp: bool) -> ev.Event:
    common: dict[str, Any] = dict(
        at=T0 + timedelta(seconds=i), tenant=TENANT, secret_id=secret_id, rotation_id=rotation_id, step=step
    )
    if kind == "started":
        return ev.SagaStepStarted(**common, compensating=comp)
    if kind == "completed":
        return ev.SagaStepCompleted(**common, compensating=comp)
    if kind == "finished":
        # Another handler writing the same row, between step events: the merged update must not pass over it.
        del common["step"]
        return ev.RotationFinished(**common, outcome="completed" if comp else "compensated")
    return ev.SagaStepFailed(**common, compensating=comp, error="boom")


async def rows(engine: Engine, rotation_ids: list[str]) -> list[tuple[Any, ...]]:
    async with engine.store.reader() as tx:
        out = []
        for rid in rotation_ids:
            row = await tx.fetchone(
                "SELECT status, updated_at, finished_at FROM rm_rotations WHERE tenant = ? AND rotation_id = ?",
                (TENANT, rid),
            )
            assert row is not None
            out.append(tuple(row))
        return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
async def test_one_append_projects_as_one_event_per_append(engine: Engine, sequence: list[Any]) -> None:
    runs: dict[str, list[str]] = {}
    for mode in ("together", "apart"):
        secret_id = f"prod/{mode}-{uuid.uuid4().hex[:8]}"
        stream = naming.secret_stream(TENANT, secret_id)
        rotations = [f"rot_{uuid.uuid4().hex[:12]}" for _ in range(2)]
        requested = [
            ev.RotationRequested(
                at=T0, tenant=TENANT, secret_id=secret_id, rotation_id=rid, kind="rotate", reason="test",
                from_version=1, to_version=2,
            )
            for rid in rotations
        ]  # fmt: skip
        await engine.append(stream, requested, OPERATOR)
        events = [step_event(rotations[w], secret_id, i, k, s, c) for i, (w, k, s, c) in enumerate(sequence)]
        if mode == "together":
            await engine.append(stream, events, OPERATOR)
        else:
            for e in events:
                await engine.append(stream, [e], OPERATOR)
        runs[mode] = rotations
    together, apart = await rows(engine, runs["together"]), await rows(engine, runs["apart"])
    assert together == apart
    # Each rotation's row carries the time of its last event of the sequence (when it had one).
    for w, row in enumerate(together):
        last = max((i for i, (who, *_) in enumerate(sequence) if who == w), default=None)
        if last is not None:
            assert row[1] == iso(T0 + timedelta(seconds=last)), (row, sequence)
