"""Running one tool call: authorize, rate-limit, validate, execute, audit (durably, fail closed)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec
from opentelemetry.trace import Status, StatusCode

from lockzero.api.ratelimit import RateLimiter
from lockzero.api.telemetry import tracer
from lockzero.api.tools.registry import CallContext, Registry, Tool
from lockzero.engine import observability
from lockzero.engine.app import Engine
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.flood import AuditFloodGuard
from lockzero.engine.audit.records import make_record, outcome_of
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.detection.key_watch import KeyWatch
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.domain.errors import Forbidden, LockzeroError, RateLimited, Unavailable
from lockzero.eventstore import EventStoreError, StoreUnavailable

log = logging.getLogger("lockzero.api")


class UnknownTool(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown tool {name!r}")
        self.name = name


class InternalError(LockzeroError):
    name = "internal_error"  # api/errors.py numbers it (-32603)


def _debug() -> bool:
    return bool(os.environ.get("LOCKZERO_DEBUG"))


def actor_of(key: ApiKey) -> ev.EventMeta:
    return ev.EventMeta(actor_id=key.key_id, actor_type="agent")


class ToolRunner:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        audit: AuditBatcher,
        limiter: RateLimiter,
        queue: SagaQueue,
        guard: AuditFloodGuard | None = None,
        key_watch: KeyWatch | None = None,
    ) -> None:
        self.queue = queue
        self.key_watch = key_watch
        self.engine = engine
        self.registry = registry
        self.audit = audit
        self.limiter = limiter
        self.guard = guard or AuditFloodGuard(engine, audit)

    async def call(self, key: ApiKey, name: str, raw_arguments: Any, source: str = "") -> dict[str, Any]:
        """The tool's structured result; raises LockzeroError (business) or UnknownTool (protocol)."""
        tool = self.registry.get(name)
        if tool is None:
            raise UnknownTool(name)
        with tracer.start_as_current_span(f"tool {name}") as span:
            span.set_attribute("lockzero.method", name)
            span.set_attribute("lockzero.tenant", key.tenant)
            ctx = CallContext(self.engine, key, actor_of(key), self.queue)
            started = time.perf_counter()
            error: LockzeroError | None = None
            result: dict[str, Any] | None = None
            try:
                result = await self._execute(tool, ctx, raw_arguments)
            except LockzeroError as exc:
                error = _without_caller_values(exc, raw_arguments)
            span.set_attribute("lockzero.outcome", outcome_of(error))
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error.name))
            elapsed = time.perf_counter() - started
            if isinstance(error, RateLimited):
                await self.refused(key, name, error, source)
            else:
                await self.record(ctx, name, error, elapsed * 1000)
            observability.observe_call_latency(name, elapsed)
            observability.log_call(
                tenant=key.tenant,
                key_id=key.key_id,
                method=name,
                outcome=outcome_of(error),
                duration_ms=elapsed * 1000,
                # Only a secret the call found: a refused call's "id" may be a pasted credential (the audit keeps
                # it in its own column for forensics; logs travel further).
                secret_id=ctx.secret_id if error is None else None,
            )
            if error is not None:
                raise error
            if tool.writes and ctx.secret_id and self.key_watch is not None:
                await self.key_watch.wrote(key.tenant, key.key_id, ctx.secret_id, name, source)
            assert result is not None
            return result

    async def _execute(self, tool: Tool, ctx: CallContext, raw_arguments: Any) -> dict[str, Any]:
        self.acquire(ctx.key)
        if tool.writes and ctx.key.read_only:
            raise Forbidden(f"{tool.name} changes state and this key is read-only; ask for a read-write key")
        arguments = tool.parse_arguments(raw_arguments)
        try:
            out = await tool.handler(ctx, arguments)
        except (StoreUnavailable, OSError) as exc:
            raise Unavailable("the event store is unavailable; nothing was changed, retry later") from exc
        except EventStoreError as exc:
            log.error("tool %s failed in the store: %s", tool.name, type(exc).__name__)
            raise InternalError("the call could not be completed; nothing was changed") from exc
        except LockzeroError:
            raise
        except Exception as exc:  # a bug: audited as an error, answered without a traceback
            # Type only: an exception's text may quote arguments. LOCKZERO_DEBUG=1 logs the traceback.
            log.error("tool %s failed unexpectedly (%s)", tool.name, type(exc).__name__, exc_info=_debug())
            raise InternalError("internal error; the call was not completed") from exc
        builtins: dict[str, Any] = msgspec.to_builtins(out)
        return builtins

    async def record(self, ctx: CallContext, method: str, error: BaseException | None, duration_ms: float) -> None:
        """Durable before the caller hears back; if it cannot be written the call fails (fail closed)."""
        detail = error.message if isinstance(error, LockzeroError) else ctx.detail
        event = make_record(
            self.engine,
            ctx.key.tenant,
            ctx.actor,
            method,
            outcome_of(error),
            secret_id=ctx.secret_id,
            detail=detail,
            duration_ms=duration_ms,
        )
        try:
            await self.audit.record(event, ctx.actor)
        except Exception as exc:
            log.error("audit write failed (%s); failing the call", type(exc).__name__)
            raise Unavailable("the audit log cannot be written, so the call was refused; retry later") from None

    async def record_protocol(self, key: ApiKey, method: str, error: BaseException | None = None) -> None:
        await self.record(CallContext(self.engine, key, actor_of(key)), method, error, 0.0)
        observability.log_call(
            tenant=key.tenant, key_id=key.key_id, method=method, outcome=outcome_of(error), duration_ms=0.0
        )

    async def refused(self, key: ApiKey, method: str, error: LockzeroError, source: str) -> None:
        """A refusal that a flood could repeat (rate limit, malformed request): bounded by the guard."""
        try:
            await self.guard.refused(
                key.tenant, actor_of(key), method, outcome_of(error), reason=error.name, source=source
            )
        except Exception as exc:
            log.error("audit write failed (%s); failing the call", type(exc).__name__)
            raise Unavailable("the audit log cannot be written, so the call was refused; retry later") from None

    def acquire(self, key: ApiKey) -> None:
        """Every message of a key counts against its limit, protocol methods too (ping, tools/list…)."""
        retry_ms = self.limiter.acquire(key.key_id)
        if retry_ms is not None:
            raise RateLimited(
                f"rate limit for this key reached; retry in {retry_ms} ms", data={"retry_after_ms": retry_ms}
            )


#: Values shorter than this are left in messages when unquoted: "ok" or "v2" are not secrets, and
#: replacing them would mangle the surrounding words.
_MIN_BARE = 6
_SCRUBBED = "(the value sent)"


def _without_caller_values(error: LockzeroError, raw_arguments: Any) -> LockzeroError:
    """The error with any argument value the caller sent cut out of its message: an argument may be a
    pasted credential, and messages end up in answers, logs and the audit detail."""
    message = error.message
    for value in sorted(_strings(raw_arguments), key=len, reverse=True):
        message = message.replace(repr(value), _SCRUBBED).replace(f'"{value}"', _SCRUBBED)
        if len(value) >= _MIN_BARE:
            message = message.replace(value, _SCRUBBED)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error


def _strings(value: Any, depth: int = 0) -> set[str]:
    # Longer values cannot be quoted whole in a message worth keeping; detect_exposure's text is one.
    if isinstance(value, str):
        return {value} if 0 < len(value) <= 1000 else set()
    if depth > 8:
        return set()
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= _strings(k, depth + 1) | _strings(v, depth + 1)
    elif isinstance(value, list):
        for v in value[:100]:
            found |= _strings(v, depth + 1)
    return found
