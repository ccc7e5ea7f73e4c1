"""Floors for the MCP benchmark: the bare endpoint plus the least database work a durable metadata read needs.

Each floor answers POST /api/mcp with the exact bytes the bare endpoint returns (tests/bench/bare_app.py), after
doing, for the ``secret_id`` in the call's params, one of (``LOCKZERO_BENCH_FLOOR``):

- ``read``: get_secret_metadata's own read (engine/queries/metadata.py: one query on the event store's pool, the
  answer built);
- ``append``: that read, then one event appended to the store and awaited (group-committed with the other clients'
  appends, no read-model hook);
- ``audit``: that read, then one audit record through Lockzero's durable audit path (AuditBatcher: group commit
  with the rm_audit projection), which is what every answered call costs.

No authentication, JSON-RPC, tool layer, rate limit, logging or tracing. So a floor's rate over the bare
endpoint's is the most the issue's ratio could be with that much database work, and Lockzero's rate over the
``audit`` floor's is what its own per-call Python leaves. Served like bare_app (one uvicorn process, the same
settings); set up with the bench's database (LOCKZERO_DATABASE_URL, LOCKZERO_MASTER_KEY).

Run: ``LOCKZERO_BENCH_FLOOR=audit LOCKZERO_BENCH_BARE_BODY=/path/body.json python -m tests.bench.floor_app``
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, post
from litestar.response import Response

from lockzero.api.cli.context import open_engine
from lockzero.engine.app import Engine
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.records import make_record
from lockzero.engine.domain import events as ev
from lockzero.engine.queries.metadata import secret_metadata
from lockzero.eventstore import NewEvent

FLOOR_ENV = "LOCKZERO_BENCH_FLOOR"
FLOORS = ("read", "append", "audit")
TENANT = "bench"
#: The floors' audit records name this actor, so the bench tells them from the server's.
ACTOR = ev.EventMeta(actor_id="bench-floor", actor_type="service")
APPEND_STREAM = "bench-floor"


class _Params(msgspec.Struct):
    secret_id: str


class _Call(msgspec.Struct):
    params: _Params


_decode_call = msgspec.json.Decoder(_Call).decode


def create_app(engine: Engine, floor: str, body: bytes) -> Litestar:
    audit = AuditBatcher(engine)

    @post("/api/mcp", status_code=200)
    async def mcp_post(request: Request[Any, Any, Any]) -> Response[bytes]:
        secret_id = _decode_call(await request.body()).params.secret_id
        await secret_metadata(engine, TENANT, secret_id)
        if floor == "append":
            await engine.store.append(APPEND_STREAM, [NewEvent(type="BenchFloor", data=b"{}")])
        elif floor == "audit":
            await audit.record(
                make_record(engine, TENANT, ACTOR, "get_secret_metadata", "ok", secret_id=secret_id), ACTOR
            )
        return Response(body, status_code=200, media_type="application/json")

    return Litestar(route_handlers=[mcp_post], debug=False, request_max_body_size=None)


async def serve(floor: str, body: bytes) -> None:
    host = os.environ.get("LOCKZERO_HOST") or "127.0.0.1"
    port = int(os.environ.get("LOCKZERO_PORT") or "8082")
    async with open_engine() as engine:
        config = uvicorn.Config(
            create_app(engine, floor, body), host=host, port=port, log_level="warning", access_log=False
        )
        print(f"floor {floor}: listening on http://{host}:{port}", flush=True)
        await uvicorn.Server(config).serve()


def main() -> None:
    floor = os.environ[FLOOR_ENV]
    if floor not in FLOORS:
        raise SystemExit(f"{FLOOR_ENV} must be one of {', '.join(FLOORS)}")
    asyncio.run(serve(floor, Path(os.environ["LOCKZERO_BENCH_BARE_BODY"]).read_bytes()))


if __name__ == "__main__":
    main()
