"""First start of the embedded default: a tenant and one key, printed once (like Vault's dev root token)."""

from __future__ import annotations

import sys

from lockzero.engine.app import Engine
from lockzero.engine.commands import tenants
from lockzero.engine.config import Settings
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import Conflict
from lockzero.engine.security import keys

DEFAULT_TENANT = "default"
_BOOTSTRAP = ev.EventMeta(actor_id="lockzero:bootstrap", actor_type="system")


async def first_start(engine: Engine, settings: Settings) -> None:
    """Create tenant `default` and print a read-write key once; later starts print nothing secret."""
    try:
        await tenants.create_tenant(engine, DEFAULT_TENANT, _BOOTSTRAP)
    except Conflict:
        print(f"lockzero: state in {settings.state_dir}/ (tenant '{DEFAULT_TENANT}')", file=sys.stderr)
        return
    created = await keys.create_key(engine, DEFAULT_TENANT, _BOOTSTRAP, name="first-start")
    url = f"http://{settings.host}:{settings.port}/api/mcp"
    print(
        f"""
Lockzero is running on the embedded default (SQLite + in-process worker).
State: {settings.state_dir}/  (events in lockzero.db, master key in master.key)

Tenant '{DEFAULT_TENANT}' and one read-write MCP key were created. The key is shown ONCE:

    {created.key}

Claude Code:
    claude mcp add --transport http lockzero {url} --header "Authorization: Bearer {created.key}"

Claude Desktop (claude_desktop_config.json):
    {{"mcpServers": {{"lockzero": {{"type": "http", "url": "{url}",
        "headers": {{"Authorization": "Bearer {created.key}"}}}}}}}}

More keys: lockzero key create --tenant {DEFAULT_TENANT} [--read-only] [--scope 'prod/*']
""",
        flush=True,
    )
