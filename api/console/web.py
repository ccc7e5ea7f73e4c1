"""The console's routes: sign-in, set-up, static files and the read-only pages, server-rendered with autoescaping
Jinja2. Actions live in actions.py, live progress in live.py, the audit search in audit_pages.py and settings in
settings.py; what they share (headers, sessions, CSRF, audited actions) is in kit.py.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from importlib.resources import files

import pyotp
from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response

from lockzero.api.console import approval_pages, audit_pages, charts, incident_pages, live, secret_pages, settings
from lockzero.api.console.kit import (
    SECURITY_HEADERS,
    AnyRequest,
    Kit,
    Refused,
    cookie,
    error_page,
    field,
    form_of,
    person,
    redirect,
    render,
)
from lockzero.api.console.sessions import COOKIE, PRE_COOKIE, ConsoleSession, close_session, open_session, same
from lockzero.engine.app import Engine
from lockzero.engine.audit.records import record
from lockzero.engine.commands import tenants
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.queries import console_queries
from lockzero.engine.security import keys, operators

_EXPIRY_DAYS = {"7": 7, "30": 30, "90": 90, "365": 365, "never": None}
_STATIC = {
    name: (files("lockzero.api.console").joinpath("static", name).read_bytes(), media)
    for name, media in (("console.css", "text/css"), ("console.js", "text/javascript"))
}


def console_routes(engine: Engine, queue: SagaQueue) -> list[HTTPRouteHandler]:
    """The console's route handlers, registered by api/app.py beside the MCP endpoint."""
    kit = Kit(engine, queue)
    handlers = kit.handlers

    # --- signed out --------------------------------------------------------------------------------

    def login_page(message: str | None = None, status: int = 200, **values: str) -> Response[str]:
        token = secrets.token_urlsafe(24)
        values.setdefault("tenant", "")
        values.setdefault("name", "")
        return render(
            "login.html",
            status=status,
            title="Sign in",
            csrf=token,
            message=message,
            message_kind="error",
            cookies=[cookie(PRE_COOKIE, token)],
            **values,
        )

    async def pre_form(request: AnyRequest) -> dict[str, str]:
        form = await form_of(request)
        if not same(form.get("csrf", ""), request.cookies.get(PRE_COOKIE, "")):
            raise Refused(403, "this form's CSRF token is missing or wrong; reload the page and try again")
        return form

    @get("/", exception_handlers=handlers)
    async def home(request: AnyRequest) -> Response[str]:
        session = await kit.session_of(request)
        if session is None:
            return login_page()
        tenant = session.operator.tenant
        found = await console_queries.overview(engine, tenant)
        return kit.page(
            "overview.html",
            session,
            o=found,
            rotations=found.in_flight,
            approve=False,
            ttr=charts.remediation_chart(await console_queries.remediation_by_day(engine, tenant)),
            ages=charts.age_chart(await console_queries.rotation_ages(engine, tenant)),
        )

    @post("/login", exception_handlers=handlers, status_code=200)
    async def login(request: AnyRequest) -> Response[str]:
        form = await pre_form(request)
        tenant, name = form.get("tenant", "")[:64], form.get("name", "")[:64]
        address = request.client.host if request.client else "unknown"
        try:
            operator = await operators.sign_in(
                engine, tenant, name, form.get("password", ""), form.get("totp", "")[:16], address
            )
        except (operators.SignInRefused, operators.SignInThrottled) as exc:
            if await _tenant_exists(tenant):
                who = ev.EventMeta(actor_id=name or "-", actor_type="person")
                await record(engine, tenant, who, "console.sign_in", "denied", detail=exc.message)
            status = 429 if isinstance(exc, operators.SignInThrottled) else 401
            return login_page(exc.message, status, tenant=tenant, name=name)
        token = await open_session(engine, operator)
        await record(engine, tenant, ev.EventMeta(actor_id=name, actor_type="person"), "console.sign_in", "ok")
        return redirect("/", [cookie(COOKIE, token), cookie(PRE_COOKIE, "", max_age=0)])

    async def _tenant_exists(tenant: str) -> bool:
        try:
            await tenants.get_tenant(engine, tenant)
        except (NotFound, InvalidInput):
            return False
        return True

    @post("/logout", exception_handlers=handlers, status_code=200)
    async def logout(request: AnyRequest) -> Response[str]:
        session, _ = await kit.posted(request)
        await close_session(engine, request.cookies.get(COOKIE, ""))
        await record(engine, session.operator.tenant, person(session), "console.sign_out", "ok")
        return redirect("/", [cookie(COOKIE, "", max_age=0)])

    def setup_page(token: str, operator: operators.OperatorView, message: str | None = None) -> Response[str]:
        csrf = secrets.token_urlsafe(24)
        totp_secret = pyotp.random_base32()
        uri = pyotp.TOTP(totp_secret).provisioning_uri(
            name=f"{operator.name}@{operator.tenant}", issuer_name="Lockzero"
        )
        return render(
            "setup.html",
            status=400 if message else 200,
            title="Set up",
            csrf=csrf,
            token=token,
            operator=operator,
            totp_secret=totp_secret,
            totp_uri=uri,
            message=message,
            message_kind="error",
            cookies=[cookie(PRE_COOKIE, csrf)],
        )

    @get("/setup", exception_handlers=handlers)
    async def setup_get(request: AnyRequest) -> Response[str]:
        token = request.query_params.get("token", "")
        try:
            operator = await operators.pending_setup(engine, token)
        except NotFound as exc:
            return error_page(404, exc.message)
        return setup_page(token, operator)

    @post("/setup", exception_handlers=handlers, status_code=200)
    async def setup_post(request: AnyRequest) -> Response[str]:
        form = await pre_form(request)
        token = form.get("token", "")
        try:
            operator = await operators.pending_setup(engine, token)
        except NotFound as exc:
            return error_page(404, exc.message)
        if form.get("password", "") != form.get("password2", ""):
            return setup_page(token, operator, "the two passwords differ")
        code = form.get("totp", "").strip()
        try:
            done = await operators.complete_setup(
                engine,
                token,
                form.get("password", ""),
                totp_secret=form.get("totp_secret") if (code or operator.totp_required) else None,
                totp_code=code,
            )
        except (InvalidInput, Conflict) as exc:
            return setup_page(token, operator, exc.message)
        await record(engine, done.tenant, ev.EventMeta(actor_id=done.name, actor_type="person"), "operator.setup", "ok")
        return login_page(None, tenant=done.tenant, name=done.name)

    @get("/static/{name:str}")
    async def static(name: str) -> Response[bytes]:
        found = _STATIC.get(name)
        if found is None:
            return Response(b"not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
        return Response(found[0], media_type=found[1], headers=headers)

    # --- pages -------------------------------------------------------------------------------------

    @get("/secrets", exception_handlers=handlers)
    async def secrets_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        q = request.query_params.get("q", "")[:256]
        found = await console_queries.secrets(engine, session.operator.tenant, q)
        return render("secrets.html", me=session.operator, csrf=session.csrf, secrets=found, q=q)

    # --- settings → MCP keys -----------------------------------------------------------------------

    async def keys_view(
        request: AnyRequest, session: ConsoleSession, created: keys.CreatedKey | None = None, message: str | None = None
    ) -> Response[str]:
        mcp_url = str(request.base_url).rstrip("/") + "/api/mcp"
        desktop = ""
        if created is not None:
            desktop = json.dumps(
                # The same form `lockzero serve` prints for its first key (api/bootstrap.py).
                {
                    "mcpServers": {
                        "lockzero": {
                            "type": "http",
                            "url": mcp_url,
                            "headers": {"Authorization": f"Bearer {created.key}"},
                        }
                    }
                },
                indent=2,
            )
        return render(
            "keys.html",
            title="MCP keys",
            me=session.operator,
            csrf=session.csrf,
            keys=await keys.list_keys(engine, session.operator.tenant),
            created=created,
            mcp_url=mcp_url,
            desktop_snippet=desktop,
            can_manage=operators.role_allows(session.operator.role, "admin"),
            message=message,
        )

    @get("/settings/keys", exception_handlers=handlers)
    async def keys_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        return await keys_view(request, session)

    @post("/settings/keys/create", exception_handlers=handlers, status_code=200)
    async def key_create(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            permission = form.get("permission", "")
            if permission not in ("read", "read-write"):
                raise InvalidInput("permission must be read or read-write")
            expiry = form.get("expires", "")
            if expiry not in _EXPIRY_DAYS:
                raise InvalidInput("expires must be 7, 30, 90, 365 days or never")
            days = _EXPIRY_DAYS[expiry]
            created = await keys.create_key(
                engine,
                session.operator.tenant,
                person(session),
                name=field(form, "name", 128).strip(),
                read_only=permission == "read",
                scopes=tuple(field(form, "scopes", 4096).split()),
                expires_at=engine.clock.now() + timedelta(days=days) if days else None,
            )
            # Shown once: this response is the only place the token ever appears (no-store keeps it out of caches).
            return await keys_view(request, session, created)

        return await kit.action(request, "key.create", "admin", work)

    @post("/settings/keys/revoke", exception_handlers=handlers, status_code=200)
    async def key_revoke(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            key_id = field(form, "key_id", 128)
            revoked = await keys.revoke_key(engine, key_id, person(session), tenant=session.operator.tenant)
            return await keys_view(
                request, session, message=f"key {revoked.name} revoked; clients using it are refused"
            )

        return await kit.action(request, "key.revoke", "admin", work)

    return [
        home,
        login,
        logout,
        setup_get,
        setup_post,
        static,
        secrets_page,
        keys_page,
        key_create,
        key_revoke,
        *secret_pages.routes(kit),
        *approval_pages.routes(kit),
        *incident_pages.routes(kit),
        *live.routes(kit),
        *audit_pages.routes(kit),
        *settings.routes(kit),
    ]
