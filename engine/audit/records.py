"""Audit records: every command and call, allowed, denied or failed, becomes an event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.errors import Forbidden, InvalidInput, LockzeroError, NotFound
from lockzero.engine.security.crypto import new_id


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, Forbidden):
        return "denied"
    if isinstance(exc, InvalidInput | NotFound):
        return "invalid"
    return "error"


def clean_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; an audit record must never fail over what a caller typed."""
    return text.replace("\x00", "\ufffd")


def make_record(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    method: str,
    outcome: str,
    *,
    secret_id: str | None = None,
    detail: str = "",
    duration_ms: float = 0.0,
) -> ev.AuditRecorded:
    return ev.AuditRecorded(
        at=engine.clock.now(),
        tenant=tenant,
        audit_id=new_id("aud"),
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        method=method,
        outcome=outcome,  # type: ignore[arg-type]
        secret_id=secret_id,
        detail=clean_text(detail)[:500],
        duration_ms=round(duration_ms, 3),
    )


async def record(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    method: str,
    outcome: str,
    *,
    secret_id: str | None = None,
    detail: str = "",
    duration_ms: float = 0.0,
) -> None:
    event = make_record(
        engine, tenant, actor, method, outcome, secret_id=secret_id, detail=detail, duration_ms=duration_ms
    )
    await engine.append(naming.audit_stream(tenant), [event], actor)


@asynccontextmanager
async def audited(
    engine: Engine, tenant: str, actor: ev.EventMeta, method: str, secret_id: str | None = None
) -> AsyncIterator[None]:
    """Record the outcome of the block. Details are the error's own safe message, never arguments."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        detail = exc.message if isinstance(exc, LockzeroError) else type(exc).__name__
        await record(
            engine,
            tenant,
            actor,
            method,
            outcome_of(exc),
            secret_id=secret_id,
            detail=detail,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        raise
    await record(
        engine, tenant, actor, method, "ok", secret_id=secret_id, duration_ms=(time.perf_counter() - started) * 1000
    )
