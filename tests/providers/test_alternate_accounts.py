"""What the alternate account can do, and what retire does to sessions that are already open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockzero.providers.base import Credential
from tests.providers.support import Account, PgCluster, new_account, secret_value


@pytest.fixture
def pg_alt(pg_cluster: PgCluster) -> Iterator[Account]:
    acc = new_account("postgres", "alternating", pg_cluster)
    try:
        yield acc
    finally:
        acc.drop()


@pytest.fixture
def mysql_alt() -> Iterator[Account]:
    acc = new_account("mysql", "alternating", None)
    try:
        yield acc
    finally:
        acc.drop()


async def test_postgres_clone_acts_as_the_role(pg_alt: Account) -> None:
    async with pg_alt.provider() as provider:
        new = await provider.create(Credential(secret_value(), pg_alt.name), pg_alt.current)
    with pg_alt.connect(new) as conn:
        session_user, current_user = conn.execute("SELECT session_user, current_user").fetchone()
        conn.execute(f"INSERT INTO {pg_alt.name}_t VALUES (1)")  # the role's table, no grant needed
        conn.execute(f"CREATE TABLE {pg_alt.name}_made_by_clone (n int)")
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = %s", (f"{pg_alt.name}_made_by_clone",)
        ).fetchone()
        conn.execute(f"DROP TABLE {pg_alt.name}_made_by_clone")
    assert (session_user, current_user) == (pg_alt.clone, pg_alt.name)
    assert owner == (pg_alt.name,), "objects the clone creates belong to the role"


@pytest.mark.parametrize("terminate", [False, True])
async def test_postgres_retire_cuts_old_sessions_only_when_asked(pg_alt: Account, terminate: bool) -> None:
    async with pg_alt.provider(terminate_sessions=terminate) as provider:
        old_session = pg_alt.hold_session(pg_alt.current)
        new = await provider.create(Credential(secret_value(), pg_alt.name), pg_alt.current)
        new_session = pg_alt.hold_session(new)
        await provider.retire(pg_alt.current)
    assert pg_alt.refused(pg_alt.current)
    assert pg_alt.alive(old_session) is not terminate
    assert pg_alt.alive(new_session)


async def test_mysql_clone_gets_the_users_grants(mysql_alt: Account) -> None:
    async with mysql_alt.provider() as provider:
        new = await provider.create(Credential(secret_value(), mysql_alt.name), mysql_alt.current)
    assert new.username == mysql_alt.clone
    with mysql_alt.mysql_admin() as cur:
        cur.execute("SHOW GRANTS FOR %s@'%%'", (mysql_alt.clone,))
        grants = [g for (g,) in cur.fetchall()]
    assert any("GRANT SELECT, INSERT ON `test`.*" in g for g in grants), grants
    conn = mysql_alt.connect(new)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == (f"{mysql_alt.clone}@%",)
            cur.execute("USE test")  # the copied database grant lets it in
    finally:
        conn.close()


async def test_mysql_retire_locks_the_old_account_and_keeps_sessions(mysql_alt: Account) -> None:
    async with mysql_alt.provider() as provider:
        old_session = mysql_alt.hold_session(mysql_alt.current)
        await provider.create(Credential(secret_value(), mysql_alt.name), mysql_alt.current)
        await provider.retire(mysql_alt.current)
    assert mysql_alt.refused(mysql_alt.current)
    with mysql_alt.mysql_admin() as cur:
        cur.execute("SHOW CREATE USER %s@'%%'", (mysql_alt.name,))
        assert "ACCOUNT LOCK" in cur.fetchone()[0]
    assert mysql_alt.alive(old_session), "retire does not cut sessions (revoke does)"
