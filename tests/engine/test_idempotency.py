"""An idempotency key names one rotation for good: a keyed call answered with a rotation already in flight joins
it, so a retry after that rotation ended returns it again instead of starting a second one."""

from __future__ import annotations

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets, tenants
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.saga.rotation import RotationSaga
from tests.engine.support import OPERATOR


class Recording:
    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        return None


async def test_a_keyed_call_that_joined_a_rotation_gets_it_again_after_it_ended(engine: Engine) -> None:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id="prod/token", provider="generated", environment="prod"
    )
    queue = Recording()
    first = await rotate(engine, queue, "acme", "prod/token", OPERATOR, "leak")  # no key
    joined = await rotate(engine, queue, "acme", "prod/token", OPERATOR, "leak", idempotency_key="agent-retry-1")
    assert joined.rotation_id == first.rotation_id, "answered with the rotation in flight"
    assert await RotationSaga(engine).run("acme", "prod/token", first.rotation_id) == "completed"

    retried = await rotate(engine, queue, "acme", "prod/token", OPERATOR, "leak", idempotency_key="agent-retry-1")
    assert retried.rotation_id == first.rotation_id and retried.status == "completed", retried
    fresh = await rotate(engine, queue, "acme", "prod/token", OPERATOR, "leak", idempotency_key="another-key")
    assert fresh.rotation_id != first.rotation_id and (fresh.from_version, fresh.to_version) == ("v2", "v3")
