"""Registration checks what it is given and never changes a target's permissions; deletion is a tombstone the
id can be registered again over; a rollback waits for approvals like a rotation. On real Redis, both backends."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
import redis

from lockzero.engine.app import Engine
from lockzero.engine.commands import approvals, secrets, tenants
from lockzero.engine.commands.policies import update_policy
from lockzero.engine.commands.rotations import revoke, rollback, rotate
from lockzero.engine.commands.tombstone import delete_secret
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from tests.engine.support import OPERATOR, RunNow, scalar
from tests.saga.support import AclUser

AGENT = ev.EventMeta(actor_id="key_agent_1", actor_type="agent")
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
async def acme(engine: Engine) -> None:
    """tests/engine/conftest.py's engine, with the tenant every test here works in."""
    await tenants.create_tenant(engine, "acme", OPERATOR)


@pytest.fixture
def user(acl_user: AclUser) -> AclUser:
    return acl_user


def config(username: str, **extra: Any) -> dict[str, Any]:
    return {"url": REDIS_URL, "username": username, **extra}


async def add(engine: Engine, sid: str, cfg: dict[str, Any], value: bytes | None = None, **kw: Any) -> Any:
    return await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id=sid, provider="redis_acl", environment="prod", config=cfg, value=value, **kw
    )


async def stream_length(engine: Engine, sid: str) -> int:
    _, version = await engine.load(naming.secret_stream("acme", sid))
    return version


async def stored_values(engine: Engine, sid: str) -> int:
    return int(
        await scalar(
            engine, "SELECT count(*) FROM lz_secret_versions WHERE tenant = ? AND secret_id = ?", ("acme", sid)
        )
    )


async def test_a_wrong_imported_value_is_refused_and_leaves_nothing_behind(engine: Engine, user: AclUser) -> None:
    sid = f"prod/redis/{user.name}"
    with pytest.raises(InvalidInput, match=r"refused by redis_acl.*WRONGPASS.*nothing was registered"):
        await add(engine, sid, config(user.name), b"not-the-password-" + uuid.uuid4().hex.encode())
    assert await stream_length(engine, sid) == 0 and await stored_values(engine, sid) == 0
    assert (await secrets.list_secrets(engine, "acme", secrets.SecretFilter())).secrets == []

    await add(engine, sid, config(user.name), user.password.encode())
    events, _ = await engine.load(naming.secret_stream("acme", sid))
    registered = events[0]
    assert isinstance(registered, ev.SecretRegistered) and registered.value_check == "validated"


async def test_no_validate_is_recorded(engine: Engine, user: AclUser) -> None:
    sid = f"prod/redis/{user.name}"
    await add(engine, sid, config(user.name), b"unchecked-value-1234", validate_value=False)
    events, _ = await engine.load(naming.secret_stream("acme", sid))
    registered = events[0]
    assert isinstance(registered, ev.SecretRegistered) and registered.value_check == "skipped"


async def test_a_missing_redis_user_is_an_error_unless_acl_rules_name_its_permissions(engine: Engine) -> None:
    name = f"lzt-missing-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(REDIS_URL)
    try:
        with pytest.raises(InvalidInput, match=r"does not exist.*acl_rules"):
            await add(engine, f"prod/{name}", config(name))
        assert admin.execute_command("ACL", "GETUSER", name) is None, "nothing was created"
        assert await stream_length(engine, f"prod/{name}") == 0

        await add(engine, f"prod/{name}", config(name, acl_rules="~cache:* +get +set"))
        created = admin.execute_command("ACL", "GETUSER", name)
        assert created is not None
        rules = dict(zip(created[::2], created[1::2], strict=True)) if isinstance(created, list) else created
        assert b"+get" in rules[b"commands"] and b"+set" in rules[b"commands"], rules
        assert b"+@all" not in rules[b"commands"]
    finally:
        with contextlib.suppress(redis.RedisError):
            admin.execute_command("ACL", "DELUSER", name)
        admin.close()


