"""Real database accounts for the provider tests, and the independent login checks they are judged by.

PostgreSQL: the machine's server trusts every local login, so it could never show a refused
password. These tests start a throwaway cluster that checks SCRAM passwords over TCP
(``initdb --auth-host=scram-sha-256``), on a free port, and remove it afterwards.
MariaDB: the machine's server (root without a password on 127.0.0.1:3306) checks other users' passwords.

Logins here use the drivers directly, never the provider under test.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pymysql

from lockzero.providers.base import Credential
from tests.api.support import free_port

if TYPE_CHECKING:
    from lockzero.engine.app import Engine

MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306


def secret_value() -> str:
    return f"pw-{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


class PgCluster:
    """A PostgreSQL cluster of its own with password (SCRAM) authentication on 127.0.0.1."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="lz-pg-"))
        self.port = free_port()
        self.password = secret_value()
        self._as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password)
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        data = str(self.root / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-U", "postgres", f"--pwfile={pwfile}",
                  "--auth-host=scram-sha-256", "--auth-local=trust")  # fmt: skip
        pwfile.unlink()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Account:
    """One real database account (plus its alternate) that a test rotates; dropped afterwards."""

    kind: str  # "postgres" | "mysql"
    strategy: str
    name: str
    password: str
    admin_dsn: str
    port: int
    sessions: list[Any] = field(default_factory=list)

    @property
    def clone(self) -> str:
        return f"{self.name}_alt"

    @property
    def alternating(self) -> bool:
        return self.strategy == "alternating"

    @property
    def current(self) -> Credential:
        return Credential(self.password, self.name)

    def config(self, **extra: Any) -> dict[str, Any]:
        key = "role" if self.kind == "postgres" else "user"
        return {"dsn": self.admin_dsn, key: self.name, "strategy": self.strategy, **extra}

    @property
    def provider_name(self) -> str:
        return "postgres_role" if self.kind == "postgres" else "mysql_user"

    async def register(self, engine: Engine, tenant: str) -> str:
        """Register this account as secret prod/<kind>/<name> of ``tenant``, its password imported as v1."""
        from lockzero.engine.commands.secrets import register_secret
        from tests.engine.support import OPERATOR

        sid = f"prod/{self.kind}/{self.name}"
        await register_secret(
            engine, tenant, OPERATOR, secret_id=sid, provider=self.provider_name, environment="prod",
            config=self.config(), value=self.password.encode(),
        )  # fmt: skip
        return sid

    @asynccontextmanager
    async def provider(self, **extra: Any) -> AsyncIterator[Any]:
        """The provider for this account (``extra``: config keys to add), closed afterwards."""
        provider = self.build(**extra)
        try:
            yield provider
        finally:
            await provider.close()

    def build(self, **extra: Any) -> Any:
        if self.kind == "postgres":
            from lockzero.providers.postgres_role import PostgresRoleProvider

            return PostgresRoleProvider(self.config(**extra))
        from lockzero.providers.mysql_user import MysqlUserProvider

        return MysqlUserProvider(self.config(**extra))

    # --- independent checks ----------------------------------------------------------------------

    def connect(self, cred: Credential) -> Any:
        user = cred.username or self.name
        if self.kind == "postgres":
            return psycopg.connect(
                host="127.0.0.1", port=self.port, dbname="postgres", user=user, password=cred.value,
                connect_timeout=5, autocommit=True,
            )  # fmt: skip
        return pymysql.connect(host=MYSQL_HOST, port=self.port, user=user, password=cred.value, connect_timeout=5)

    def login_error(self, cred: Credential) -> str | None:
        """None when a new connection with ``cred`` logs in; else why the server refused it."""
        try:
            self.connect(cred).close()
            return None
        except psycopg.OperationalError as exc:
            text = str(exc)
            if "password authentication failed" in text or "not permitted to log in" in text:
                return text
            raise
        except pymysql.err.OperationalError as exc:
            if exc.args[0] in (1045, 4151):
                return str(exc)
            raise

    def works(self, cred: Credential) -> bool:
        return self.login_error(cred) is None

    def refused(self, cred: Credential) -> bool:
        return self.login_error(cred) is not None

    def hold_session(self, cred: Credential) -> Any:
        conn = self.connect(cred)
        self.sessions.append(conn)
        assert self.alive(conn)
        return conn

    def alive(self, conn: Any) -> bool:
        try:
            if self.kind == "postgres":
                conn.execute("SELECT 1")
            else:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            return True
        except (psycopg.Error, pymysql.MySQLError):
            return False

    def state(self) -> Any:
        """What the server holds for both accounts (PostgreSQL salts verifiers: compared by login instead)."""
        if self.kind == "postgres":
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT r.rolname, r.rolcanlogin, r.rolpassword IS NOT NULL,"
                    " (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid),"
                    " array(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid"
                    "       WHERE m.member = r.oid ORDER BY 1)"
                    " FROM pg_authid r WHERE r.rolname IN (%s, %s) ORDER BY 1",
                    (self.name, self.clone),
                ).fetchall()
            return rows
        out: list[Any] = []
        with self.mysql_admin() as cur:
            for user in (self.name, self.clone):
                if cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = '%%'", (user,)):
                    cur.execute("SHOW CREATE USER %s@'%%'", (user,))
                    out.append(cur.fetchall())
                    cur.execute("SHOW GRANTS FOR %s@'%%'", (user,))
                    out.append(sorted(cur.fetchall()))
        return out

    @contextmanager
    def mysql_admin(self) -> Iterator[Any]:
        conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    # --- lifecycle -------------------------------------------------------------------------------

    def create(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f"CREATE ROLE {self.name} LOGIN PASSWORD '{self.password}'")
                conn.execute(f"CREATE TABLE {self.name}_t (n int)")
                conn.execute(f"ALTER TABLE {self.name}_t OWNER TO {self.name}")
                conn.execute(f"GRANT CREATE ON SCHEMA public TO {self.name}")
            return
        with self.mysql_admin() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (self.name, self.password))
            cur.execute(f"GRANT SELECT, INSERT ON test.* TO '{self.name}'@'%'")

    def drop(self) -> None:
        for conn in self.sessions:
            with suppress(Exception):  # some were already cut by the test
                conn.close()
        if self.kind == "postgres":
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN (%s, %s)",
                    (self.name, self.clone),
                )
                conn.execute(f"DROP TABLE IF EXISTS {self.name}_t")
                conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {self.name}")
                for role in (self.clone, self.name):
                    conn.execute(f"DROP ROLE IF EXISTS {role}")
            return
        with self.mysql_admin() as cur:
            for user in (self.clone, self.name):
                cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))


def new_account(kind: str, strategy: str, cluster: PgCluster | None) -> Account:
    name = f"lzt_{uuid.uuid4().hex[:10]}"
    if kind == "postgres":
        assert cluster is not None
        account = Account(kind, strategy, name, secret_value(), cluster.admin_dsn, cluster.port)
    else:
        account = Account(kind, strategy, name, secret_value(), f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/test",
                          MYSQL_PORT)  # fmt: skip
    account.create()
    return account


@asynccontextmanager
async def built_account(kind: str, strategy: str, cluster: PgCluster | None) -> AsyncIterator[tuple[Account, Any]]:
    """A fresh account and the provider for it; the provider closed and the account dropped afterwards."""
    account = new_account(kind, strategy, cluster)
    try:
        async with account.provider() as provider:
            yield account, provider
    finally:
        account.drop()
