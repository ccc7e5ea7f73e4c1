"""Secret streams folded once per process (engine/folded_secrets.py): a cached fold is only ever extended by
what was appended since, in any process, and is never trusted for a stream that is not the one it folded.

Two engines share one store, as two API or worker processes do, each with its own cache; every operation is
followed by a check that both engines' loads equal a fold of the whole stream read afresh.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.commands import policies, rotations
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Secret, fold_secret
from lockzero.engine.security.crypto import MasterKey
from tests.engine.support import OPERATOR, RunNow, migrated_engine

OPS = st.lists(
    st.tuples(st.sampled_from(["load", "policy", "rotate"]), st.integers(0, 1), st.integers(1, 1000)),
    min_size=1,
    max_size=12,
)


async def fresh_fold(engine: Engine, stream: str) -> tuple[Secret | None, int]:
    events, metas, version = await engine.load_with_meta(stream)
    return fold_secret(events, metas), version


@pytest.fixture
async def engines(store_url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    key = MasterKey.generate()
    async with migrated_engine(store_url, master_key=key) as a, migrated_engine(store_url, None, master_key=key) as b:
        yield a, b


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
async def test_every_load_equals_a_fold_of_the_whole_stream(
    engines: tuple[Engine, Engine], ops: list[tuple[str, int, int]]
) -> None:
    sid = f"app/{uuid.uuid4().hex[:10]}"
    stream = naming.secret_stream("acme", sid)
    await register_secret(engines[0], "acme", OPERATOR, secret_id=sid, provider="generated", environment="prod")
    for op, who, n in ops:
        engine = engines[who]
        if op == "policy":
            await policies.update_policy(engine, "acme", sid, OPERATOR, max_age_s=3600 + n)
        elif op == "rotate":
            await rotations.rotate(engine, RunNow(engine), "acme", sid, OPERATOR, f"rotation {n}")
        expected = await fresh_fold(engine, stream)
        for e in engines:
            assert await e.secrets.load(stream) == expected


async def test_a_stream_that_is_not_the_one_folded_is_folded_again(engines: tuple[Engine, Engine]) -> None:
    """As after a restore from an older backup: the cached version's event is gone, another stands there."""
    engine, _ = engines
    stream = naming.secret_stream("acme", "app/restored")
    await register_secret(engine, "acme", OPERATOR, secret_id="app/restored", provider="generated", environment="prod")
    await policies.update_policy(engine, "acme", "app/restored", OPERATOR, max_age_s=111)
    cached, version = await engine.secrets.load(stream)
    assert cached is not None and cached.policy.max_age_s == 111
    async with engine.store.transaction() as tx:
        await tx.execute("DELETE FROM lz_events WHERE stream = ? AND version = ?", (stream, version))
    await policies.update_policy(engine, "acme", "app/restored", OPERATOR, max_age_s=222)
    reloaded, again = await engine.secrets.load(stream)
    assert again == version and reloaded is not None and reloaded.policy.max_age_s == 222
    assert (reloaded, again) == await fresh_fold(engine, stream)


async def test_a_missing_stream_is_none_and_not_kept(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    assert await engine.secrets.load(naming.secret_stream("acme", "app/none")) == (None, 0)
