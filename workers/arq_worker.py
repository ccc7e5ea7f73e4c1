"""The arq worker (`lockzero worker`): runs sagas from Redis, and a reconciler cron.

arq facts this is built around: ordinary exceptions are not retried; a job held by a worker killed
with -9 stays blocked until its in-progress key expires (job_timeout + 10 s); the queue is polled.
So Redis is only a trigger: a saga lock with a short TTL (renewed while the saga runs) lets the
reconciler, every few seconds, re-enqueue a stalled saga with a fresh job id that runs at once.
Every enqueue also publishes on WAKE_CHANNEL, so a worker polls as soon as a saga is queued rather
than at its next poll; without that message (arq's own enqueue, a lost subscription) it polls anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from typing import Any

from arq import create_pool, cron
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, in_progress_key_prefix
from arq.worker import Worker
from opentelemetry import context as otel_context
from opentelemetry import propagate
from redis.exceptions import RedisError

from lockzero.engine import observability
from lockzero.engine.app import Engine
from lockzero.engine.config import ConfigError, Settings, load_settings
from lockzero.engine.detection.anomalies import watch_pass
from lockzero.engine.domain.errors import Unavailable
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.saga.scheduler import run_pass
from lockzero.engine.tracing import flush_tracing, setup_tracing
from lockzero.workers.reconciler import stalled_rotations

log = logging.getLogger("lockzero.worker")

SAGA_LOCK_TTL_MS = 10_000
STALL_AFTER_S = 8.0
JOB_TIMEOUT_S = 900
#: Published after every enqueue (the Redis DB number appended: channels are not scoped to a DB): workers on that
#: DB poll at once instead of at their next idle poll. A queue user with ACLs needs this channel (&lockzero:*).
WAKE_CHANNEL = "lockzero:saga-queued"
#: How often an idle SagaWorker polls with no wake-up message: deferred jobs (crons) and a lost subscription.
IDLE_POLL_S = 0.05


def wake_channel(database: int) -> str:
    return f"{WAKE_CHANNEL}:{database}"


def _channel_of(pool: ArqRedis) -> str:
    return wake_channel(int(pool.connection_pool.connection_kwargs.get("db", 0)))


def _lock_key(rotation_id: str) -> str:
    return f"lockzero:saga-lock:{rotation_id}"


class ArqQueue:
    """What the API uses to start sagas when LOCKZERO_REDIS_URL is set."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, redis_url: str) -> ArqQueue:
        settings = RedisSettings.from_dsn(redis_url)
        settings.conn_retries = 1
        try:
            return cls(await create_pool(settings))
        except (OSError, RedisError):
            raise Unavailable("the Redis queue at LOCKZERO_REDIS_URL is unreachable") from None

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        # The caller's trace context travels with the job, so one trace shows call → saga steps.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        # A fresh job id every time: a stuck job id (killed worker) must not block the resume.
        await self.pool.enqueue_job(
            "run_saga",
            tenant,
            secret_id,
            rotation_id,
            carrier,
            _job_id=f"saga:{rotation_id}:{secrets.token_hex(4)}",
        )
        # The job is queued whatever happens to this message: a worker that misses it polls anyway.
        try:
            await self.pool.publish(_channel_of(self.pool), b"")
        except (OSError, RedisError) as exc:
            log.warning("could not wake the workers (%s); they find the saga at their next poll", type(exc).__name__)

    async def depth(self) -> int | None:
        """Jobs waiting in arq's queue (None when Redis does not answer: the gauge keeps its last value)."""
        try:
            return int(await self.pool.zcard(default_queue_name))
        except (OSError, RedisError):
            return None

    async def ping(self) -> bool:
        try:
            return bool(await self.pool.ping())
        except (OSError, RedisError):
            return False

    async def close(self) -> None:
        await self.pool.aclose()


async def run_saga(
    ctx: dict[str, Any], tenant: str, secret_id: str, rotation_id: str, trace_carrier: dict[str, str] | None = None
) -> str:
    token_ctx = otel_context.attach(propagate.extract(trace_carrier or {}))
    try:
        return await _run_saga_locked(ctx, tenant, secret_id, rotation_id)
    finally:
        otel_context.detach(token_ctx)


