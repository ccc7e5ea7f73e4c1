"""Usage baselines (engine/detection/baselines.py), shared by pull tokens and MCP keys: whatever the order of
uses, each address after the first is reported exactly once; a restarted process (a new Baselines on the same
table) remembers what was learned; a rate far above the token's own baseline is reported once per window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.detection.baselines import RATE_FLOOR, RATE_MIN_WINDOWS, RATE_WINDOW_S, Baselines
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.engine.support import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _engine(db: Path) -> Engine:
    engine = Engine(await open_store(f"sqlite:///{db}"), MasterKey.generate(), ManualClock())
    await engine.migrate()
    return engine


async def _new_sources(db: Path, uses: list[tuple[str, int]], restart_at: int) -> list[str]:
    engine = await _engine(db)
    try:
        baselines = Baselines(engine.store, "lz_key_baseline", "key_id")
        reported: list[str] = []
        for i, (source, second) in enumerate(uses):
            if i == restart_at:
                baselines = Baselines(engine.store, "lz_key_baseline", "key_id")  # what a new process sees
            for d in await baselines.observe("acme", "key_1", source, T0 + timedelta(seconds=second)):
                if d.kind == "new_source":
                    reported.append(d.subject)
        return reported
    finally:
        await engine.close()


ADDRESSES = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "::1"])
USES = st.lists(st.tuples(ADDRESSES, st.integers(0, 600)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uses=USES, restart_at=st.integers(0, 25))
def test_each_address_after_the_first_is_reported_once(
    uses: list[tuple[str, int]], restart_at: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    uses.sort(key=lambda u: u[1])
    db = tmp_path_factory.mktemp("baselines") / "b.db"
    reported = asyncio.run(_new_sources(db, uses, restart_at))
    first = uses[0][0]
    expected = list(dict.fromkeys(s for s, _ in uses if s != first))
    assert reported == expected


async def test_a_burst_far_above_the_baseline_is_reported_once_per_window(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "rate.db")
    try:
        baselines = Baselines(engine.store, "lz_key_baseline", "key_id")
        at = T0
        for _ in range(RATE_MIN_WINDOWS + 1):  # a quiet key: two calls a minute
            for _ in range(2):
                assert await baselines.observe("acme", "key_1", "10.0.0.1", at) == []
            at += timedelta(seconds=RATE_WINDOW_S)
        found = []
        for _ in range(RATE_FLOOR * 3):
            found += await baselines.observe("acme", "key_1", "10.0.0.1", at)
        assert [d.kind for d in found] == ["rate"]
        assert found[0].subject == str(int(at.timestamp()) // RATE_WINDOW_S)
    finally:
        await engine.close()
