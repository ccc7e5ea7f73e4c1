"""verify_remediation when the provider cannot be reached: both live checks are "unknown", never "passed".

A redis_acl secret whose admin URL goes through a TCP forwarder the test controls (the provider's AUTH checks
connect to the same host and port) rotates to completion and verifies. Then the forwarder is shut down: Redis
itself is unchanged (the new password works, the old one is refused, as an independent client sees directly),
but Lockzero can no longer see it, so ``verify`` must say so — ``verified`` false, both checks "unknown", one
reason each — rather than replay what the saga recorded. With the forwarder back, it verifies again.
Engine + RotationSaga on a real store (SQLite and PostgreSQL), a real Redis ACL user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.saga.provider_access import credential
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.saga.verification import verify
from lockzero.engine.unit_of_work import load_secret
from lockzero.providers.base import Credential
from tests.engine.support import OPERATOR, RecordingQueue, migrated_engine
from tests.saga.support import REDIS_HOST, REDIS_PORT, AclUser

TENANT = "acme"


class Forwarder:
    """A TCP forwarder to Redis on 127.0.0.1, in the test's event loop. ``stop`` closes the listening socket
    and every forwarded connection: the port then refuses connections, as an unreachable Redis would."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        self.connections += 1
        self._writers.append(client_w)
        try:
            redis_r, redis_w = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        except OSError:
            client_w.close()
            return
        self._writers.append(redis_w)
        await asyncio.gather(self._pipe(client_r, redis_w), self._pipe(redis_r, client_w))

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._writers.clear()
        self._tasks.clear()
        self._server = None


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(store_url, TENANT) as e:
        yield e


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    f = Forwarder()
    await f.start()
    try:
        yield f
    finally:
        if f._server is not None:
            await f.stop()


async def version(engine: Engine, secret_id: str, number: int) -> Credential:
    secret, _ = await load_secret(engine, TENANT, secret_id)
    cred = await credential(engine, secret, number)
    assert cred is not None
    return cred


async def test_unreachable_redis_makes_both_checks_unknown(
    engine: Engine, acl_user: AclUser, forwarder: Forwarder
) -> None:
    sid = f"prod/redis/{acl_user.name}"
    config = {"url": f"redis://127.0.0.1:{forwarder.port}/0", "username": acl_user.name}
    await register_secret(
        engine, TENANT, OPERATOR, secret_id=sid, provider="redis_acl", environment="prod",
        config=config, value=acl_user.password.encode(),
    )  # fmt: skip
    queue = RecordingQueue()
    started = await rotate(engine, queue, TENANT, sid, OPERATOR, "leaked in a CI log")
    assert queue.enqueued == [started.rotation_id]
    assert await RotationSaga(engine).run(TENANT, sid, started.rotation_id) == "completed"
    assert forwarder.connections > 0  # the rotation really went through the forwarder

    v1, v2 = await version(engine, sid, 1), await version(engine, sid, 2)
    assert acl_user.works(v2.value) and acl_user.refused(v1.value)
    reachable = await verify(engine, TENANT, sid, started.rotation_id)
    assert reachable.verified, reachable
    assert (reachable.checks.new_credential_valid, reachable.checks.old_credential_rejected) == ("passed", "passed")
    assert reachable.checks.reasons == {}

    await forwarder.stop()
    # Redis still holds exactly what the rotation left: only the path to it is gone.
    assert acl_user.works(v2.value) and acl_user.refused(v1.value)
    for _ in range(2):  # a repeated poll gives the same honest answer
        cut = await verify(engine, TENANT, sid, started.rotation_id)
        assert cut.verified is False, cut
        assert cut.status == "completed"
        assert (cut.checks.new_credential_valid, cut.checks.old_credential_rejected) == ("unknown", "unknown"), cut
        reasons = cut.checks.reasons
        assert set(reasons) == {"new_credential_valid", "old_credential_rejected"}, reasons
        for reason in reasons.values():
            assert "ConnectionError" in reason and acl_user.name in reason, reasons
            assert v1.value not in reason and v2.value not in reason
        assert "verified" not in cut.next_action and "not every check could be proven" in cut.next_action
        assert "rollback" not in cut.next_action

    await forwarder.start(forwarder.port)  # the path is back: the same rotation verifies again
    again = await verify(engine, TENANT, sid, started.rotation_id)
    assert again.verified, again
    assert (again.checks.new_credential_valid, again.checks.old_credential_rejected) == ("passed", "passed")
