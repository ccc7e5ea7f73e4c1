"""The arq worker does not ask Redis to claim the jobs it is already running on every poll.

arq keeps a job in its queue until it finishes, so each poll lists the running ones too; arq's Worker would claim
each again (WATCH, EXISTS, ZSCORE, UNWATCH) only to skip it. Watched here with Redis's own MONITOR: while a job of
this worker runs, its polls send no WATCH; a job queued meanwhile is still picked up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from arq import create_pool
from arq.connections import RedisSettings

from lockzero.workers.arq_worker import SagaWorker
from tests.saga.support import REDIS_HOST, REDIS_PORT

REDIS_DB = 8
POLL_S = 0.005
WATCHED_S = 0.5


async def _commands_during(seconds: float) -> list[str]:
    """The commands sent to REDIS_DB within ``seconds``, as MONITOR prints them."""
    monitor_client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    seen: list[str] = []
    try:
        async with monitor_client.monitor() as monitor:

            async def collect() -> None:
                async for command in monitor.listen():
                    if command.get("db") == REDIS_DB:
                        seen.append(str(command.get("command", "")).upper())

            task = asyncio.create_task(collect())
            await asyncio.sleep(seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a reader that failed fails the test here
    finally:
        await monitor_client.aclose()
    return seen


async def _until(check: Callable[[], bool], what: str, timeout: float = 4.0) -> None:
    """Poll ``check`` in this event loop (the worker runs in it too) until it holds; a generous deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        await asyncio.sleep(0.01)


async def test_running_jobs_are_not_claimed_again_on_every_poll() -> None:
    settings = RedisSettings(host=REDIS_HOST, port=REDIS_PORT, database=REDIS_DB)
    pool = await create_pool(settings)
    await pool.flushdb()
    release = asyncio.Event()
    ran: list[str] = []

    async def hold(ctx: dict[str, Any], name: str) -> None:
        ran.append(name)
        if name == "long":
            await release.wait()

    hold.__qualname__ = hold.__name__ = "hold"
    worker = SagaWorker(functions=[hold], redis_settings=settings, poll_delay=POLL_S, handle_signals=False, max_jobs=4)
    running = asyncio.create_task(worker.main())
    try:
        await pool.enqueue_job("hold", "long")
        await _until(lambda: bool(ran), "the long job to start")
        assert ran == ["long"]
        # About WATCHED_S / POLL_S polls, each listing the running job: none of them claims it again.
        commands = await _commands_during(WATCHED_S)
        assert sum(c.startswith("ZRANGEBYSCORE") for c in commands) >= 10, commands[:20]  # the polls were seen
        assert [c for c in commands if c.startswith("WATCH")] == []
        await pool.enqueue_job("hold", "short")
        await _until(lambda: "short" in ran, "the short job to start")
        assert ran == ["long", "short"]
    finally:
        release.set()
        await asyncio.sleep(0.05)
        running.cancel()
        await worker.close()
        await pool.flushdb()
        await pool.aclose()
