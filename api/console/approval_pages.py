"""Approvals: rotations that policy holds for people, approved by distinct signed-in people or denied by one."""

from __future__ import annotations

from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response

from lockzero.api.console.kit import AnyRequest, Kit, field, reason
from lockzero.api.console.sessions import ConsoleSession
from lockzero.engine.commands import approvals, denial
from lockzero.engine.queries import console_queries
from lockzero.engine.security import operators


def routes(kit: Kit) -> list[HTTPRouteHandler]:
    engine, queue, handlers = kit.engine, kit.queue, kit.handlers

    async def rotation_secret(tenant: str, form: dict[str, str]) -> str | None:
        return await console_queries.secret_of(engine, tenant, rotation_id=form.get("rotation_id", "")[:128])

    async def approvals_view(session: ConsoleSession, message: str | None = None) -> Response[str]:
        pending = await console_queries.in_flight(engine, session.operator.tenant, pending_only=True)
        return kit.page(
            "approvals.html",
            session,
            rotations=pending,
            approve=operators.role_allows(session.operator.role, "operator"),
            message=message,
        )

    @get("/approvals", exception_handlers=handlers)
    async def approvals_page(request: AnyRequest) -> Response[str]:
        return await approvals_view(await kit.signed_in(request))

    @post("/approvals/approve", exception_handlers=handlers, status_code=200)
    async def approve(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            rotation_id = field(form, "rotation_id", 128)
            result = await approvals.approve(engine, session.operator.tenant, rotation_id, session.operator.name, queue)
            note = (
                f"you approved {result.rotation_id} ({result.secret_id}): {len(result.approvers)}/{result.required}"
                f" approvals, {result.status.replace('_', ' ')}"
            )
            return await approvals_view(session, note)

        return await kit.action(request, "rotation.approve", "operator", work, secret_of=rotation_secret)

    @post("/approvals/deny", exception_handlers=handlers, status_code=200)
    async def deny(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            rotation_id = field(form, "rotation_id", 128)
            why = reason(form, what="say why you deny it")
            result = await denial.deny(engine, session.operator.tenant, rotation_id, session.operator.name, why)
            return await approvals_view(session, f"you denied {result.rotation_id} ({result.secret_id}); cancelled")

        return await kit.action(request, "rotation.deny", "operator", work, secret_of=rotation_secret)

    return [approvals_page, approve, deny]
