"""Which coroutine runs each subcommand. A handler's module is imported when its command runs, so one
command pays only for the engine modules it uses (`lockzero --help` for none).

A command module of its own registers here with one line, ``HANDLERS.update(x_cmds.HANDLERS)``; keep its
engine imports inside its handlers, as audit_cmds.py does. ``open_engine``, ``operator`` and
``settings_with_key`` are re-exported for such modules (they live in context.py).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Coroutine
from typing import Any

from lockzero.api.cli import audit_cmds, backup_cmds, completion, intake_cmds, report_cmds
from lockzero.api.cli.context import open_engine, operator, settings_with_key
from lockzero.api.cli.operator_cmds import HANDLERS as OPERATOR_HANDLERS

__all__ = ["HANDLERS", "Handler", "lazy", "open_engine", "operator", "settings_with_key"]

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def lazy(module: str, name: str) -> Handler:
    """``module.name``, imported when the command runs."""

    async def run(args: argparse.Namespace) -> int | None:
        handler: Handler = getattr(importlib.import_module(f"lockzero.api.cli.{module}"), name)
        return await handler(args)

    run.__qualname__ = f"{module}.{name}"
    return run


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("serve", None): lazy("admin_cmds", "cmd_serve"),
    ("worker", None): lazy("admin_cmds", "cmd_worker"),
    ("demo", None): lazy("admin_cmds", "cmd_demo"),
    ("migrate", None): lazy("admin_cmds", "cmd_migrate"),
    ("replay", None): lazy("admin_cmds", "cmd_replay"),
    ("tenant", "create"): lazy("admin_cmds", "cmd_tenant_create"),
    ("tenant", "list"): lazy("admin_cmds", "cmd_tenant_list"),
    ("key", "create"): lazy("admin_cmds", "cmd_key_create"),
    ("key", "list"): lazy("admin_cmds", "cmd_key_list"),
    ("key", "revoke"): lazy("admin_cmds", "cmd_key_revoke"),
    ("provider", "list"): lazy("provider_cmds", "cmd_provider_list"),
    ("provider", "show"): lazy("provider_cmds", "cmd_provider_show"),
    ("secret", "add"): lazy("secret_cmds", "cmd_secret_add"),
    ("secret", "show"): lazy("secret_cmds", "cmd_secret_show"),
    ("secret", "list"): lazy("secret_cmds", "cmd_secret_list"),
    ("secret", "history"): lazy("secret_cmds", "cmd_secret_history"),
    ("secret", "policy"): lazy("secret_cmds", "cmd_secret_policy"),
    ("secret", "delete"): lazy("secret_cmds", "cmd_secret_delete"),
    ("secret", "rotate"): lazy("saga_cmds", "cmd_secret_rotate"),
    ("secret", "rollback"): lazy("saga_cmds", "cmd_secret_rollback"),
    ("secret", "revoke"): lazy("saga_cmds", "cmd_secret_revoke"),
    ("dependent", "add"): lazy("dependent_cmds", "cmd_dependent_add"),
    ("dependent", "list"): lazy("dependent_cmds", "cmd_dependent_list"),
    ("dependent", "remove"): lazy("dependent_cmds", "cmd_dependent_remove"),
    ("incident", "list"): lazy("incident_cmds", "cmd_incident_list"),
    ("incident", "show"): lazy("incident_cmds", "cmd_incident_show"),
    ("incident", "resolve"): lazy("incident_cmds", "cmd_incident_resolve"),
    ("incident", "timeline"): lazy("incident_cmds", "cmd_incident_timeline"),
    ("rotation", "list"): lazy("rotation_cmds", "cmd_rotation_list"),
    ("rotation", "show"): lazy("rotation_cmds", "cmd_rotation_show"),
    ("approve", None): lazy("rotation_cmds", "cmd_approve"),
}
HANDLERS.update(audit_cmds.HANDLERS)
HANDLERS.update(report_cmds.HANDLERS)
HANDLERS.update(backup_cmds.HANDLERS)
HANDLERS.update(intake_cmds.HANDLERS)
HANDLERS.update(OPERATOR_HANDLERS)
HANDLERS.update(completion.HANDLERS)