async def _run_saga_locked(ctx: dict[str, Any], tenant: str, secret_id: str, rotation_id: str) -> str:
    redis: ArqRedis = ctx["redis"]
    token = secrets.token_hex(8)
    if not await redis.set(_lock_key(rotation_id), token, px=SAGA_LOCK_TTL_MS, nx=True):
        return "already running elsewhere"
    renew = asyncio.create_task(_keep_lock(redis, rotation_id, token))
    saga = asyncio.create_task(RotationSaga(ctx["engine"]).run(tenant, secret_id, rotation_id))
    handoff = False
    try:
        done, _ = await asyncio.wait({saga, renew}, return_when=asyncio.FIRST_COMPLETED)
        if saga not in done:
            # The lock is gone (Redis flushed, or it expired): another job may own the saga now. Stop here;
            # the event store keeps what we recorded and whoever holds the lock carries on.
            saga.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saga
            return "lock lost; yielded"
        return saga.result()
    except asyncio.CancelledError:
        # SIGTERM (or arq's job timeout): stop the saga where it stands, before letting go of the lock, so two
        # runners never overlap. Its intent is recorded and every step resumes idempotently; the lock is
        # released and the saga queued again below, so another worker carries on now, not after the lock's TTL.
        saga.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await saga
        handoff = saga.cancelled()  # it had not finished by itself
        raise
    finally:
        renew.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renew
        if (await redis.get(_lock_key(rotation_id))) == token.encode():
            await redis.delete(_lock_key(rotation_id))
        if handoff:
            await ArqQueue(redis).enqueue(tenant, secret_id, rotation_id)
            observability.events_log.info(
                "saga handed off", extra={"tenant": tenant, "secret_id": secret_id, "rotation_id": rotation_id}
            )


async def _keep_lock(redis: ArqRedis, rotation_id: str, token: str) -> None:
    while True:
        await asyncio.sleep(SAGA_LOCK_TTL_MS / 3000)
        if (await redis.get(_lock_key(rotation_id))) != token.encode():
            return
        await redis.pexpire(_lock_key(rotation_id), SAGA_LOCK_TTL_MS)


async def reconcile(ctx: dict[str, Any]) -> int:
    engine: Engine = ctx["engine"]
    redis: ArqRedis = ctx["redis"]
    queue = ArqQueue(redis)
    count = 0
    for tenant, secret_id, rotation_id in await stalled_rotations(engine, STALL_AFTER_S):
        if await redis.exists(_lock_key(rotation_id)):
            continue  # a live runner holds it (e.g. waiting for adoption)
        await queue.enqueue(tenant, secret_id, rotation_id)
        count += 1
    observability.reconciler_recovered(count)
    return count


class SagaWorker(Worker):
    """arq's Worker, woken by WAKE_CHANNEL, asking Redis only about queued jobs nobody is running.

    arq has no blocking pop: a worker polls. This one waits between polls until an enqueue's message arrives
    (at most ``idle_poll_s``), so a saga starts a round trip after it is queued, not half a poll delay later
    (arq's 5 ms poll was 2.5 ms of each rotation's time to remediation on average, and 200 polls a second per
    idle worker).

    arq leaves a job in the queue until it finishes, so every poll lists the sagas being run, and arq claims
    each one again (WATCH, EXISTS, ZSCORE, UNWATCH: four round trips) before skipping it. The jobs this worker
    runs are left out at once; those another worker runs are found in one pipelined EXISTS per poll (their
    in-progress keys), and only jobs with no such key go on to arq's claim, which still settles any race."""

    def __init__(self, *args: Any, idle_poll_s: float = IDLE_POLL_S, **kwargs: Any) -> None:
        # arq's own poll delay would add its sleep after a wake-up; the wait below paces the loop instead.
        super().__init__(*args, **{**kwargs, "poll_delay": 0})
        self.idle_poll_s = idle_poll_s
        self._woken = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def _poll_iteration(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())
        # Cleared before the queue is read: a message that arrives during the poll makes the next one run at once.
        self._woken.clear()
        await super()._poll_iteration()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), self.idle_poll_s)

    async def _listen(self) -> None:
        failing = False
        while True:
            try:
                async with self.pool.pubsub() as channel:
                    await channel.subscribe(_channel_of(self.pool))
                    async for message in channel.listen():
                        # Once subscribed, a saga queued while nobody listened is found by the next poll.
                        if message.get("type") in ("message", "subscribe"):
                            self._woken.set()
                            failing = False
            except (OSError, RedisError) as exc:
                if not failing:
                    log.warning("wake-up channel lost (%s); polling every %ss", type(exc).__name__, self.idle_poll_s)
                    failing = True
            await asyncio.sleep(1.0)  # a lost (or ended) subscription: meanwhile the idle poll finds every job

    def _release_sem_dec_counter_on_complete(self) -> None:
        # A worker that was full takes its next queued saga now, not at its next idle poll.
        was_full = self.job_counter >= self.max_jobs
        super()._release_sem_dec_counter_on_complete()
        if was_full:
            self._woken.set()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        fresh = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        if not fresh:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in fresh:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            running = await pipe.execute()
        await super().start_jobs([job_id for job_id, elsewhere in zip(fresh, running, strict=True) if not elsewhere])

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener  # whatever ended it, the pool and on_shutdown are closed below
        await super().close()


