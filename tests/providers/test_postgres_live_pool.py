"""postgres_role under a live application: a psycopg_pool that keeps querying while the credential rotates.

The dependent switches as a real one would: new connections take the new username/password (the pool's
``kwargs`` is a callable) and the pool is drained so the connections opened with the old one go away.
Besides the pool, a client that opens a fresh connection per query (a CLI, a cron job, a serverless
function) runs beside it: that is the client that meets ``single``'s window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lockzero.providers.base import Credential
from tests.providers.support import Account, PgCluster, new_account, secret_value

#: How long a dependent takes to adopt a new value after it exists (e.g. its pull interval).
ADOPTION_DELAY_S = 0.5
WORKERS = 4


@pytest.fixture
def pg_account(request: pytest.FixtureRequest, pg_cluster: PgCluster) -> Iterator[Account]:
    acc = new_account("postgres", request.param, pg_cluster)
    try:
        yield acc
    finally:
        acc.drop()


@dataclass
class App:
    """Counts queries that succeed and fail, per client kind."""

    account: Account
    creds: dict[str, str] = field(default_factory=dict)
    ok: dict[str, int] = field(default_factory=lambda: {"pool": 0, "fresh": 0})
    failed: dict[str, int] = field(default_factory=lambda: {"pool": 0, "fresh": 0})
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def conninfo(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.account.port, "dbname": "postgres", **self.creds}

    async def query(self, kind: str, conn: Any) -> None:
        cur = await conn.execute(f"SELECT count(*) FROM {self.account.name}_t")  # the role's own table
        await cur.fetchone()

    async def pooled(self, pool: AsyncConnectionPool[Any]) -> None:
        while not self.stop.is_set():
            try:
                async with pool.connection(timeout=5) as conn:
                    await self.query("pool", conn)
                self.ok["pool"] += 1
            except Exception as exc:
                self.failed["pool"] += 1
                self.errors.append(f"pool: {type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(0.002)

    async def fresh(self) -> None:
        while not self.stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(**self.conninfo(), connect_timeout=5) as conn:
                    await self.query("fresh", conn)
                self.ok["fresh"] += 1
            except Exception as exc:
                self.failed["fresh"] += 1
                self.errors.append(f"fresh: {type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(0.005)


async def rotate_under_load(account: Account, **config: Any) -> App:
    app = App(account, {"user": account.name, "password": account.password})
    pool = AsyncConnectionPool(kwargs=app.conninfo, min_size=WORKERS, max_size=WORKERS, open=False)
    await pool.open(wait=True, timeout=10)
    provider = account.build(**config)
    tasks = [asyncio.create_task(app.pooled(pool)) for _ in range(WORKERS)] + [asyncio.create_task(app.fresh())]
    try:
        await asyncio.sleep(0.3)
        old = account.current
        new = await provider.create(Credential(secret_value(), old.username), old)
        assert (await provider.authenticate(new)).accepted
        await asyncio.sleep(ADOPTION_DELAY_S)  # the dependent has not pulled the new value yet
        app.creds = {"user": new.username or account.name, "password": new.value}
        await pool.drain()
        await asyncio.sleep(0.3)
        await provider.retire(old)
        await asyncio.sleep(0.3)
        assert account.refused(old)
        assert account.works(new)
    finally:
        app.stop.set()
        await asyncio.gather(*tasks)
        await pool.close()
        await provider.close()
    assert app.ok["pool"] > 50 and app.ok["fresh"] > 10, app.ok
    return app


@pytest.mark.parametrize("pg_account", ["alternating"], indirect=True)
@pytest.mark.parametrize("terminate", [False, True], ids=["keep-sessions", "terminate-sessions"])
async def test_alternating_rotation_loses_no_query(pg_account: Account, terminate: bool) -> None:
    app = await rotate_under_load(pg_account, terminate_sessions=terminate)
    print(f"\npostgres_role alternating (terminate_sessions={terminate}): ok={app.ok} failed={app.failed}")
    assert app.failed == {"pool": 0, "fresh": 0}, app.errors[:5]


@pytest.mark.parametrize("pg_account", ["single"], indirect=True)
async def test_single_rotation_failed_queries_are_counted(pg_account: Account) -> None:
    started = time.monotonic()
    app = await rotate_under_load(pg_account)
    print(
        f"\npostgres_role single: ok={app.ok} failed={app.failed} "
        f"(adoption delay {ADOPTION_DELAY_S}s, run {time.monotonic() - started:.1f}s); first errors: {app.errors[:2]}"
    )
    # Open sessions survive ALTER ROLE … PASSWORD: the pool loses nothing. A client that logs in during
    # the window between create and adoption is refused.
    assert app.failed["pool"] == 0, app.errors[:5]
    assert app.failed["fresh"] > 0
