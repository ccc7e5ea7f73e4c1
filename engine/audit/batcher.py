"""Group commit for audit records: concurrent calls share one append per tenant.

Each caller still waits until its own record is durable (fail closed, like Vault): if the append
fails, every caller in that batch gets the error and its call fails.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from lockzero.engine import observability
from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming

_Item = tuple[ev.AuditRecorded, ev.EventMeta, asyncio.Future[None]]


class AuditBatcher:
    def __init__(self, engine: Engine, max_batch: int = 500) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._drainer: asyncio.Task[None] | None = None

    async def record(self, event: ev.AuditRecorded, meta: ev.EventMeta) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, meta, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            by_tenant: dict[str, list[_Item]] = defaultdict(list)
            for item in batch:
                by_tenant[item[0].tenant].append(item)
            await asyncio.gather(*(self._flush(tenant, items) for tenant, items in by_tenant.items()))

    async def _flush(self, tenant: str, items: list[_Item]) -> None:
        try:
            await self._engine.append_each(naming.audit_stream(tenant), [(e, m) for e, m, _ in items])
        except Exception as exc:
            if len(items) > 1:
                # One bad record must not fail its neighbours' calls: retry them one by one.
                for item in items:
                    await self._flush(tenant, [item])
                return
            _settle(items, exc)
        except BaseException as exc:
            _settle(items, exc)
            raise
        else:
            observability.audit_batch_committed(len(items))
            _settle(items, None)

    async def close(self) -> None:
        if self._drainer is not None:
            await asyncio.shield(self._drainer)


def _settle(items: list[_Item], exc: BaseException | None) -> None:
    for _, _, future in items:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
