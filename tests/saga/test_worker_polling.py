"""How the arq worker polls: it does not ask Redis to claim jobs already running, and an enqueue wakes it.

arq keeps a job in its queue until it finishes, so each poll lists the running ones too; arq's Worker would claim
each again (WATCH, EXISTS, ZSCORE, UNWATCH) only to skip it. Watched here with Redis's own MONITOR: while a job of
this worker, or of another worker, runs, the polls send no WATCH; a job queued meanwhile is still picked up. And
a saga queued through ArqQueue starts on its wake-up message, long before an idle worker's next poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from lockzero.workers.arq_worker import ArqQueue, SagaWorker, wake_channel
from tests.saga.support import REDIS_HOST, REDIS_PORT

REDIS_DB = 8
POLL_S = 0.005
WATCHED_S = 0.5
#: An idle poll far longer than any wait below: only the wake-up message can start the job in time.
SLEEPY_POLL_S = 30.0


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


def _hold(ran: list[str], release: asyncio.Event) -> Callable[..., Any]:
    """A job function that records its argument and, for "long", runs until ``release``."""

    async def hold(ctx: dict[str, Any], name: str) -> None:
        ran.append(name)
        if name == "long":
            await release.wait()

    hold.__qualname__ = "hold"  # the name arq runs it by
    return hold


def _saga_job(started: list[tuple[str, str, str]], then: Callable[[str], Awaitable[None]]) -> Callable[..., Any]:
    """A stand-in for run_saga, with its signature: records what it was asked to run, then awaits ``then``."""

    async def run_saga(
        ctx: dict[str, Any], tenant: str, secret_id: str, rotation_id: str, carrier: dict[str, str]
    ) -> None:
        started.append((tenant, secret_id, rotation_id))
        await then(rotation_id)

    run_saga.__qualname__ = "run_saga"  # the name ArqQueue enqueues
    return run_saga


@contextlib.asynccontextmanager
async def _workers(
    job: Callable[..., Any], count: int = 1, **options: Any
) -> AsyncIterator[tuple[ArqRedis, list[SagaWorker]]]:
    """A flushed REDIS_DB and ``count`` SagaWorkers running ``job`` on it; at the end arq records the results of
    the jobs (its close() would cancel unfinished ones), the workers stop and the DB is flushed again."""
    settings = RedisSettings(host=REDIS_HOST, port=REDIS_PORT, database=REDIS_DB)
    pool = await create_pool(settings)
    await pool.flushdb()
    workers = [
        SagaWorker(functions=[job], redis_settings=settings, handle_signals=False, **options) for _ in range(count)
    ]
    running = [asyncio.create_task(worker.main()) for worker in workers]
    try:
        yield pool, workers
    finally:
        for worker in workers:
            if worker.tasks:
                await asyncio.wait(list(worker.tasks.values()), timeout=5)
        for task in running:
            task.cancel()
        for worker in workers:
            await worker.close()
        await pool.flushdb()
        await pool.aclose()


async def test_running_jobs_are_not_claimed_again_on_every_poll() -> None:
    release = asyncio.Event()
    ran: list[str] = []
    # Two workers on one queue: the long job runs on one, the other sees it running elsewhere on every poll.
    async with _workers(_hold(ran, release), count=2, idle_poll_s=POLL_S, max_jobs=4) as (pool, _):
        try:
            await pool.enqueue_job("hold", "long")  # arq's own enqueue: no wake-up message, found by a poll
            await _until(lambda: bool(ran), "the long job to start")
            assert ran == ["long"]
            # About WATCHED_S / POLL_S polls per worker, each listing the running job: none of them claims it again.
            commands = await _commands_during(WATCHED_S)
            assert sum(c.startswith("ZRANGEBYSCORE") for c in commands) >= 20, commands[:20]  # the polls were seen
            assert [c for c in commands if c.startswith("WATCH")] == []
            # The worker not running it asked once per poll whether anybody is.
            assert sum(c.startswith("EXISTS") for c in commands) >= 10, commands[:20]
            await pool.enqueue_job("hold", "short")
            await _until(lambda: "short" in ran, "the short job to start")
            assert ran == ["long", "short"]
        finally:
            release.set()


async def test_an_enqueued_saga_wakes_an_idle_worker() -> None:
    started: list[tuple[str, str, str]] = []
    arrived = asyncio.Event()

    async def arrive(rotation_id: str) -> None:
        arrived.set()

    async with _workers(_saga_job(started, arrive), idle_poll_s=SLEEPY_POLL_S) as (pool, _):
        queue = ArqQueue(pool)
        # Once it listens (and has made its first poll), only a message can start a job within SLEEPY_POLL_S.
        channel = wake_channel(REDIS_DB)  # only this test's worker listens on this DB's channel
        for _ in range(400):
            if dict(await pool.pubsub_numsub(channel)).get(channel.encode(), 0):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the worker never subscribed to the wake-up channel")
        for n in range(3):
            arrived.clear()
            await queue.enqueue("acme", f"prod/app-{n}/db", f"rot-{n}")
            await asyncio.wait_for(arrived.wait(), SLEEPY_POLL_S / 3)
        assert started == [("acme", f"prod/app-{n}/db", f"rot-{n}") for n in range(3)]


async def test_a_full_worker_takes_the_next_saga_when_one_finishes() -> None:
    started: list[tuple[str, str, str]] = []
    finish = asyncio.Event()
    second = asyncio.Event()

    async def hold_the_first(rotation_id: str) -> None:
        if rotation_id == "rot-1":
            await finish.wait()
        else:
            second.set()

    def ran() -> list[str]:
        return [rotation_id for _, _, rotation_id in started]

    # One saga at a time, and an idle poll far off: only the first saga's end can start the second in time.
    async with _workers(_saga_job(started, hold_the_first), idle_poll_s=SLEEPY_POLL_S, max_jobs=1) as (pool, _):
        queue = ArqQueue(pool)
        try:
            await queue.enqueue("acme", "prod/app/db", "rot-1")
            await _until(lambda: ran() == ["rot-1"], "the first saga to start")
            await queue.enqueue("acme", "prod/app/db", "rot-2")  # the worker is full: its wake-up finds no slot
            await asyncio.sleep(0.2)
            assert ran() == ["rot-1"]
            finish.set()
            await asyncio.wait_for(second.wait(), SLEEPY_POLL_S / 3)
            assert ran() == ["rot-1", "rot-2"]
        finally:
            finish.set()
