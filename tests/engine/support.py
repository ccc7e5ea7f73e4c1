"""Helpers shared by the engine tests: a clock the test moves, an actor, table snapshots."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lockzero.engine.app import Engine
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.commands.tenants import create_tenant
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Secret, fold_secret
from lockzero.engine.domain.clock import Clock
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.security.crypto import MasterKey
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.eventstore import open_store

OPERATOR = ev.EventMeta(actor_id="test:operator", actor_type="operator")
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    """engine.clock is anything with now(); this one only moves when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


class RecordingQueue:
    """A rotation queue that only records what was enqueued: the test runs the saga itself."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        self.enqueued.append(rotation_id)


class RunNow(RecordingQueue):
    """A rotation queue that records each rotation and runs its saga at once, in the caller's task."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        await super().enqueue(tenant, secret_id, rotation_id)
        await RotationSaga(self.engine).run(tenant, secret_id, rotation_id)


@asynccontextmanager
async def migrated_engine(
    url: str,
    tenant: str | None = "acme",
    *,
    clock: Clock | None = None,
    outbound: OutboundPolicy | None = None,
    master_key: MasterKey | None = None,
) -> AsyncIterator[Engine]:
    """An engine on the store at ``url``, migrated, with ``master_key`` (else a fresh one) and ``tenant`` created
    (unless None); closed afterwards."""
    e = Engine(await open_store(url), master_key or MasterKey.generate(), clock, outbound)
    await e.migrate()
    try:
        if tenant is not None:
            await create_tenant(e, tenant, OPERATOR)
        yield e
    finally:
        await e.close()


async def add_generated(
    engine: Engine,
    secret_id: str,
    *,
    environment: str = "prod",
    labels: dict[str, str] | None = None,
    **policy: object,
) -> None:
    """Register a ``generated`` secret in tenant acme, its policy made of ``policy``'s fields."""
    await register_secret(
        engine,
        "acme",
        OPERATOR,
        secret_id=secret_id,
        provider="generated",
        environment=environment,
        labels=labels,
        policy=ev.Policy(**policy),  # type: ignore[arg-type]
    )


async def add_imported_redis(
    engine: Engine, tenant: str, secret_id: str, value: bytes, *, username: str = "app", environment: str = "prod"
) -> None:
    """Register a redis_acl secret whose value is imported as v1 without asking Redis (no such user exists):
    for tests about storage, replay and keys, not about the provider."""
    await register_secret(
        engine,
        tenant,
        OPERATOR,
        secret_id=secret_id,
        provider="redis_acl",
        environment=environment,
        config={"url": "redis://default:pw@127.0.0.1:6379/0", "username": username},
        value=value,
        validate_value=False,
    )


async def folded_secret(engine: Engine, secret_id: str, tenant: str = "acme") -> Secret:
    """The secret as its stream's events fold to; it must exist."""
    events, metas, _ = await engine.load_with_meta(naming.secret_stream(tenant, secret_id))
    secret = fold_secret(events, metas)
    assert secret is not None
    return secret


async def scalar(engine: Engine, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the one row ``sql`` reads (there must be one)."""
    async with engine.store.reader() as tx:
        row = await tx.fetchone(sql, params)
    assert row is not None, sql
    return row[0]


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


async def table_rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, ordered by all of its columns (SELECT * ORDER BY 1, 2, …)."""
    async with engine.store.transaction() as tx:
        first = await tx.fetchone(f"SELECT * FROM {table} LIMIT 1")
        if first is None:
            return []
        order = ", ".join(str(i + 1) for i in range(len(first)))
        rows = await tx.fetchall(f"SELECT * FROM {table} ORDER BY {order}")
    return [tuple(_plain(c) for c in r) for r in rows]


async def snapshot(engine: Engine, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    return {t: await table_rows(engine, t) for t in tables}


async def all_events(engine: Engine) -> list[Any]:
    out: list[Any] = []
    after = 0
    while batch := await engine.store.read_all(after, 500):
        out.extend(batch)
        after = batch[-1].position
    return out


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server answering with ``handler`` on a free loopback port, from a thread; yields its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
