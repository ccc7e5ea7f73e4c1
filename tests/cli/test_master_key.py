"""A master key that does not open the store's tenant keys stops every command and `lockzero serve` with one
line naming LOCKZERO_MASTER_KEY / LOCKZERO_MASTER_KEY_FILE (issue 11, item 2), on both backends; a lost
embedded key file is never silently replaced, whatever the database file is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import tenants
from lockzero.engine.config import ConfigError
from lockzero.engine.security.crypto import MasterKey
from tests.api.support import free_port
from tests.cli.test_cli import Cli, Result, assert_one_error_line, base_env, is_pg, new_key_b64, run
from tests.engine.support import OPERATOR


def _serve(env: dict[str, str], cwd: Path) -> Result:
    """`lockzero serve` must exit by itself (refused), never start listening; run() times out otherwise."""
    return run(["serve"], {**env, "LOCKZERO_PORT": str(free_port())}, cwd)


def _names_the_key_variables(line: str) -> None:
    assert "LOCKZERO_MASTER_KEY" in line and "LOCKZERO_MASTER_KEY_FILE" in line, line


def test_a_swapped_master_key_is_refused_by_commands_the_worker_and_serve(store_url: str, tmp_path: Path) -> None:
    owner = Cli(tmp_path, store_url, new_key_b64())
    if is_pg(store_url):
        owner.ok("migrate")
    owner.ok("tenant", "create", "acme")

    intruder = Cli(tmp_path, store_url, new_key_b64())
    for args in (
        ("tenant", "create", "other"),  # a second master key must never wrap a new tenant's key
        ("key", "create", "--tenant", "acme"),
    ):
        _names_the_key_variables(assert_one_error_line(intruder(*args), 1, "does not open"))
    worker = run(["worker"], {**intruder.env, "LOCKZERO_REDIS_URL": "redis://127.0.0.1:6379/15"}, tmp_path)
    _names_the_key_variables(assert_one_error_line(worker, 1, "does not open"))
    served = _serve(intruder.env, tmp_path)
    _names_the_key_variables(assert_one_error_line(served, 1, "does not open"))
    assert "listening" not in served.out

    # Nothing was written under the wrong key, and the right key still works.
    assert [t["tenant"] for t in owner.json("tenant", "list")["tenants"]] == ["acme"]


def test_a_lost_embedded_key_file_is_not_replaced_whatever_the_database_is_called(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{state / 'store.db'}")
    created = run(["tenant", "create", "acme"], env, tmp_path)
    assert created.rc == 0 and "created a new master key" in created.err
    (state / "master.key").unlink()

    for r in (run(["tenant", "list"], env, tmp_path), _serve(env, tmp_path)):
        line = assert_one_error_line(r, 1, "master.key")
        _names_the_key_variables(line)
        assert not (state / "master.key").exists()
    assert (state / "store.db").stat().st_size > 0


def test_a_fresh_embedded_database_of_any_name_still_gets_a_key(tmp_path: Path) -> None:
    """The refusal is about tenant keys, not about a file existing: a migrated but empty store may get its key."""
    state = tmp_path / "state"
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{state / 'store.db'}")
    assert run(["tenant", "list"], env, tmp_path).rc == 0
    (state / "master.key").unlink()
    r = run(["tenant", "create", "acme"], env, tmp_path)
    assert r.rc == 0 and (state / "master.key").exists()


async def test_engine_open_checks_the_key(store_url: str) -> None:
    right = MasterKey.generate()
    engine = await Engine.open(store_url, right)  # not migrated yet: nothing to check
    try:
        await engine.migrate()
        await tenants.create_tenant(engine, "acme", OPERATOR)
    finally:
        await engine.close()
    with pytest.raises(ConfigError, match="LOCKZERO_MASTER_KEY") as err:
        await Engine.open(store_url, MasterKey.generate())
    assert "\n" not in str(err.value)
    reopened = await Engine.open(store_url, right)
    try:
        assert (await reopened.tenant_keys("acme")).tenant == "acme"
    finally:
        await reopened.close()
