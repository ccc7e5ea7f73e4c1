"""What every engine-touching command shares: who acts, the settings, an open engine, the tenant default.

Light at import (the engine is imported when a handler opens it): `lockzero --help` and commands that never
touch the store do not pay for the engine's import.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lockzero.engine.app import Engine
    from lockzero.engine.config import Settings
    from lockzero.engine.domain.events import EventMeta


def operator() -> EventMeta:
    from lockzero.engine.domain.events import EventMeta

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return EventMeta(actor_id=f"cli:{user}", actor_type="operator")


def settings_with_key() -> Settings:
    from lockzero.engine.config import load_settings

    settings = load_settings()
    settings.require_master_key()
    if settings.created_master_key_file is not None:
        print(
            f"lockzero: warning: created a new master key at {settings.created_master_key_file} (mode 0600)."
            " Back it up: without it the stored secrets cannot be decrypted."
            " Production: set LOCKZERO_MASTER_KEY or LOCKZERO_MASTER_KEY_FILE.",
            file=sys.stderr,
        )
    return settings


@asynccontextmanager
async def open_engine(*, migrate: bool | None = None, check_schema: bool = True) -> AsyncIterator[Engine]:
    from lockzero.engine.app import Engine
    from lockzero.engine.domain.errors import Unavailable

    settings = settings_with_key()
    engine = await Engine.open(settings.database_url, settings.require_master_key(), outbound=settings.outbound)
    try:
        # The embedded default sets itself up; a shared PostgreSQL is migrated deliberately.
        if migrate if migrate is not None else settings.embedded:
            await engine.migrate()
        elif check_schema and not await engine.schema_ready():
            raise Unavailable("the database schema is not migrated; run `lockzero migrate` first")
        yield engine
    finally:
        await engine.close()


@asynccontextmanager
async def tenant_engine(tenant: str) -> AsyncIterator[Engine]:
    """An open engine, after checking that the tenant exists (a clear 'no tenant' rather than empty output)."""
    from lockzero.engine.commands import tenants

    async with open_engine() as engine:
        await tenants.get_tenant(engine, tenant)
        yield engine