async def run_worker(settings: Settings) -> None:
    """`lockzero worker`: run until interrupted."""
    assert settings.redis_url is not None
    # Refuse a wrong master key in one line here: arq's own startup would bury it under its shutdown errors.
    await (await Engine.open(settings.database_url, settings.require_master_key())).close()

    async def startup_with(ctx: dict[str, Any]) -> None:
        ctx["engine"] = await Engine.open(
            settings.database_url, settings.require_master_key(), outbound=settings.outbound
        )

    worker = SagaWorker(
        functions=WorkerSettings.functions,
        cron_jobs=WorkerSettings.cron_jobs,
        # The worker runs on the Settings it was given (one reading of the environment, already checked).
        on_startup=startup_with,
        on_shutdown=shutdown,
        idle_poll_s=IDLE_POLL_S,
        job_timeout=WorkerSettings.job_timeout,
        max_jobs=WorkerSettings.max_jobs,
        keep_result=WorkerSettings.keep_result,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        handle_signals=False,
    )
    observability.configure_json_logging()
    setup_tracing("worker")
    if settings.metrics_port is not None:
        # The saga's metrics live in the worker processes: each serves its own (Prometheus scrapes every pod).
        from prometheus_client import start_http_server

        try:
            start_http_server(settings.metrics_port, addr=settings.host)
        except OSError as exc:
            raise ConfigError(
                f"LOCKZERO_METRICS_PORT: cannot listen on {settings.host}:{settings.metrics_port} ({exc.strerror})"
            ) from None
    print(f"lockzero: worker consuming sagas from {_without_password(settings.redis_url)}", flush=True)
    stopping = _stop_on_signals(worker)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        if not stopping.is_set():
            raise
    finally:
        await worker.close()
        flush_tracing()
    print("lockzero: worker stopped", flush=True)


#: How long SIGTERM waits for the jobs it cancelled to hand their sagas off (lock released, queued again).
STOP_GRACE_S = 5.0


def _stop_on_signals(worker: Worker) -> asyncio.Event:
    """SIGTERM/SIGINT: take no new job, cancel the running ones once (each releases its saga lock and queues
    its saga again, see _run_saga_locked), wait for that (bounded), then end the main loop. arq's own
    handler would cancel the jobs a second time from close() and cut their hand-off short."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    background: set[asyncio.Task[None]] = set()

    async def stop() -> None:
        worker.allow_pick_jobs = False
        jobs = [t for t in worker.tasks.values() if not t.done()]
        for task in jobs:
            task.cancel()
        if jobs:
            await asyncio.wait(jobs, timeout=STOP_GRACE_S)
        if worker.main_task is not None:
            worker.main_task.cancel()

    def on_signal() -> None:
        if stopping.is_set():
            return
        stopping.set()
        task = loop.create_task(stop())
        background.add(task)
        task.add_done_callback(background.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return stopping


def _without_password(url: str) -> str:
    _, sep, tail = url.rpartition("@")
    return ("redis://***@" + tail) if sep else url


async def schedule(ctx: dict[str, Any]) -> int:
    """Overdue incidents, auto-rotations, grace-period ends."""
    report = await run_pass(ctx["engine"], ArqQueue(ctx["redis"]))
    return len(report.overdue_incidents) + len(report.expired_versions)


async def watch(ctx: dict[str, Any]) -> int:
    """The usage-anomaly watcher: provider signals of retired credentials still in use."""
    return len(await watch_pass(ctx["engine"], ArqQueue(ctx["redis"])))


async def startup(ctx: dict[str, Any]) -> None:
    """For `arq lockzero.workers.arq_worker.WorkerSettings` run by arq's own CLI, which passes no Settings."""
    settings = load_settings(create_embedded_key=False)
    setup_tracing("worker")
    ctx["engine"] = await Engine.open(settings.database_url, settings.require_master_key(), outbound=settings.outbound)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].close()
    flush_tracing()


class WorkerSettings:
    functions = [run_saga]
    cron_jobs = [
        cron(reconcile, second=set(range(0, 60, 3)), run_at_startup=True, unique=True),
        cron(schedule, second={7, 37}, run_at_startup=True, unique=True),
        # Every 15 s (WATCH_EVERY_S in engine/detection/anomalies.py); unique: two workers never poll twice over.
        cron(watch, second={1, 16, 31, 46}, run_at_startup=True, unique=True),
    ]
    on_startup = startup
    on_shutdown = shutdown
    # arq has no blocking pop: with arq's own CLI (no wake-up messages) a queued saga waits for the next poll. At
    # 20 ms that was ~15 ms of every rotation's time to remediation (saga bench, "enqueue, worker pickup"); at 5 ms
    # about 8. `lockzero worker` (SagaWorker) is woken by each enqueue instead.
    poll_delay = 0.005
    job_timeout = JOB_TIMEOUT_S
    max_jobs = 64
    keep_result = 60
    redis_settings = RedisSettings()
