"""GET /api/v1/secrets/{secret_id}/current for pull dependents (Bearer lz_svc_…)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Response

from api.auth import bearer_token, unauthorized
from engine.app import Engine
from engine.errors import NotFound
from engine.pull import BadServiceToken, current_for_dependent
from eventstore import StoreUnavailable

_SUFFIX = "/current"


async def pull_endpoint(engine: Engine, request: Request[Any, Any, Any], rest: str) -> Response[Any]:
    path = rest.lstrip("/")
    if not path.endswith(_SUFFIX):
        return Response({"error": "not_found"}, status_code=404)
    secret_id = path[: -len(_SUFFIX)]
    token = bearer_token(request)
    if token is None:
        return unauthorized("send Authorization: Bearer lz_svc_… (printed by `lockzero dependent add`)")
    try:
        body = await current_for_dependent(engine, token, secret_id)
    except BadServiceToken:
        return unauthorized("the dependent token is unknown or was removed")
    except NotFound as exc:
        return Response({"error": "not_found", "error_description": exc.message}, status_code=404)
    except StoreUnavailable:
        return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
    # The value must not linger in caches between the service and us.
    return Response(body, headers={"Cache-Control": "no-store"})
