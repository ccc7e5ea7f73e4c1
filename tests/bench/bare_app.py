"""The baseline for the MCP benchmark: the smallest Litestar app that answers POST /api/mcp.

It reads the request body (as Lockzero does) and returns a fixed response: the exact bytes Lockzero
answered for one ``get_secret_metadata`` direct call, read once at start from the file named by
``LOCKZERO_BENCH_BARE_BODY``. No auth, no audit, no database. It is served by uvicorn with the same
settings as ``lockzero serve`` (api/serve.py): one process, log_level warning, no access log, default
loop and HTTP implementation.

Run: ``LOCKZERO_BENCH_BARE_BODY=/path/body.json LOCKZERO_PORT=8081 python -m tests.bench.bare_app``
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, Request, post
from litestar.response import Response

BODY_ENV = "LOCKZERO_BENCH_BARE_BODY"


def create_app(body: bytes) -> Litestar:
    @post("/api/mcp", status_code=200)
    async def mcp_post(request: Request[Any, Any, Any]) -> Response[bytes]:
        await request.body()
        return Response(body, status_code=200, media_type="application/json")

    return Litestar(route_handlers=[mcp_post], debug=False, request_max_body_size=None)


def main() -> None:
    body = Path(os.environ[BODY_ENV]).read_bytes()
    host = os.environ.get("LOCKZERO_HOST") or "127.0.0.1"
    port = int(os.environ.get("LOCKZERO_PORT") or "8081")
    config = uvicorn.Config(create_app(body), host=host, port=port, log_level="warning", access_log=False)
    print(f"bare: listening on http://{host}:{port}", flush=True)
    # Like `lockzero serve`: asyncio.run around Server.serve(), so both get the same event loop.
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
