"""`lockzero provider list|show`: what each provider rotates and what its admin credential needs."""

from __future__ import annotations

import argparse

from lockzero.api.cli.output import emit_json, table
from lockzero.providers.catalog import PROVIDERS, describe_provider


async def cmd_provider_list(args: argparse.Namespace) -> None:
    if args.json:
        emit_json([{"provider": name, "summary": spec.summary} for name, spec in PROVIDERS.items()])
        return
    table([(name, spec.summary) for name, spec in PROVIDERS.items()], ("PROVIDER", "WHAT IT ROTATES"))
    print("`lockzero provider show P` lists P's --config keys and the admin permissions it needs")


async def cmd_provider_show(args: argparse.Namespace) -> None:
    spec = PROVIDERS[args.name]
    if args.json:
        emit_json(
            {
                "provider": args.name,
                "summary": spec.summary,
                "config": [{"key": k, "required": k in spec.required, "description": v} for k, v in spec.keys.items()],
                "admin_permissions": spec.permissions,
            }
        )
        return
    print(describe_provider(args.name))
