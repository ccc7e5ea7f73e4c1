"""`lockzero backup` / `lockzero restore` as the real console script, on both backends (issue 14): the restored
store answers the CLI like the source, every read model and side table equals the source's, `lockzero audit
verify` is clean, a canary value is never in the file or the output, and a non-empty target, an altered file or
a wrong passphrase stop with one line and exit 1 (usage mistakes exit 2), nothing written."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lockzero.engine.app import Engine
from lockzero.engine.readmodels.schema import PROJECTION_TABLES
from lockzero.engine.security.backup import copied_tables, list_tables
from tests.cli.test_cli import Cli, assert_one_error_line, is_pg, new_key_b64
from tests.conftest import fresh_pg_database
from tests.engine.support import snapshot

CANARY = "canary-" + secrets.token_hex(12)
CONFIG = json.dumps({"url": "redis://default:pw@127.0.0.1:6379/0", "username": "app"})


async def _tables(cli: Cli) -> dict[str, list[tuple[object, ...]]]:
    engine: Engine = await cli.engine()
    try:
        async with engine.store.reader() as tx:
            names = await list_tables(tx, engine.store.dialect)
        return await snapshot(engine, tuple(copied_tables(names)) + PROJECTION_TABLES)
    finally:
        await engine.close()


def _fill(cli: Cli) -> None:
    if is_pg(cli.url):
        cli.ok("migrate")
    cli.ok("tenant", "create", "acme")
    cli.ok(
        "secret", "add", "prod/db", "--tenant", "acme", "--provider", "redis_acl", "--environment", "prod",
        "--config", CONFIG, "--value-stdin", "--no-validate", "--label", "team=core", stdin=CANARY.encode(),
    )  # fmt: skip
    cli.ok("secret", "policy", "prod/db", "--tenant", "acme", "--max-age", "30d")
    cli.ok("key", "create", "--tenant", "acme", "--name", "agent")
    cli.ok("dependent", "add", "prod/db", "--tenant", "acme", "--service", "api", "--environment", "prod",
           "--delivery", "pull")  # fmt: skip


def _no_canary(*clis: Cli) -> None:
    for cli in clis:
        for r in cli.history:
            assert CANARY not in r.out and CANARY not in r.err, r.args


@contextmanager
def empty_target(store_url: str, tmp_path: Path, name: str) -> Iterator[str]:
    if is_pg(store_url):
        with fresh_pg_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / name}"


async def test_backup_then_restore_into_an_empty_store(store_url: str, tmp_path: Path) -> None:
    source = Cli(tmp_path, store_url, new_key_b64())
    _fill(source)
    out = tmp_path / "acme.lzbackup"
    done = source.json("backup", "--out", str(out))
    assert done["rows"]["lz_events"] > 5 and done["key"] == "master-key"
    assert CANARY.encode() not in out.read_bytes()
    # --out never overwrites: a usage mistake, exit 2.
    assert_one_error_line(source("backup", "--out", str(out)), 2, "already exists")

    with empty_target(store_url, tmp_path, "restored.db") as url:
        target = Cli(tmp_path, url, source.master_key)
        restored = target.json("restore", str(out))
        assert restored["audit_chain_ok"] and restored["events_replayed"] == done["rows"]["lz_events"]
        assert await _tables(target) == await _tables(source)
        assert "verified" in target.ok("audit", "verify").out
        assert target.json("secret", "list", "--tenant", "acme") == source.json("secret", "list", "--tenant", "acme")

        # A second restore into the now non-empty store: refused, exit 1, and the store is as it was.
        before = await _tables(target)
        assert_one_error_line(target("restore", str(out)), 1, "not empty")
        assert await _tables(target) == before
        _no_canary(source, target)


async def test_altered_or_wrongly_keyed_backups_are_refused(store_url: str, tmp_path: Path) -> None:
    source = Cli(tmp_path, store_url, new_key_b64())
    _fill(source)
    phrase = tmp_path / "phrase.txt"
    phrase.write_text("a passphrase long enough\n")
    out = tmp_path / "p.lzbackup"
    assert source.json("backup", "--out", str(out), "--passphrase-file", str(phrase))["key"] == "passphrase"
    short = tmp_path / "short.txt"
    short.write_text("short\n")
    assert_one_error_line(source("backup", "--out", str(tmp_path / "x"), "--passphrase-file", str(short)), 2, "12+")

    with empty_target(store_url, tmp_path, "target.db") as url:
        target = Cli(tmp_path, url, source.master_key)
        assert_one_error_line(target("restore", str(out)), 1, "passphrase")
        wrong = tmp_path / "wrong.txt"
        wrong.write_text("a passphrase long enough!\n")
        assert_one_error_line(target("restore", str(out), "--passphrase-file", str(wrong)), 1, "does not authenticate")
        altered = tmp_path / "altered.lzbackup"
        data = bytearray(out.read_bytes())
        data[len(data) // 2] ^= 0x40
        altered.write_bytes(bytes(data))
        assert_one_error_line(
            target("restore", str(altered), "--passphrase-file", str(phrase)), 1, "does not authenticate"
        )
        assert_one_error_line(target("restore", str(tmp_path / "missing")), 2, "cannot read")
        # Nothing of the refused restores stayed behind: the untouched file still restores.
        restored = target.json("restore", str(out), "--passphrase-file", str(phrase))
        assert restored["audit_chain_ok"]
        assert await _tables(target) == await _tables(source)
        _no_canary(source, target)
