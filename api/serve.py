"""`lockzero serve`: open the engine, set up the embedded default on first start, run uvicorn."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from api.bootstrap import first_start
from api.http_protocol import GuardedH11Protocol
from engine.app import Engine
from engine.config import Settings
from engine.errors import Unavailable
from workers.arq_worker import ArqQueue
from workers.inprocess import InProcessQueue


async def serve(settings: Settings) -> None:
    engine = await Engine.open(settings.database_url, settings.require_master_key(), outbound=settings.outbound)
    try:
        if settings.embedded:
            await engine.migrate()
            await first_start(engine, settings)
        elif not await engine.schema_ready():
            raise Unavailable("the database schema is not migrated; run `lockzero migrate` first")
        queue = await open_queue(engine, settings)
        config = uvicorn.Config(
            create_app(engine, settings, queue),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            # Timeouts uvicorn lacks (header read, bodies left unread): see api/http_protocol.py.
            http=GuardedH11Protocol,
            timeout_keep_alive=5,
        )
        print(f"lockzero: listening on http://{settings.host}:{settings.port}", flush=True)
        try:
            await uvicorn.Server(config).serve()
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
