"""`lockzero backup`, `lockzero restore` and `lockzero master-key rotate`.

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each; engine
imports stay inside the handlers (`lockzero --help` does not pay for them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockzero.api.cli.output import emit_json

if TYPE_CHECKING:
    from lockzero.engine.config import Settings
    from lockzero.engine.domain.events import EventMeta
    from lockzero.engine.security.backup_format import KeySource

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]
_MIN_PASSPHRASE = 12


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    passphrase = parser_class(add_help=False)
    passphrase.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="encrypt under this passphrase (first line of FILE) instead of a key derived from the master key",
    )
    backup = sub.add_parser(
        "backup",
        parents=[common, passphrase],
        help="write an encrypted backup of the store, from one consistent snapshot (the server may keep running)",
    )
    backup.add_argument("--out", required=True, type=Path, metavar="FILE", help="the backup file to create (new)")
    restore = sub.add_parser(
        "restore",
        parents=[common, passphrase],
        help="restore a backup into an empty store (same master key), then rebuild the read models",
    )
    restore.add_argument("file", type=Path, metavar="FILE")
    mk = sub.add_parser("master-key", help="the master key").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )
    mk.add_parser(
        "rotate",
        parents=[common],
        help="rewrap every tenant key from LOCKZERO_MASTER_KEY_PREVIOUS to LOCKZERO_MASTER_KEY (online, rerunnable)",
    )


def _operator() -> EventMeta:
    import getpass

    from lockzero.engine.domain.events import EventMeta

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return EventMeta(actor_id=f"cli:{user}", actor_type="operator")


def _settings() -> Settings:
    from lockzero.engine.config import load_settings

    # Never create an embedded key here: a backup or restore is only useful with the store's own key.
    settings = load_settings(create_embedded_key=False)
    settings.require_master_key()
    return settings


def _key_source(settings: Settings, passphrase_file: Path | None) -> KeySource:
    from lockzero.engine.domain.errors import InvalidInput
    from lockzero.engine.security.backup_format import KeySource

    if passphrase_file is None:
        return KeySource(master_key=settings.require_master_key())
    try:
        lines = passphrase_file.read_bytes().splitlines()
    except OSError as exc:
        raise InvalidInput(f"--passphrase-file: cannot read {passphrase_file} ({exc.strerror})") from None
    phrase = lines[0] if lines else b""
    if len(phrase) < _MIN_PASSPHRASE:
        raise InvalidInput(f"--passphrase-file: the passphrase (its first line) needs {_MIN_PASSPHRASE}+ characters")
    return KeySource(passphrase=phrase)


async def cmd_backup(args: argparse.Namespace) -> None:
    from lockzero.engine.security.backup import create_backup

    settings = _settings()
    keys = _key_source(settings, args.passphrase_file)
    summary = await create_backup(settings.database_url, settings.require_master_key(), keys, args.out)
    if args.json:
        emit_json(summary)
        return
    events = summary.rows.get("lz_events", 0)
    others = sum(summary.rows.values()) - events
    print(
        f"backed up {events} events and {others} side-table rows ({summary.source}) to {summary.path}"
        f" ({summary.bytes} bytes, encrypted under the {summary.key.replace('-', ' ')})"
    )


async def cmd_restore(args: argparse.Namespace) -> int:
    from lockzero.api.errors import EXIT_FAILURE, EXIT_OK
    from lockzero.engine.app import Engine
    from lockzero.engine.domain.errors import InvalidInput
    from lockzero.engine.security.backup import restore_backup

    settings = _settings()
    keys = _key_source(settings, args.passphrase_file)
    key = settings.require_master_key()
    try:
        fh = args.file.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file} ({exc.strerror})") from None
    with fh:
        engine = await Engine.open(settings.database_url, key, outbound=settings.outbound)
        try:
            summary = await restore_backup(engine, key, fh, keys)
        finally:
            await engine.close()
    if args.json:
        emit_json(summary)
    else:
        events = summary.rows.get("lz_events", 0)
        print(
            f"restored {events} events and {sum(summary.rows.values()) - events} side-table rows from a"
            f" {summary.source} backup made {summary.created_at}; rebuilt the read models ({summary.events_replayed}"
            f" events replayed); audit chain {'verified' if summary.audit_chain_ok else 'NOT verified'}"
        )
    if not summary.audit_chain_ok:
        # Restored as it was backed up; the chain says the source had been altered.
        print(
            f"lockzero: error: the restored audit chain does not verify: {summary.audit_chain_problem}", file=sys.stderr
        )
        return EXIT_FAILURE
    return EXIT_OK


async def cmd_master_key_rotate(args: argparse.Namespace) -> None:
    from lockzero.engine.app import Engine
    from lockzero.engine.audit import records as audit
    from lockzero.engine.domain.errors import Unavailable
    from lockzero.engine.security.master_key import previous_master_key, rotate_master_key
    from lockzero.eventstore import open_store

    settings = _settings()
    new, old = settings.require_master_key(), previous_master_key()
    store = await open_store(settings.database_url)
    try:
        # Not Engine.open: that checks one key opens every tenant, which is false half-way through a rotation.
        engine = Engine(store, new)
        if settings.embedded:
            await engine.migrate()
        elif not await engine.schema_ready():
            raise Unavailable("the database schema is not migrated; run `lockzero migrate` first")
        report = await rotate_master_key(store, old, new)
        for tenant in report.rewrapped:
            await audit.record(engine, tenant, _operator(), "master-key.rotate", "ok")
    finally:
        await store.close()
    if args.json:
        emit_json(report)
        return
    print(
        f"rewrapped {len(report.rewrapped)} tenant key(s) under the new master key; {len(report.already)} already"
        f" were; token-hash key {report.token_key}"
    )
    print(
        "every tenant key now opens under LOCKZERO_MASTER_KEY only: restart every server and worker with it and"
        " drop LOCKZERO_MASTER_KEY_PREVIOUS (backups made before now still need the previous key)"
    )


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("backup", None): cmd_backup,
    ("restore", None): cmd_restore,
    ("master-key", "rotate"): cmd_master_key_rotate,
}
