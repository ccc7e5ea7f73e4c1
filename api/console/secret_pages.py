"""A secret's page and what an operator does there: rotate, roll back, revoke (each confirmed, with a reason),
through the same engine commands as the MCP tools rotate_secret, rollback_secret and revoke_secret."""

from __future__ import annotations

import re

from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response

from lockzero.api.console import charts
from lockzero.api.console.kit import AnyRequest, Kit, error_page, field, person, reason
from lockzero.api.console.sessions import ConsoleSession
from lockzero.engine.commands import rotations
from lockzero.engine.domain.errors import InvalidInput, NotFound
from lockzero.engine.queries import console_queries
from lockzero.engine.queries.history import rotation_history
from lockzero.engine.queries.metadata import secret_metadata
from lockzero.engine.security import operators

_VERSION = re.compile(r"v([0-9]{1,9})")


def routes(kit: Kit) -> list[HTTPRouteHandler]:
    engine, queue, handlers = kit.engine, kit.queue, kit.handlers

    async def secret_view(session: ConsoleSession, secret_id: str, message: str | None = None) -> Response[str]:
        tenant = session.operator.tenant
        try:
            meta = await secret_metadata(engine, tenant, secret_id)
            history = await rotation_history(engine, tenant, secret_id, limit=20)
        except (NotFound, InvalidInput):
            return error_page(404, "no such secret in this tenant", session)
        return kit.page(
            "secret.html",
            session,
            title=f"Secret {secret_id}",
            m=meta,
            h=history,
            steps={
                rid: charts.step_spans(bars)
                for rid, bars in (await console_queries.step_durations(engine, tenant, secret_id, limit=20)).items()
            },
            dependents=await console_queries.dependents(engine, tenant, secret_id),
            can_rotate=operators.role_allows(session.operator.role, "operator"),
            message=message,
        )

    def confirmed(form: dict[str, str], what: str) -> None:
        if form.get("confirm") != "yes":
            raise InvalidInput(f"tick the confirmation box to {what}")

    @get("/secret", exception_handlers=handlers)
    async def secret_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        return await secret_view(session, request.query_params.get("id", "")[:256])

    @post("/secret/rotate", exception_handlers=handlers, status_code=200)
    async def rotate(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            secret_id = field(form, "secret_id", 256)
            why = reason(form, what="say why you rotate")
            confirmed(form, "rotate")
            started = await rotations.rotate(engine, queue, session.operator.tenant, secret_id, person(session), why)
            note = f"rotation {started.rotation_id} {started.status.replace('_', ' ')}"
            return await secret_view(session, secret_id, note)

        return await kit.action(request, "rotate_secret", "operator", work, secret_field="secret_id")

    @post("/secret/rollback", exception_handlers=handlers, status_code=200)
    async def rollback(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            secret_id = field(form, "secret_id", 256)
            why = reason(form, what="say why you roll back")
            confirmed(form, "roll back")
            wanted = field(form, "to_version", 16).strip()
            to = None
            if wanted:
                matched = _VERSION.fullmatch(wanted)
                if matched is None:
                    raise InvalidInput("to_version must look like v3 (or be empty for the previous version)")
                to = int(matched.group(1))
            started = await rotations.rollback(
                engine, queue, session.operator.tenant, secret_id, person(session), why, to, form.get("force") == "yes"
            )
            note = (
                f"rollback {started.rotation_id} to {started.restored_version or '-'}"
                f" {started.status.replace('_', ' ')}"
            )
            return await secret_view(session, secret_id, note)

        return await kit.action(request, "rollback_secret", "operator", work, secret_field="secret_id")

    @post("/secret/revoke", exception_handlers=handlers, status_code=200)
    async def revoke(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            secret_id = field(form, "secret_id", 256)
            why = reason(form, what="say why you revoke")
            confirmed(form, "revoke")
            # Final and breaking: the person types the id, so a misclick on the wrong secret's page cannot do it.
            if field(form, "confirm_id", 256) != secret_id:
                raise InvalidInput("type the secret's id to confirm the revocation")
            done = await rotations.revoke(engine, session.operator.tenant, secret_id, person(session), why)
            note = (
                f"revoked {', '.join(done.revoked_versions) or 'no versions'}; incident {done.incident_id} opened,"
                f" {done.alerts_sent} dependent(s) alerted"
            )
            return await secret_view(session, secret_id, note)

        return await kit.action(request, "revoke_secret", "operator", work, secret_field="secret_id")

    return [secret_page, rotate, rollback, revoke]
