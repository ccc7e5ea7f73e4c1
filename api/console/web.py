"""The console's routes: sign-in, set-up and the pages, server-rendered with autoescaping Jinja2.

Security in one place: every response carries a strict CSP (scripts and styles from 'self' only, no inline code,
frame-ancestors 'none') and no-store; every form post must carry the CSRF token of its session (or, signed out,
of the double-submit cookie); every action is audited with the signed-in person as the actor, through the same
``audited`` records MCP calls make; every query is filtered by the operator's own tenant.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib.resources import files
from typing import Any

import pyotp
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response

from lockzero.api.console.sessions import (
    COOKIE,
    PRE_COOKIE,
    ConsoleSession,
    close_session,
    load_session,
    open_session,
    same,
)
from lockzero.engine.app import Engine
from lockzero.engine.audit.records import audited, record
from lockzero.engine.commands import approvals, rotations, tenants
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import Conflict, InvalidInput, LockzeroError, NotFound
from lockzero.engine.queries import console_queries
from lockzero.engine.queries.history import rotation_history
from lockzero.engine.queries.metadata import secret_metadata
from lockzero.engine.queries.timeline import incident_timeline
from lockzero.engine.security import keys, operators

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_STATUS = {"invalid_params": 400, "forbidden": 403, "not_found": 404, "conflict": 409, "unauthorized": 401}
_STATUS["rate_limited"] = 429
_EXPIRY_DAYS = {"7": 7, "30": 30, "90": 90, "365": 365, "never": None}

_templates = Environment(
    loader=PackageLoader("lockzero.api.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)
_STATIC = {
    name: (files("lockzero.api.console").joinpath("static", name).read_bytes(), media)
    for name, media in (("console.css", "text/css"), ("console.js", "text/javascript"))
}

AnyRequest = Request[Any, Any, Any]


class Refused(Exception):
    """A request turned away before any work: the status and a message safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _cookie(name: str, value: str, max_age: int | None = None) -> Cookie:
    # __Host- cookies: Secure, Path=/ and no Domain, so no sibling host can set or read them.
    return Cookie(key=name, value=value, path="/", secure=True, httponly=True, samesite="strict", max_age=max_age)


def render(template: str, status: int = 200, cookies: list[Cookie] | None = None, **context: Any) -> Response[str]:
    context.setdefault("me", None)
    context.setdefault("csrf", "")
    context.setdefault("message", None)
    context.setdefault("message_kind", "ok")
    context.setdefault("title", template.removesuffix(".html").title())
    html = _templates.get_template(template).render(**context)
    return Response(html, status_code=status, media_type="text/html", headers=SECURITY_HEADERS, cookies=cookies or [])


