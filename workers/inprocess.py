"""The embedded default's worker: sagas run as tasks inside `lockzero serve`, using the same saga
code as the arq worker. A reconciler loop resumes any unfinished saga (e.g. after a restart)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lockzero.engine import observability
from lockzero.engine.app import Engine
from lockzero.engine.detection.anomalies import WATCH_EVERY_S, watch_pass
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.saga.scheduler import run_pass
from lockzero.workers.reconciler import stalled_rotations

log = logging.getLogger("lockzero.worker")
STALL_AFTER_S = 5.0


class InProcessQueue:
    def __init__(
        self,
        engine: Engine,
        reconcile_every_s: float = 2.0,
        schedule_every_s: float = 30.0,
        watch_every_s: float = WATCH_EVERY_S,
    ) -> None:
        self.engine = engine
        self.reconcile_every_s = reconcile_every_s
        self.schedule_every_s = schedule_every_s
        #: The usage-anomaly watcher's interval (provider signals); 0 turns it off.
        self.watch_every_s = watch_every_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reconciler: asyncio.Task[None] | None = None

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        task = self._running.get(rotation_id)
        if task is not None and not task.done():
            return
        self._running[rotation_id] = asyncio.create_task(self._run(tenant, secret_id, rotation_id))

    async def _run(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        try:
            await RotationSaga(self.engine).run(tenant, secret_id, rotation_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reconciler will pick it up again
            log.error("saga %s stopped: %s", rotation_id, type(exc).__name__)
        finally:
            self._running.pop(rotation_id, None)

    def start(self) -> None:
        self._reconciler = asyncio.create_task(self._reconcile_forever())

    async def _reconcile_forever(self) -> None:
        last_schedule = last_watch = 0.0
        while True:
            now = asyncio.get_running_loop().time()
            if self.watch_every_s > 0 and now - last_watch >= self.watch_every_s:
                last_watch = now
                try:
                    await watch_pass(self.engine, self)
                except Exception as exc:
                    log.error("anomaly watcher pass failed: %s", type(exc).__name__)
            if now - last_schedule >= self.schedule_every_s:
                last_schedule = now
                try:
                    await run_pass(self.engine, self)
                except Exception as exc:
                    log.error("scheduler pass failed: %s", type(exc).__name__)
            try:
                # Not running here and quiet for a while: stalled (a restart, or a revoke that died mid-request).
                recovered = 0
                for tenant, secret_id, rotation_id in await stalled_rotations(self.engine, STALL_AFTER_S):
                    recovered += rotation_id not in self._running
                    await self.enqueue(tenant, secret_id, rotation_id)
                observability.reconciler_recovered(recovered)
            except Exception as exc:
                log.error("reconciler pass failed: %s", type(exc).__name__)
            tick = min(self.reconcile_every_s, self.watch_every_s or self.reconcile_every_s)
            await asyncio.sleep(tick)

    async def depth(self) -> int:
        """Sagas running in this process (the embedded queue has no backlog: each starts at once)."""
        return len(self._running)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while self._running:
                await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def close(self) -> None:
        tasks = [t for t in (self._reconciler, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
