"""`lockzero serve`: open the engine, set up the embedded default on first start, run uvicorn."""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn

from lockzero.api.app import create_app
from lockzero.api.bootstrap import first_start
from lockzero.api.http_protocol import GuardedH11Protocol
from lockzero.engine import observability
from lockzero.engine.app import Engine
from lockzero.engine.config import ConfigError, Settings
from lockzero.engine.domain.errors import Unavailable
from lockzero.workers.arq_worker import ArqQueue
from lockzero.workers.inprocess import InProcessQueue


async def serve(settings: Settings) -> None:
    observability.configure_json_logging()
    # The port first: a busy port is one line before anything is opened, printed (the first start's key) or
    # claims to listen; uvicorn would say "listening" and only then fail to bind.
    listener = bind(settings)
    try:
        await _serve(settings, listener)
    finally:
        listener.close()


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and the
    # accepted connections inherit it. Without it a response's body waited for the client's delayed ACK of the
    # headers (Nagle): about 40 ms on every request after the first on a keep-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # As uvicorn does: a restart may bind while the previous process's connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {settings.port} on {settings.host} is already in use (another lockzero serve?);"
                " stop that process or choose another port with LOCKZERO_PORT"
            ) from None
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); check LOCKZERO_HOST and LOCKZERO_PORT"
        ) from None
    return sock


async def _serve(settings: Settings, listener: socket.socket) -> None:
    engine = await Engine.open(settings.database_url, settings.require_master_key(), outbound=settings.outbound)
    try:
        if settings.embedded:
            await engine.migrate()
            await first_start(engine, settings)
        elif not await engine.schema_ready():
            raise Unavailable("the database schema is not migrated; run `lockzero migrate` first")
        queue = await open_queue(engine, settings)
        app: Any = create_app(engine, settings, queue)
        tls = tls_context(settings) if settings.tls else None
        config = uvicorn.Config(
            RequestIdMiddleware(HstsMiddleware(app) if tls is not None else app),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            # Timeouts uvicorn lacks (header read, bodies left unread): see api/http_protocol.py.
            http=GuardedH11Protocol,
            timeout_keep_alive=5,
            # SIGTERM: stop accepting, let calls in flight finish for at most this long, then cancel them.
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
            ssl_context_factory=(lambda _config, _default: tls) if tls is not None else None,
        )
        scheme = "https" if tls is not None else "http"
        print(f"lockzero: listening on {scheme}://{settings.host}:{settings.port}", flush=True)
        try:
            await uvicorn.Server(config).serve(sockets=[listener])
        finally:
            await queue.close()
    finally:
        await engine.close()


async def open_queue(engine: Engine, settings: Settings) -> InProcessQueue | ArqQueue:
    """arq on Redis when LOCKZERO_REDIS_URL is set, else sagas run inside this process."""
    if settings.redis_url:
        return await ArqQueue.connect(settings.redis_url)
    queue = InProcessQueue(engine)
    queue.start()
    return queue


def tls_context(settings: Settings) -> ssl.SSLContext:
    """TLS 1.2 and 1.3 only, with the default (modern) cipher choice of the ssl module."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


#: Two years, the preload list's minimum: a browser that once reached the console over HTTPS never falls back.
HSTS = b"max-age=63072000; includeSubDomains"

ASGIApp = Callable[..., Any]


class HstsMiddleware:
    """Adds Strict-Transport-Security to every HTTP response (only mounted when serving HTTPS)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: ASGIApp, send: ASGIApp) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"strict-transport-security"]
                message = {**message, "headers": [*headers, (b"strict-transport-security", HSTS)]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)


class RequestIdMiddleware:
    """Gives each HTTP request an id (the caller's X-Request-Id when it is a short token, else a new one), sets
    it for the log lines written while serving it, and answers with it in X-Request-Id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: ASGIApp, send: ASGIApp) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"")
        # Only a short token is echoed into logs and headers: the header is the caller's, not ours to trust.
        rid = given.decode("ascii") if _REQUEST_ID.fullmatch(given) else observability.new_request_id()
        token = observability.request_id.set(rid)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observability.request_id.reset(token)


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