def redirect(to: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response("", status_code=303, headers={**SECURITY_HEADERS, "Location": to}, cookies=cookies or [])


def _error_page(status: int, message: str, session: ConsoleSession | None = None) -> Response[str]:
    heading = {400: "Not accepted", 401: "Not signed in", 403: "Refused", 404: "Not found", 409: "Conflict"}
    return render(
        "error.html",
        status=status,
        title=heading.get(status, "Refused"),
        heading=heading.get(status, "Refused"),
        detail=message,
        me=session.operator if session else None,
        csrf=session.csrf if session else "",
    )


def _person(session: ConsoleSession) -> ev.EventMeta:
    return ev.EventMeta(actor_id=session.operator.name, actor_type="person")


def _field(form: dict[str, str], name: str, limit: int = 1024) -> str:
    value = form.get(name, "")
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return value


async def _form(request: AnyRequest) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def console_routes(engine: Engine, queue: SagaQueue) -> list[HTTPRouteHandler]:
    """The console's route handlers, registered by api/app.py beside the MCP endpoint."""

    async def session_of(request: AnyRequest) -> ConsoleSession | None:
        return await load_session(engine, request.cookies.get(COOKIE))

    async def signed_in(request: AnyRequest) -> ConsoleSession:
        session = await session_of(request)
        if session is None:
            raise Refused(401, "sign in first")
        return session

    async def posted(request: AnyRequest) -> tuple[ConsoleSession, dict[str, str]]:
        """The session and form of a post, only if the form carries that session's CSRF token."""
        session = await signed_in(request)
        form = await _form(request)
        if not same(form.get("csrf", ""), session.csrf):
            raise Refused(403, "this form's CSRF token is missing or wrong; reload the page and try again")
        return session, form

    async def action(
        request: AnyRequest,
        method: str,
        needed: str,
        work: Callable[[ConsoleSession, dict[str, str]], Awaitable[Response[str]]],
        secret_field: str | None = None,
    ) -> Response[str]:
        """A console action: CSRF-checked, role-checked and audited like an MCP call (denials too)."""
        session, form = await posted(request)
        secret_id = form.get(secret_field) if secret_field else None
        try:
            async with audited(
                engine, session.operator.tenant, _person(session), method, secret_id=(secret_id or None)
            ):
                operators.require_role(session.operator, needed, method.replace("_", " "))
                return await work(session, form)
        except LockzeroError as exc:
            return _error_page(_STATUS.get(exc.name, 400), exc.message, session)

    def on_refused(request: AnyRequest, exc: Exception) -> Response[str]:
        assert isinstance(exc, Refused)
        if exc.status == 401 and request.method == "GET":
            return redirect("/")
        return _error_page(exc.status, exc.message)

    handlers: dict[int | type[Exception], Callable[[AnyRequest, Any], Response[Any]]] = {Refused: on_refused}

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
            cookies=[_cookie(PRE_COOKIE, token)],
            **values,
        )

    async def pre_form(request: AnyRequest) -> dict[str, str]:
        form = await _form(request)
        if not same(form.get("csrf", ""), request.cookies.get(PRE_COOKIE, "")):
            raise Refused(403, "this form's CSRF token is missing or wrong; reload the page and try again")
        return form

    @get("/", exception_handlers=handlers)
    async def home(request: AnyRequest) -> Response[str]:
        session = await session_of(request)
        if session is None:
            return login_page()
        tenant = session.operator.tenant
        found = await console_queries.overview(engine, tenant)
        return render(
            "overview.html", me=session.operator, csrf=session.csrf, o=found, rotations=found.in_flight, approve=False
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
        return redirect("/", [_cookie(COOKIE, token), _cookie(PRE_COOKIE, "", max_age=0)])

    async def _tenant_exists(tenant: str) -> bool:
        try:
            await tenants.get_tenant(engine, tenant)
        except (NotFound, InvalidInput):
            return False
        return True

    @post("/logout", exception_handlers=handlers, status_code=200)
    async def logout(request: AnyRequest) -> Response[str]:
        session, _ = await posted(request)
        await close_session(engine, request.cookies.get(COOKIE, ""))
        await record(engine, session.operator.tenant, _person(session), "console.sign_out", "ok")
        return redirect("/", [_cookie(COOKIE, "", max_age=0)])

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
            cookies=[_cookie(PRE_COOKIE, csrf)],
        )

    @get("/setup", exception_handlers=handlers)
    async def setup_get(request: AnyRequest) -> Response[str]:
        token = request.query_params.get("token", "")
        try:
            operator = await operators.pending_setup(engine, token)
        except NotFound as exc:
            return _error_page(404, exc.message)
        return setup_page(token, operator)

    @post("/setup", exception_handlers=handlers, status_code=200)
    async def setup_post(request: AnyRequest) -> Response[str]:
        form = await pre_form(request)
        token = form.get("token", "")
        try:
            operator = await operators.pending_setup(engine, token)
        except NotFound as exc:
            return _error_page(404, exc.message)
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
        session = await signed_in(request)
        q = request.query_params.get("q", "")[:256]
        found = await console_queries.secrets(engine, session.operator.tenant, q)
        return render("secrets.html", me=session.operator, csrf=session.csrf, secrets=found, q=q)

    async def secret_view(session: ConsoleSession, secret_id: str, message: str | None = None) -> Response[str]:
        tenant = session.operator.tenant
        try:
            meta = await secret_metadata(engine, tenant, secret_id)
            history = await rotation_history(engine, tenant, secret_id, limit=20)
        except (NotFound, InvalidInput):
            return _error_page(404, "no such secret in this tenant", session)
        return render(
            "secret.html",
            title=f"Secret {secret_id}",
            me=session.operator,
            csrf=session.csrf,
            m=meta,
            h=history,
            dependents=await console_queries.dependents(engine, tenant, secret_id),
            can_rotate=operators.role_allows(session.operator.role, "operator"),
            message=message,
        )

    @get("/secret", exception_handlers=handlers)
    async def secret_page(request: AnyRequest) -> Response[str]:
        session = await signed_in(request)
        return await secret_view(session, request.query_params.get("id", "")[:256])

    @post("/secret/rotate", exception_handlers=handlers, status_code=200)
    async def rotate(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            secret_id = _field(form, "secret_id", 256)
            reason = _field(form, "reason", 500).strip()
            if not reason:
                raise InvalidInput("say why you rotate (the reason goes to the history and the audit log)")
            if form.get("confirm") != "yes":
                raise InvalidInput("tick the confirmation box to rotate")
            started = await rotations.rotate(
                engine, queue, session.operator.tenant, secret_id, _person(session), reason
            )
            note = f"rotation {started.rotation_id} {started.status.replace('_', ' ')}"
            return await secret_view(session, secret_id, note)

        return await action(request, "rotate_secret", "operator", work, secret_field="secret_id")

    @get("/approvals", exception_handlers=handlers)
    async def approvals_page(request: AnyRequest) -> Response[str]:
        session = await signed_in(request)
        return await approvals_view(session)

    async def approvals_view(session: ConsoleSession, message: str | None = None) -> Response[str]:
        pending = await console_queries.in_flight(engine, session.operator.tenant, pending_only=True)
        return render(
            "approvals.html",
            me=session.operator,
            csrf=session.csrf,
            rotations=pending,
            approve=operators.role_allows(session.operator.role, "operator"),
            message=message,
        )

    @post("/approvals/approve", exception_handlers=handlers, status_code=200)
    async def approve(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            rotation_id = _field(form, "rotation_id", 128)
            result = await approvals.approve(engine, session.operator.tenant, rotation_id, session.operator.name, queue)
            note = (
                f"you approved {result.rotation_id} ({result.secret_id}): {len(result.approvers)}/{result.required}"
                f" approvals, {result.status.replace('_', ' ')}"
            )
            return await approvals_view(session, note)

        return await action(request, "rotation.approve", "operator", work)

    @get("/incidents", exception_handlers=handlers)
    async def incidents_page(request: AnyRequest) -> Response[str]:
        session = await signed_in(request)
        found = await console_queries.incidents(engine, session.operator.tenant)
        return render("incidents.html", me=session.operator, csrf=session.csrf, incidents=found)

    @get("/incident", exception_handlers=handlers)
    async def incident_page(request: AnyRequest) -> Response[str]:
        session = await signed_in(request)
        incident_id = request.query_params.get("id", "")[:128]
        try:
            tl = await incident_timeline(engine, session.operator.tenant, incident_id)
        except (NotFound, InvalidInput):
            return _error_page(404, "no such incident in this tenant", session)
        span = max([e.last_offset_ms or e.offset_ms for e in tl.entries] + [1.0])
        return render(
            "incident.html", title=f"Incident {incident_id}", me=session.operator, csrf=session.csrf, t=tl, span=span
        )

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
        session = await signed_in(request)
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
                _person(session),
                name=_field(form, "name", 128).strip(),
                read_only=permission == "read",
                scopes=tuple(_field(form, "scopes", 4096).split()),
                expires_at=engine.clock.now() + timedelta(days=days) if days else None,
            )
            # Shown once: this response is the only place the token ever appears (no-store keeps it out of caches).
            return await keys_view(request, session, created)

        return await action(request, "key.create", "admin", work)

    @post("/settings/keys/revoke", exception_handlers=handlers, status_code=200)
    async def key_revoke(request: AnyRequest) -> Response[str]:
        async def work(session: ConsoleSession, form: dict[str, str]) -> Response[str]:
            key_id = _field(form, "key_id", 128)
            revoked = await keys.revoke_key(engine, key_id, _person(session), tenant=session.operator.tenant)
            return await keys_view(
                request, session, message=f"key {revoked.name} revoked; clients using it are refused"
            )

        return await action(request, "key.revoke", "admin", work)

    return [
        home,
        login,
        logout,
        setup_get,
        setup_post,
        static,
        secrets_page,
        secret_page,
        rotate,
        approvals_page,
        approve,
        incidents_page,
        incident_page,
        keys_page,
        key_create,
        key_revoke,
    ]
