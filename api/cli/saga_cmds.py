"""`lockzero secret rotate|rollback|revoke`: the commands that change a credential, with the rotate_secret,
rollback_secret and revoke_secret tools' engine calls, and a step-by-step view while the saga runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lockzero.api.cli.context import operator, settings_with_key, tenant_engine
from lockzero.api.cli.output import emit_json
from lockzero.api.errors import EXIT_FAILURE, EXIT_OK
from lockzero.engine.app import Engine
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import rotations
from lockzero.engine.domain.errors import Conflict, InvalidInput
from lockzero.engine.queries.rotations import RotationDetail, rotation_detail
from lockzero.engine.saga import verification
from lockzero.engine.saga.rotation import RotationSaga

#: How often the step view reads the rotation while waiting.
POLL_S = 0.2
#: Outcomes after which there is nothing to wait for; anything but "completed" is a failed rotation.
FAILED = ("compensated", "failed", "cancelled")


class _RunNow:
    """The CLI's saga queue without a worker: run the saga to its end before answering."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        await RotationSaga(self.engine).run(tenant, secret_id, rotation_id)


class _RunHere:
    """Without a worker, the saga runs as a task of this process while the step view follows it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.task: asyncio.Task[str] | None = None

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        self.task = asyncio.create_task(RotationSaga(self.engine).run(tenant, secret_id, rotation_id))


@asynccontextmanager
async def _worker_queue() -> AsyncIterator[rotations.SagaQueue | None]:
    """arq on LOCKZERO_REDIS_URL when set (a worker runs the saga), else None (this process runs it)."""
    settings = settings_with_key()
    if not settings.redis_url:
        yield None
        return
    from lockzero.workers.arq_worker import ArqQueue

    queue = await ArqQueue.connect(settings.redis_url)
    try:
        yield queue
    finally:
        await queue.close()


async def follow(engine: Engine, tenant: str, rotation_id: str, runner: _RunHere | None, show: bool) -> RotationDetail:
    """Wait for the rotation to finish, printing each step as it ends (when ``show``)."""
    printed: set[tuple[str, str]] = set()
    while True:
        detail = await rotation_detail(engine, tenant, rotation_id)
        for s in detail.steps:
            if s.status == "started" or (s.step, s.status) in printed:
                continue
            printed.add((s.step, s.status))
            if show:
                took = f"{s.duration_ms / 1000:7.3f} s" if s.duration_ms is not None else ""
                print(f"  {s.step:<28} {s.status:<10} {took}{'  ' + s.detail if s.detail else ''}", flush=True)
        if detail.finished_at is not None:
            if runner is not None and runner.task is not None:
                await runner.task  # its exceptions are this command's
            return detail
        if runner is not None and runner.task is not None and runner.task.done():
            runner.task.result()  # raised: reported as the command's error; else one more read shows the end
            if (await rotation_detail(engine, tenant, rotation_id)).finished_at is None:
                raise Conflict(f"rotation {rotation_id} stopped before its end; `lockzero rotation show` tells why")
        await asyncio.sleep(POLL_S)


async def cmd_secret_rotate(args: argparse.Namespace) -> int:
    async with tenant_engine(args.tenant) as engine, _worker_queue() as worker:
        runner = _RunHere(engine) if worker is None else None
        queue: rotations.SagaQueue = worker if worker is not None else runner  # type: ignore[assignment]
        async with audited(engine, args.tenant, operator(), "secret.rotate", secret_id=args.secret_id):
            started = await rotations.rotate(
                engine, queue, args.tenant, args.secret_id, operator(), args.reason, args.idempotency_key
            )
        waits = args.wait or worker is None
        if started.status == "pending_approval" or not waits:
            if args.json:
                emit_json(started)
            else:
                print(
                    f"{started.rotation_id}: {started.status.replace('_', ' ')} ({started.from_version} -> "
                    f"{started.to_version}){'; ' + started.note if started.note else ''}"
                )
            return EXIT_OK
        if not args.json:
            print(f"{started.rotation_id}: rotating {args.secret_id} {started.from_version} -> {started.to_version}")
        detail = await follow(engine, args.tenant, started.rotation_id, runner, show=not args.json)
        result = await verification.verify(engine, args.tenant, args.secret_id, started.rotation_id)
    if args.json:
        emit_json(result)
    else:
        print(
            f"{started.rotation_id}: {detail.status}; verified: {'yes' if result.verified else 'no'};"
            f" {result.next_action}"
        )
    if detail.status in FAILED:
        failed = next((s for s in detail.steps if s.status == "failed"), None)
        why = f": {failed.step} failed ({failed.detail})" if failed else ""
        print(f"lockzero: error: rotation {started.rotation_id} {detail.status}{why}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def cmd_secret_rollback(args: argparse.Namespace) -> None:
    to = args.to_version
    if to is not None and not (to.startswith("v") and to[1:].isdigit()):
        raise InvalidInput("--to takes a version like v3")
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.rollback", secret_id=args.secret_id),
    ):
        started = await rotations.rollback(
            engine,
            _RunNow(engine),
            args.tenant,
            args.secret_id,
            operator(),
            args.reason,
            int(to[1:]) if to else None,
            force=args.force,
        )
        result = await verification.verify(engine, args.tenant, args.secret_id, started.rotation_id)
    if args.json:
        emit_json(result)
        return
    print(f"{started.rotation_id}: rollback to {started.restored_version} {result.status}; {result.next_action}")
    if started.note:
        print(started.note)


async def cmd_secret_revoke(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.revoke", secret_id=args.secret_id),
    ):
        result = await rotations.revoke(
            engine, args.tenant, args.secret_id, operator(), args.reason, args.idempotency_key
        )
    if args.json:
        emit_json(result)
        return
    print(
        f"{args.secret_id} {result.status}: {', '.join(result.revoked_versions) or 'no version'} revoked at the"
        f" provider; incident {result.incident_id} opened; {result.alerts_sent} dependent alert(s) sent"
    )
