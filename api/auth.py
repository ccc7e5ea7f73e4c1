"""Bearer authentication and Origin checks for the HTTP endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.response import Response

from lockzero.engine.app import Engine
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.security.key_cache import KeyCache
from lockzero.engine.security.keys import authenticate
from lockzero.eventstore import StoreUnavailable

_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(description: str) -> Response[dict[str, str]]:
    # No OAuth metadata is advertised: keys are issued by `lockzero key create`.
    return Response({"error": "invalid_token", "error_description": description}, status_code=401, headers=_CHALLENGE)


async def authenticate_key(
    engine: Engine, request: Request[Any, Any, Any], cache: KeyCache | None = None
) -> ApiKey | Response[dict[str, str]]:
    token = bearer_token(request)
    if token is None:
        return unauthorized("send Authorization: Bearer lz_mcp_… (create one with `lockzero key create`)")
    key = await (cache.authenticate(token) if cache is not None else authenticate(engine, token))
    if key is None:
        return unauthorized("the key is unknown, revoked or expired")
    return key


async def try_authenticate(engine: Engine, request: Request[Any, Any, Any]) -> ApiKey | None:
    """The key a refused request carried, if any, to put the refusal in its tenant's audit."""
    token = bearer_token(request)
    if token is None:
        return None
    try:
        return await authenticate(engine, token)
    except StoreUnavailable:
        return None


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def origin_allowed(request: Request[Any, Any, Any], allowed: tuple[str, ...], bind_host: str = "127.0.0.1") -> bool:
    """No Origin (non-browser clients) is fine; a browser Origin must be listed, or be this server on a
    loopback/bind address. Matching Host alone is not enough: DNS rebinding makes Host whatever it likes."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    own_hosts = _LOOPBACK | {bind_host}
    return parts.hostname in own_hosts and parts.netloc == request.headers.get("host", "")
