"""The rotation saga end to end with the two providers, on the embedded (SQLite) engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets
from lockzero.engine.commands.rotations import revoke, rollback, rotate
from lockzero.engine.saga import provider_access as access
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.saga.scheduler import run_pass
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.providers.base import Credential
from tests.engine.support import OPERATOR, ManualClock, RecordingQueue, folded_secret, migrated_engine
from tests.providers_ext.support import HookService, MotoServer


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Engine]:
    # The hook service listens on loopback: allowed here as LOCKZERO_OUTBOUND_ALLOW=127.0.0.1 would.
    async with migrated_engine(sqlite_url, clock=ManualClock(), outbound=OutboundPolicy.allowing("127.0.0.1")) as e:
        yield e


async def version(engine: Engine, secret_id: str, number: int) -> Credential:
    cred = await access.credential(engine, await folded_secret(engine, secret_id), number)
    assert cred is not None
    return cred


async def test_iam_rotate_rollback_grace_end(engine: Engine, moto: MotoServer) -> None:
    user, v1_id, v1_secret = moto.new_user()
    await secrets.register_secret(
        engine,
        "acme",
        OPERATOR,
        secret_id="prod/app/aws",
        provider="aws_iam_access_key",
        environment="prod",
        config=moto.config(user),
        value=v1_secret.encode(),
    )
    queue = RecordingQueue()
    saga = RotationSaga(engine)

    started = await rotate(engine, queue, "acme", "prod/app/aws", OPERATOR, "leaked in a public repo")
    assert await saga.run("acme", "prod/app/aws", started.rotation_id) == "completed"
    v2 = await version(engine, "prod/app/aws", 2)
    assert v2.username is not None and v2.username.startswith("AKIA")
    assert moto.keys(user) == {v1_id: "Inactive", v2.username: "Active"}
    # The stored value is the secret AWS issued: it signs as the user.
    arn = moto.client("sts", v2.username, v2.value).get_caller_identity()["Arn"]
    assert arn.endswith(f":user/{user}")

    back = await rollback(engine, queue, "acme", "prod/app/aws", OPERATOR, "the app broke")
    assert await saga.run("acme", "prod/app/aws", back.rotation_id) == "completed"
    assert moto.keys(user) == {v1_id: "Active", v2.username: "Inactive"}

    engine.clock.advance(days=8)  # type: ignore[attr-defined]
    report = await run_pass(engine, queue)
    assert report.expired_versions == ["prod/app/aws:v2"]
    assert moto.keys(user) == {v1_id: "Active"}


async def test_http_rotate_with_a_service_issued_value_then_revoke(engine: Engine) -> None:
    with HookService("hook-signing-secret-for-saga", issue_values=True) as service:
        service.seed("value-in-use-today", "svc-old")
        await secrets.register_secret(
            engine,
            "acme",
            OPERATOR,
            secret_id="prod/app/hook",
            provider="http",
            environment="prod",
            config=service.config(),
            value=b"value-in-use-today",
        )
        queue = RecordingQueue()
        saga = RotationSaga(engine)
        started = await rotate(engine, queue, "acme", "prod/app/hook", OPERATOR, "leaked")
        assert await saga.run("acme", "prod/app/hook", started.rotation_id) == "completed"
        v2 = await version(engine, "prod/app/hook", 2)
        assert service.status(v2.value) == "active" and service.status("value-in-use-today") == "retired"
        assert v2.username is not None and v2.username.startswith("svc-")

        revoked = await revoke(engine, "acme", "prod/app/hook", OPERATOR, "compromised host")
        assert await saga.run("acme", "prod/app/hook", revoked.rotation_id) == "completed"
        assert service.creds == {} and service.bad_signatures == 0