async def test_registration_issuing_v1_keeps_the_users_permissions(engine: Engine, user: AclUser) -> None:
    user.setuser("-@all", "+get")
    before = user.rules("commands")
    await add(engine, f"prod/redis/{user.name}", config(user.name))
    assert user.rules("commands") == before
    assert len(user.passwords()) == 2, "v1 was added beside the password in use, nothing else changed"


async def test_a_second_secret_on_the_same_account_needs_allow_shared(engine: Engine, user: AclUser) -> None:
    await add(engine, "prod/a", config(user.name), user.password.encode())
    # Same server and user, spelled another way: still the same account.
    other = {"url": "redis://default@127.0.0.1:6379/3", "username": user.name}
    with pytest.raises(Conflict, match=r"prod/a.*--allow-shared"):
        await add(engine, "prod/b", other, user.password.encode())
    assert await stream_length(engine, "prod/b") == 0
    await add(engine, "prod/b", other, user.password.encode(), allow_shared=True)
    events, _ = await engine.load(naming.secret_stream("acme", "prod/b"))
    assert isinstance(events[0], ev.SecretRegistered) and events[0].shared_account


async def test_delete_shreds_values_keeps_history_and_frees_the_id(engine: Engine, user: AclUser) -> None:
    sid = f"prod/redis/{user.name}"
    await add(engine, sid, config(user.name), user.password.encode())
    queue = RunNow(engine)
    started = await rotate(engine, queue, "acme", sid, OPERATOR, "scheduled")
    assert await stored_values(engine, sid) == 2
    history_before = await stream_length(engine, sid)

    revoked = await revoke(engine, "acme", sid, OPERATOR, "the key is being abused")
    assert revoked.status == "revoked"
    with pytest.raises(Conflict):
        await rotate(engine, queue, "acme", sid, OPERATOR, "again")

    shredded = await delete_secret(engine, "acme", sid, OPERATOR, "replaced after revocation")
    assert shredded == [1, 2]
    assert await stored_values(engine, sid) == 0, "every value crypto-shredded"
    events, _ = await engine.load(naming.secret_stream("acme", sid))
    assert len(events) > history_before and isinstance(events[-1], ev.SecretDeleted), "history kept, tombstone last"
    assert any(isinstance(e, ev.RotationRequested) and e.rotation_id == started.rotation_id for e in events)
    assert fold_secret(events) is None
    assert (await secrets.list_secrets(engine, "acme", secrets.SecretFilter())).secrets == []
    with pytest.raises(NotFound):
        await delete_secret(engine, "acme", sid, OPERATOR, "twice")

    # The documented way back from a revoked secret: delete, then register again (the provider issues v1).
    again = await add(engine, sid, config(user.name))
    assert again.current_version == "v1" and again.status == "active"
    more = await rotate(engine, queue, "acme", sid, OPERATOR, "first rotation of the new life")
    assert more.from_version == "v1" and more.to_version == "v2"


async def test_rollback_waits_for_approvals_like_a_rotation(engine: Engine, user: AclUser) -> None:
    sid = f"prod/redis/{user.name}"
    await add(engine, sid, config(user.name), user.password.encode())
    queue = RunNow(engine)
    await rotate(engine, queue, "acme", sid, OPERATOR, "scheduled")
    await update_policy(engine, "acme", sid, OPERATOR, required_approvals=2)
    back = await rollback(engine, queue, "acme", sid, AGENT, "v2 broke something")
    assert back.status == "pending_approval" and back.note and "2 human approval" in back.note, back
    assert queue.enqueued[-1] != back.rotation_id, "nothing runs before people approve"
    assert user.refused(user.password), "v1 is still retired"

    await approvals.approve(engine, "acme", back.rotation_id, "alice", queue)
    assert user.refused(user.password)
    await approvals.approve(engine, "acme", back.rotation_id, "bob", queue)
    assert queue.enqueued[-1] == back.rotation_id
    assert user.works(user.password), "v1 restored once two people approved"
