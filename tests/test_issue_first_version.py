"""Without --value-stdin, a provider that can issue a credential creates v1 at registration (SPEC §6)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets, tenants
from lockzero.engine.domain.errors import Conflict
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.engine.support import OPERATOR


@pytest.fixture
def acl_user() -> Iterator[str]:
    name = f"lzt-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis()
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", "~*", "+@all")  # no password yet
    try:
        yield name
    finally:
        admin.execute_command("ACL", "DELUSER", name)
        admin.close()


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Engine]:
    e = Engine(await open_store(sqlite_url), MasterKey.generate())
    await e.migrate()
    await tenants.create_tenant(e, "acme", OPERATOR)
    try:
        yield e
    finally:
        await e.close()


async def test_redis_acl_issues_v1_that_authenticates(engine: Engine, acl_user: str) -> None:
    summary = await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id="prod/cache", provider="redis_acl", environment="prod",
        config={"url": "redis://127.0.0.1:6379/0", "username": acl_user},
    )  # fmt: skip
    assert summary.current_version == "v1"
    value = await secrets.read_version_value(engine, "acme", "prod/cache", 1)
    assert value is not None and len(value) >= 32
    client = redis.Redis(username=acl_user, password=value.decode())
    try:
        assert client.ping() is True  # the issued credential really works at Redis
    finally:
        client.close()
    # A second registration of the same id is refused before anything is issued at the provider.
    passwords_before = redis.Redis().execute_command("ACL", "GETUSER", acl_user)
    with pytest.raises(Conflict):
        await secrets.register_secret(
            engine, "acme", OPERATOR, secret_id="prod/cache", provider="redis_acl", environment="prod",
            config={"url": "redis://127.0.0.1:6379/0", "username": acl_user},
        )  # fmt: skip
    assert redis.Redis().execute_command("ACL", "GETUSER", acl_user) == passwords_before
