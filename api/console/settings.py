"""Settings → operators (admins invite, remove and require TOTP), notifications (where each secret's events go,
and the latest deliveries) and policies (every secret's rotation policy; admins edit the simple fields).
The same engine commands as `lockzero operator …` and `lockzero secret policy`, audited under the same names."""

from __future__ import annotations

from urllib.parse import quote

from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response

from lockzero.api.console.kit import AnyRequest, Kit, field, person
from lockzero.api.console.sessions import ConsoleSession
from lockzero.engine.commands.policies import update_policy
from lockzero.engine.domain.errors import Conflict, InvalidInput
from lockzero.engine.queries import console_queries
from lockzero.engine.security import operators

#: The policy fields the console edits; durations and notify targets stay with `lockzero secret policy`.
_DAY_S = 86400


def _int(form: dict[str, str], name: str, low: int, high: int) -> int | None:
    text = field(form, name, 16).strip()
    if not text:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidInput(f"{name.replace('_', ' ')} must be a whole number from {low} to {high}")
    return int(text)


def routes(kit: Kit) -> list[HTTPRouteHandler]:
    engine, handlers = kit.engine, kit.handlers

    def admin(session: ConsoleSession) -> bool:
        return operators.role_allows(session.operator.role, "admin")

    async def operators_view(
        request: AnyRequest, session: ConsoleSession, message: str | None = None, link: str | None = None
    ) -> Response[str]:
        return kit.page(
            "operators.html",
            session,
            title="Operators",
            operators=await operators.list_operators(engine, session.operator.tenant),
            roles=operators.ROLES,
            can_manage=admin(session),
            link=link,
            message=message,
        )

    @get("/settings/operators", exception_handlers=handlers)
    async def operators_page(request: AnyRequest) -> Response[str]:
        return await operators_view(request, await kit.signed_in(request))

    @post("/settings/operators/invite", exception_handlers=handlers, status_code=200)
    async def invite(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            added = await operators.add_operator(
                engine,
                session.operator.tenant,
                field(form, "name", 64).strip(),
                field(form, "role", 16),
                person(session),
                require_totp=form.get("require_totp") == "yes",
            )
            # Shown once, on this no-store page only: the set-up link is as good as a password until used.
            link = str(request.base_url).rstrip("/") + f"/setup?token={quote(added.setup_token)}"
            note = f"{added.operator.name} invited as {added.operator.role}; give them the link below, once"
            return await operators_view(request, session, note, link)

        return await kit.action(request, "operator.add", "admin", work)

    @post("/settings/operators/remove", exception_handlers=handlers, status_code=200)
    async def remove(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            name = field(form, "name", 64)
            if name == session.operator.name:
                # The last admin removing themselves would lock everyone out of the console.
                raise Conflict("you cannot remove yourself; ask another admin")
            removed = await operators.remove_operator(engine, session.operator.tenant, name, person(session))
            return await operators_view(request, session, f"{removed.name} removed; their sessions ended")

        return await kit.action(request, "operator.remove", "admin", work)

    @post("/settings/operators/require-totp", exception_handlers=handlers, status_code=200)
    async def require_totp(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            changed = await operators.require_totp(
                engine, session.operator.tenant, field(form, "name", 64), person(session)
            )
            return await operators_view(request, session, f"{changed.name} now needs a TOTP code to sign in")

        return await kit.action(request, "operator.require_totp", "admin", work)

    @get("/settings/notifications", exception_handlers=handlers)
    async def notifications_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        tenant = session.operator.tenant
        return kit.page(
            "notifications.html",
            session,
            title="Notifications",
            policies=await console_queries.policies(engine, tenant),
            sent=await console_queries.notifications(engine, tenant),
        )

    async def policies_view(session: ConsoleSession, message: str | None = None) -> Response[str]:
        return kit.page(
            "policies.html",
            session,
            title="Policies",
            policies=await console_queries.policies(engine, session.operator.tenant),
            can_edit=admin(session),
            day_s=_DAY_S,
            message=message,
        )

    @get("/settings/policies", exception_handlers=handlers)
    async def policies_page(request: AnyRequest) -> Response[str]:
        return await policies_view(await kit.signed_in(request))

    @post("/settings/policies/update", exception_handlers=handlers, status_code=200)
    async def policy_update(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            secret_id = field(form, "secret_id", 256)
            max_age = _int(form, "max_age_days", 1, 3650)
            approvals = _int(form, "required_approvals", 0, 10)
            await update_policy(
                engine,
                session.operator.tenant,
                secret_id,
                person(session),
                max_age_s=max_age * _DAY_S if max_age is not None else None,
                required_approvals=approvals or 0,
                allow_agent_rotation=form.get("allow_agent_rotation") == "yes",
                auto_rotate=form.get("auto_rotate") == "yes",
            )
            return await policies_view(session, f"policy of {secret_id} updated")

        return await kit.action(request, "secret.policy", "admin", work, secret_field="secret_id")

    return [
        operators_page,
        invite,
        remove,
        require_totp,
        notifications_page,
        policies_page,
        policy_update,
    ]
