"""`lockzero migrate|replay|serve|worker|demo`, `tenant …`, `key …`, `provider …`: setting Lockzero up."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from lockzero.api.cli.context import open_engine, operator, settings_with_key
from lockzero.api.cli.output import emit_json, table
from lockzero.engine.audit import records as audit
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import tenants
from lockzero.engine.config import ConfigError, check_tls
from lockzero.engine.security import keys


async def cmd_migrate(args: argparse.Namespace) -> None:
    async with open_engine(migrate=False, check_schema=False) as engine:
        applied = await engine.migrate()
    if args.json:
        emit_json({"applied": applied})
    else:
        print("\n".join(f"applied {name}" for name in applied) or "schema is up to date")


async def cmd_replay(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        count = await engine.replay()
    if args.json:
        emit_json({"events_replayed": count})
    else:
        print(f"rebuilt read models from {count} events")


async def cmd_tenant_create(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        view = await tenants.create_tenant(engine, args.name, operator())
        await audit.record(engine, view.tenant, operator(), "tenant.create", "ok")
    if args.json:
        emit_json(view)
    else:
        print(f"created tenant {view.tenant}")


async def cmd_tenant_list(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        rows = await tenants.list_tenants(engine)
    if args.json:
        emit_json({"tenants": rows})
    else:
        table([(t.tenant, t.created_at) for t in rows], ("TENANT", "CREATED"))


async def cmd_key_create(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "key.create"):
            created = await keys.create_key(
                engine, args.tenant, operator(), name=args.name, read_only=args.read_only, scopes=tuple(args.scope)
            )
    if args.json:
        emit_json({"key_id": created.key_id, "key": created.key})
        return
    print(f"key id:     {created.key_id}")
    print(f"permission: {'read' if created.read_only else 'read-write'}")
    print(f"scopes:     {', '.join(created.scopes) or '(whole tenant)'}")
    print(f"key:        {created.key}")
    print("This key is shown once. Store it now; Lockzero keeps only a keyed hash.", file=sys.stderr)


async def cmd_key_list(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        views = await keys.list_keys(engine, args.tenant)
    if args.json:
        emit_json({"keys": views})
    else:
        table(
            [(k.key_id, k.name, k.permission, ",".join(k.scopes) or "*", k.status, k.created_at) for k in views],
            ("KEY ID", "NAME", "PERMISSION", "SCOPES", "STATUS", "CREATED"),
        )


async def cmd_key_revoke(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        view = await keys.revoke_key(engine, args.key_id, operator())
        await audit.record(engine, view.tenant, operator(), "key.revoke", "ok", detail=view.key_id)
    if args.json:
        emit_json(view)
    else:
        print(f"revoked {view.key_id} (tenant {view.tenant})")


async def cmd_serve(args: argparse.Namespace) -> None:
    from lockzero.api.serve import serve

    settings = settings_with_key()
    if args.tls_cert or args.tls_key:
        # A flag overrides its environment variable; the pair is checked as the flags name it.
        cert = args.tls_cert or (str(settings.tls_cert) if settings.tls_cert else None)
        key = args.tls_key or (str(settings.tls_key) if settings.tls_key else None)
        tls_cert, tls_key = check_tls(cert, key, ("--tls-cert", "--tls-key"))
        settings = dataclasses.replace(settings, tls_cert=tls_cert, tls_key=tls_key)
    await serve(settings)


async def cmd_worker(args: argparse.Namespace) -> None:
    settings = settings_with_key()
    if not settings.redis_url:
        raise ConfigError("LOCKZERO_REDIS_URL is required for `lockzero worker` (embedded mode runs sagas in serve)")
    from lockzero.workers.arq_worker import run_worker

    await run_worker(settings)


async def cmd_demo(args: argparse.Namespace) -> None:
    from lockzero.api.demo import run_demo

    await run_demo(as_json=args.json)
