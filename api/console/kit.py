"""What every console page and action shares: rendering with the security headers, the signed-in session,
CSRF-checked posts and actions audited like MCP calls.

Security in one place: every response carries a strict CSP (scripts and styles from 'self' only, no inline code,
frame-ancestors 'none') and no-store; every form post must carry the CSRF token of its session; every action is
audited with the signed-in person as the actor, through the same ``audited`` records MCP calls make; every query
is filtered by the operator's own tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Response

from lockzero.api.console.sessions import COOKIE, ConsoleSession, load_session, same
from lockzero.engine.app import Engine
from lockzero.engine.audit.records import audited
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import InvalidInput, LockzeroError
from lockzero.engine.security import operators

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

_templates = Environment(
    loader=PackageLoader("lockzero.api.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)


def duration(ms: float | None) -> str:
    """A duration for people: 350 ms, 4.2 s, 3.5 min, 2.0 h, 1.5 d."""
    if ms is None:
        return "running"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"


_templates.filters["duration"] = duration

AnyRequest = Request[Any, Any, Any]
Work = Callable[[ConsoleSession, dict[str, str]], Awaitable[Response[Any]]]


class Refused(Exception):
    """A request turned away before any work: the status and a message safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def cookie(name: str, value: str, max_age: int | None = None) -> Cookie:
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


def fragment(template: str, **context: Any) -> str:
    """A piece of a page (e.g. what server-sent events replace), escaped like every page."""
    return _templates.get_template(template).render(**context)


def redirect(to: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response("", status_code=303, headers={**SECURITY_HEADERS, "Location": to}, cookies=cookies or [])


def error_page(status: int, message: str, session: ConsoleSession | None = None) -> Response[str]:
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


def error_status(exc: LockzeroError) -> int:
    return _STATUS.get(exc.name, 400)


def person(session: ConsoleSession) -> ev.EventMeta:
    return ev.EventMeta(actor_id=session.operator.name, actor_type="person")


def field(form: dict[str, str], name: str, limit: int = 1024) -> str:
    value = form.get(name, "")
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return value


def reason(form: dict[str, str], name: str = "reason", what: str = "say why") -> str:
    text = field(form, name, 500).strip()
    if not text:
        raise InvalidInput(f"{what} (it goes to the history and the audit log)")
    return text


async def form_of(request: AnyRequest) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


class Kit:
    """The engine, the saga queue and the request helpers every console route uses."""

    def __init__(self, engine: Engine, queue: SagaQueue) -> None:
        self.engine = engine
        self.queue = queue

        def on_refused(request: AnyRequest, exc: Exception) -> Response[str]:
            assert isinstance(exc, Refused)
            if exc.status == 401 and request.method == "GET":
                return redirect("/")
            return error_page(exc.status, exc.message)

        self.handlers: dict[int | type[Exception], Callable[[AnyRequest, Any], Response[Any]]] = {Refused: on_refused}

    async def session_of(self, request: AnyRequest) -> ConsoleSession | None:
        return await load_session(self.engine, request.cookies.get(COOKIE))

    async def signed_in(self, request: AnyRequest) -> ConsoleSession:
        session = await self.session_of(request)
        if session is None:
            raise Refused(401, "sign in first")
        return session

    async def posted(self, request: AnyRequest) -> tuple[ConsoleSession, dict[str, str]]:
        """The session and form of a post, only if the form carries that session's CSRF token."""
        session = await self.signed_in(request)
        form = await form_of(request)
        if not same(form.get("csrf", ""), session.csrf):
            raise Refused(403, "this form's CSRF token is missing or wrong; reload the page and try again")
        return session, form

    def page(self, template: str, session: ConsoleSession, **context: Any) -> Response[str]:
        return render(template, me=session.operator, csrf=session.csrf, **context)

    async def action(
        self,
        request: AnyRequest,
        method: str,
        needed: str,
        work: Work,
        secret_field: str | None = None,
        secret_of: Callable[[str, dict[str, str]], Awaitable[str | None]] | None = None,
    ) -> Response[Any]:
        """A console action: CSRF-checked, role-checked and audited like an MCP call (denials too). The audit
        record names the secret: a form field, or ``secret_of`` (tenant, form) for actions on a rotation or an
        incident."""
        session, form = await self.posted(request)
        secret_id = form.get(secret_field) if secret_field else None
        if secret_of is not None:
            secret_id = await secret_of(session.operator.tenant, form)
        try:
            async with audited(
                self.engine, session.operator.tenant, person(session), method, secret_id=(secret_id or None)
            ):
                operators.require_role(session.operator, needed, method.replace("_", " "))
                return await work(session, form)
        except LockzeroError as exc:
            return error_page(error_status(exc), exc.message, session)
