"""Rotations in flight, live: a rotation's page shows its steps and the dependents it waits for, and keeps
itself current through server-sent events. Without JavaScript the same page is complete; refreshing it is
the update."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from litestar import get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from lockzero.api.console import charts
from lockzero.api.console.kit import SECURITY_HEADERS, AnyRequest, Kit, error_page, fragment
from lockzero.engine.queries import console_queries
from lockzero.engine.queries.console_queries import RotationProgress

#: How often a live page's stream looks at the rotation again, and how long one stream lasts at most (the
#: browser reconnects after that, re-checking the session).
POLL_S = 0.4
STREAM_S = 300.0


def _progress_html(p: RotationProgress) -> str:
    return fragment("progress.html", p=p, bars=charts.step_spans(p.steps))


def routes(kit: Kit) -> list[HTTPRouteHandler]:
    engine, handlers = kit.engine, kit.handlers

    @get("/rotations", exception_handlers=handlers)
    async def rotations_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        flying = await console_queries.in_flight(engine, session.operator.tenant)
        return kit.page("rotations.html", session, title="Rotations in flight", rotations=flying, approve=False)

    @get("/rotation", exception_handlers=handlers)
    async def rotation_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        rotation_id = request.query_params.get("id", "")[:128]
        p = await console_queries.rotation_progress(engine, session.operator.tenant, rotation_id)
        if p is None:
            return error_page(404, "no such rotation in this tenant", session)
        return kit.page("rotation.html", session, title=f"Rotation {rotation_id}", p=p, progress=_progress_html(p))

    @get("/rotation/events", exception_handlers=handlers)
    async def rotation_events(request: AnyRequest) -> ServerSentEvent | Response[str]:
        session = await kit.signed_in(request)
        tenant = session.operator.tenant
        rotation_id = request.query_params.get("id", "")[:128]
        if await console_queries.rotation_progress(engine, tenant, rotation_id) is None:
            return error_page(404, "no such rotation in this tenant", session)

        async def changes() -> AsyncIterator[ServerSentEventMessage]:
            last = ""
            ends = time.monotonic() + STREAM_S
            while time.monotonic() < ends:
                # A session that ended (signed out, removed, idle) ends its streams too.
                if await kit.session_of(request) is None:
                    yield ServerSentEventMessage(event="done", data="signed out")
                    return
                p = await console_queries.rotation_progress(engine, tenant, rotation_id)
                if p is None:
                    return
                html = _progress_html(p)
                if html != last:
                    last = html
                    yield ServerSentEventMessage(event="progress", data=html)
                if p.finished:
                    yield ServerSentEventMessage(event="done", data=p.status)
                    return
                await asyncio.sleep(POLL_S)

        return ServerSentEvent(changes(), headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})

    return [rotations_page, rotation_page, rotation_events]
