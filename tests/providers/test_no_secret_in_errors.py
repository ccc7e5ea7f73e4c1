"""Admin passwords from the config never reach a ProviderError: not its message, repr, or printed traceback."""

from __future__ import annotations

import traceback
from typing import Any

from lockzero.providers.base import Credential, ProviderError
from lockzero.providers.mysql_user import MysqlUserProvider
from lockzero.providers.postgres_role import PostgresRoleProvider
from tests.providers.support import MYSQL_PORT, PgCluster, free_port

CANARY = "Canary-Admin-Pw-7f3e9a"
VALUE = "Canary-Credential-Value-51c0"


def providers(pg_port: int, mysql_port: int) -> list[Any]:
    return [
        PostgresRoleProvider({"dsn": f"postgresql://postgres:{CANARY}@127.0.0.1:{pg_port}/postgres", "role": "app",
                              "strategy": strategy})
        for strategy in ("alternating", "single")
    ] + [
        MysqlUserProvider({"dsn": f"mysql://root:{CANARY}@127.0.0.1:{mysql_port}/test", "user": "app",
                           "strategy": strategy})
        for strategy in ("alternating", "single")
    ]  # fmt: skip


async def every_call_fails_cleanly(provider: Any) -> list[str]:
    """Each admin call raises a clean ProviderError. (retire/discard in some strategies first log in with
    the credential itself, which is refused here, and then have nothing to do: those may return.)"""
    cred = Credential(VALUE, None)
    calls = {
        "create": lambda: provider.create(cred, Credential(VALUE + "-old", None)),
        "retire": lambda: provider.retire(cred),
        "restore": lambda: provider.restore(cred),
        "revoke": lambda: provider.revoke([cred]),
        "discard": lambda: provider.discard(cred),
        "observed_usage": lambda: provider.observed_usage(),
    }
    messages = {}
    try:
        for name, call in calls.items():
            try:
                await call()
            except ProviderError as exc:
                printed = "".join(traceback.format_exception(exc))
                for text in (str(exc), repr(exc), printed):
                    assert CANARY not in text
                    assert VALUE not in text
                messages[name] = str(exc)
    finally:
        await provider.close()
    assert {"create", "restore", "revoke", "observed_usage"} <= messages.keys(), messages
    return list(messages.values())


async def test_dead_port_errors_name_the_operation_not_the_password() -> None:
    port = free_port()  # nothing listens there
    for provider in providers(port, port):
        messages = await every_call_fails_cleanly(provider)
        assert any("failed" in m for m in messages)
        # No answer from the server is "unknown", never a refusal (and never success).
        auth = await provider.authenticate(Credential(VALUE, "app"))
        assert auth.verdict == "unknown", auth
        assert VALUE not in auth.reason


async def test_refused_admin_password_errors_name_the_operation_not_the_password(pg_cluster: PgCluster) -> None:
    # Live servers that check the admin password and refuse the canary.
    for provider in providers(pg_cluster.port, MYSQL_PORT):
        messages = await every_call_fails_cleanly(provider)
        print(messages[0])
