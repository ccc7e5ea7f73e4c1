"""Incidents: the list, an incident's timeline (with its export as JSON and as a printable page), and resolving
one by hand with a note."""

from __future__ import annotations

import msgspec
from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response

from lockzero.api.console import charts
from lockzero.api.console.kit import SECURITY_HEADERS, AnyRequest, Kit, error_page, field, person, reason
from lockzero.api.console.sessions import ConsoleSession
from lockzero.engine.commands import incidents
from lockzero.engine.domain.errors import InvalidInput, NotFound
from lockzero.engine.queries import console_queries
from lockzero.engine.queries.timeline import Timeline, incident_timeline
from lockzero.engine.security import operators


def routes(kit: Kit) -> list[HTTPRouteHandler]:
    engine, handlers = kit.engine, kit.handlers

    async def timeline_of(session: ConsoleSession, incident_id: str) -> Timeline | None:
        try:
            return await incident_timeline(engine, session.operator.tenant, incident_id)
        except (NotFound, InvalidInput):
            return None

    async def incident_view(
        session: ConsoleSession, incident_id: str, message: str | None = None, *, printable: bool = False
    ) -> Response[str]:
        tl = await timeline_of(session, incident_id)
        if tl is None:
            return error_page(404, "no such incident in this tenant", session)
        return kit.page(
            "incident_print.html" if printable else "incident.html",
            session,
            title=f"Incident {incident_id}",
            t=tl,
            bars=charts.timeline_bars(tl),
            can_resolve=operators.role_allows(session.operator.role, "operator") and tl.status != "resolved",
            message=message,
        )

    @get("/incidents", exception_handlers=handlers)
    async def incidents_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        found = await console_queries.incidents(engine, session.operator.tenant)
        return kit.page("incidents.html", session, incidents=found)

    @get("/incident", exception_handlers=handlers)
    async def incident_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        return await incident_view(session, request.query_params.get("id", "")[:128])

    @get("/incident/print", exception_handlers=handlers)
    async def incident_print(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        return await incident_view(session, request.query_params.get("id", "")[:128], printable=True)

    @get("/incident/timeline.json", exception_handlers=handlers)
    async def incident_json(request: AnyRequest) -> Response[bytes] | Response[str]:
        session = await kit.signed_in(request)
        incident_id = request.query_params.get("id", "")[:128]
        tl = await timeline_of(session, incident_id)
        if tl is None:
            return error_page(404, "no such incident in this tenant", session)
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in incident_id)
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}-timeline.json"'}
        return Response(msgspec.json.encode(tl), media_type="application/json", headers=headers)

    @post("/incident/resolve", exception_handlers=handlers, status_code=200)
    async def resolve(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            incident_id = field(form, "incident_id", 128)
            note = reason(form, "note", "write a note saying why it is resolved")
            await incidents.resolve_incident(engine, session.operator.tenant, incident_id, person(session), note)
            return await incident_view(session, incident_id, f"incident {incident_id} resolved")

        async def incident_secret(tenant: str, form: dict[str, str]) -> str | None:
            return await console_queries.secret_of(engine, tenant, incident_id=form.get("incident_id", "")[:128])

        return await kit.action(request, "incident.resolve", "operator", work, secret_of=incident_secret)

    return [incidents_page, incident_page, incident_print, incident_json, resolve]
