"""The Litestar application: the MCP endpoint, health, and (later) the dependents' pull endpoint."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, delete, get, post
from litestar.response import Response

from lockzero.api.alerts import MAX_BODY_BYTES, AlertBudget, alerts_endpoint
from lockzero.api.console.web import console_routes
from lockzero.api.mcp.dispatcher import Dispatcher
from lockzero.api.mcp.endpoint import McpEndpoint
from lockzero.api.mcp.sessions import SessionStore
from lockzero.api.pull import pull_endpoint
from lockzero.api.ratelimit import RateLimiter
from lockzero.api.telemetry import setup_tracing
from lockzero.api.tools.detect_tool import DETECT_TOOLS
from lockzero.api.tools.read_tools import READ_TOOLS
from lockzero.api.tools.registry import Registry
from lockzero.api.tools.runner import ToolRunner
from lockzero.api.tools.saga_tools import SAGA_TOOLS
from lockzero.engine import observability
from lockzero.engine.app import Engine
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.flood import AuditFloodGuard
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.config import Settings
from lockzero.engine.detection.anomalies import PullWatch
from lockzero.engine.detection.key_watch import KeyWatch
from lockzero.engine.saga import notify
from lockzero.engine.security.key_cache import KeyCache
from lockzero.eventstore import StoreUnavailable

OTHER_MAX_BODY_BYTES = 64 * 1024


def build_registry() -> Registry:
    return Registry([*READ_TOOLS, *SAGA_TOOLS, *DETECT_TOOLS])


def create_app(engine: Engine, settings: Settings, queue: SagaQueue) -> Litestar:
    setup_tracing("api")
    audit = AuditBatcher(engine)
    guard = AuditFloodGuard(engine, audit)
    # Usage anomalies seen at the pull endpoint (removed tokens, new addresses, rates) and in MCP keys' write
    # calls (new addresses, rates), and the alert budget.
    watch = PullWatch(engine, queue)
    budget = AlertBudget()
    runner = ToolRunner(
        engine, build_registry(), audit, RateLimiter(settings.rate_limit_per_s), queue, guard, KeyWatch(engine, queue)
    )
    # Authenticated keys are cached per process and forgotten when any key is revoked (key_cache.py).
    keys = KeyCache(engine)
    endpoint = McpEndpoint(
        engine,
        Dispatcher(runner, SessionStore(engine.store, clock=engine.clock)),
        settings.allowed_origins,
        settings.host,
        keys,
    )

    # The endpoint reads its body itself, against its own (larger) limit and pace: see endpoint.py.
    @post("/api/mcp", status_code=200, request_max_body_size=None)
    async def mcp_post(request: Request[Any, Any, Any]) -> Response[Any]:
        return await endpoint.post(request)

    @get("/api/mcp")
    async def mcp_get(request: Request[Any, Any, Any]) -> Response[Any]:
        return await endpoint.get(request)

    @delete("/api/mcp", status_code=200)
    async def mcp_delete(request: Request[Any, Any, Any]) -> Response[Any]:
        return await endpoint.delete(request)

    @get("/api/v1/secrets/{rest:path}")
    async def pull_current(request: Request[Any, Any, Any], rest: str) -> Response[Any]:
        return await pull_endpoint(engine, request, rest, audit, guard, watch)

    @post("/api/v1/alerts", status_code=202, request_max_body_size=MAX_BODY_BYTES)
    async def alerts(request: Request[Any, Any, Any]) -> Response[Any]:
        return await alerts_endpoint(engine, request, queue, audit, guard, budget)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz")
    async def readyz() -> Response[dict[str, str]]:
        try:
            await engine.store.ping()
        except StoreUnavailable:
            return Response({"status": "unavailable", "store": "down"}, status_code=503)
        ping = getattr(queue, "ping", None)
        if ping is not None and not await ping():
            return Response({"status": "unavailable", "store": "ok", "queue": "down"}, status_code=503)
        return Response({"status": "ready", "store": "ok", "queue": "ok"})

    @get("/metrics")
    async def metrics() -> Response[bytes]:
        # Queue depth is read at scrape time (one Redis ZCARD), not kept up to date on every enqueue.
        depth = getattr(queue, "depth", None)
        if depth is not None:
            found = await depth()
            if found is not None:
                observability.QUEUE_DEPTH.set(found)
        body, content_type = observability.metrics_text()
        return Response(body, media_type=content_type)

    return Litestar(
        route_handlers=[
            mcp_post,
            mcp_get,
            mcp_delete,
            pull_current,
            alerts,
            healthz,
            readyz,
            metrics,
            # The operator console (GET / and its pages): api/console/web.py.
            *console_routes(engine, queue),
        ],
        debug=False,
        logging_config=None,
        # No other endpoint takes a body of any size (the MCP endpoint sets its own limit).
        request_max_body_size=OTHER_MAX_BODY_BYTES,
        # Audit records (and summaries of refused calls) and notifications in flight finish before
        # the process exits.
        on_shutdown=[keys.close, guard.close, audit.close, notify.drain],
    )
