"""Whole sagas through the engine (Engine + RotationSaga on a real store) on real database accounts:
rotate twice, roll back, then revoke, judged by real logins and by the engine's live verification."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.rotations import revoke, rollback, rotate
from lockzero.engine.queries.blast_radius import assess
from lockzero.engine.saga.provider_access import credential
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.saga.verification import verify
from lockzero.providers.base import Credential
from tests.engine.support import OPERATOR, RecordingQueue, migrated_engine
from tests.providers.support import Account

TENANT = "acme"


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    """On each event-store backend (tests/conftest.py's ``store_url``: SQLite and PostgreSQL)."""
    async with migrated_engine(store_url, TENANT) as e:
        yield e


async def current(engine: Engine, secret_id: str, version: int) -> Credential:
    from lockzero.engine.unit_of_work import load_secret

    secret, _ = await load_secret(engine, TENANT, secret_id)
    cred = await credential(engine, secret, version)
    assert cred is not None
    return cred


async def test_rotate_rollback_revoke_through_the_engine(engine: Engine, account: Account) -> None:
    sid = await account.register(engine, TENANT)
    queue, saga = RecordingQueue(), RotationSaga(engine)
    v1 = await current(engine, sid, 1)
    assert v1.username == account.name

    # A held session shows in the blast radius as observed usage.
    account.hold_session(v1)
    radius = await assess(engine, TENANT, sid)
    assert any(account.name in u.detail for u in radius.observed_usage), radius.observed_usage

    started = await rotate(engine, queue, TENANT, sid, OPERATOR, "leaked in a CI log")
    assert queue.enqueued == [started.rotation_id]
    assert await saga.run(TENANT, sid, started.rotation_id) == "completed"
    v2 = await current(engine, sid, 2)
    assert v2.username == (account.clone if account.alternating else account.name)
    assert account.works(v2) and account.refused(v1)
    check = await verify(engine, TENANT, sid, started.rotation_id)
    assert check.verified, check
    assert (check.checks.new_credential_valid, check.checks.old_credential_rejected) == ("passed", "passed")

    again = await rotate(engine, queue, TENANT, sid, OPERATOR, "scheduled")
    assert await saga.run(TENANT, sid, again.rotation_id) == "completed"
    v3 = await current(engine, sid, 3)
    assert v3.username == account.name
    assert account.works(v3) and account.refused(v2) and account.refused(v1)

    back = await rollback(engine, queue, TENANT, sid, OPERATOR, "v3 broke the reporting job")
    assert back.restored_version == "v2"
    assert await saga.run(TENANT, sid, back.rotation_id) == "completed"
    assert account.works(v2) and account.refused(v3)
    assert (await verify(engine, TENANT, sid, back.rotation_id)).verified

    session = account.hold_session(v2)
    result = await revoke(engine, TENANT, sid, OPERATOR, "the whole database leaked")
    assert result.status == "revoked"
    assert account.refused(v1) and account.refused(v2) and account.refused(v3)
    assert not account.alive(session)
    assert (await verify(engine, TENANT, sid, result.rotation_id)).checks.old_credential_rejected == "passed"
