"""The Litestar application: health endpoints now; the MCP endpoint mounts here."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.response import Response

from engine.app import Engine
from eventstore import StoreUnavailable


def create_app(engine: Engine) -> Litestar:
    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz")
    async def readyz() -> Response[dict[str, str]]:
        try:
            await engine.store.ping()
        except StoreUnavailable:
            return Response({"status": "unavailable", "store": "down"}, status_code=503)
        return Response({"status": "ready", "store": "ok"})

    return Litestar(route_handlers=[healthz, readyz], debug=False)
