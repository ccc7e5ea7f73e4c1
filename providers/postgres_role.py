"""`postgres_role`: a PostgreSQL login role.

``alternating`` (zero downtime): two roles take turns, ``role`` and ``clone_role`` (default
``<role>_alt``). A rotation sets the new password on the role that is *not* in use, dependents move
to it (the returned credential names it), and retire disables the old one (NOLOGIN, no password).
A missing clone is created as a member of ``role`` that runs as ``role`` (``SET ROLE``), so it has
the same privileges and whatever it creates belongs to ``role``.

``single``: one role, ``ALTER ROLE … PASSWORD``. The old password stops working for new logins at
create, so dependents that open connections before they adopt the new value fail in that window;
sessions already open are not cut. ``discard`` is not told the old password: it can only make the
new one stop working, and the old one comes back through ``restore``.

Passwords are sent as SCRAM-SHA-256 verifiers computed by libpq, never as plain text (statement
logs). Sessions are terminated by ``revoke``, and by ``retire`` when ``terminate_sessions`` is set.
Error messages name the operation and the role, never the DSN or a password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from lockzero.providers.base import Auth, Credential, ProviderError, Signal, Usage, accepted, refused, unknown
from lockzero.providers.spec import ProviderSpec, server_of

#: SQLSTATEs of a login refused for the credential: invalid_password, invalid_authorization_specification
#: (unknown role, NOLOGIN, no matching pg_hba line). libpq hides the SQLSTATE of a failed connection,
#: so the login check speaks the protocol through asyncpg, which reports the server's ErrorResponse code.
REFUSED_SQLSTATES = frozenset({"28P01", "28000"})


class PostgresRoleProvider:
    name = "postgres_role"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.dsn = str(config["dsn"])
        self.role = str(config["role"])
        self.strategy = str(config.get("strategy", "alternating"))
        self.clone = str(config.get("clone_role") or f"{self.role}_alt")
        self.terminate_sessions = str(config.get("terminate_sessions", False)).lower() in ("true", "1", "yes", "on")
        self.overlapping = self.strategy == "alternating"
        self._admin: psycopg.AsyncConnection[Any] | None = None

    # --- plumbing --------------------------------------------------------------------------------

    @asynccontextmanager
    async def _sql(self, op: str, role: str | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The admin connection; any driver error becomes a ProviderError naming only ``op`` and ``role``."""
        try:
            if self._admin is None or self._admin.closed:
                self._admin = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=5)
            yield self._admin
        except psycopg.Error as exc:
            state = f" {exc.sqlstate}" if exc.sqlstate else ""
            what = f" for role {role!r}" if role else ""
            retryable = isinstance(exc, psycopg.OperationalError)
            raise ProviderError(
                f"postgres {op}{what} failed ({type(exc).__name__}{state})", retryable=retryable
            ) from None

    async def _set_password(self, role: str, value: str | None, *, login: bool, op: str) -> None:
        async with self._sql(op, role) as conn:
            if value is None:
                password: sql.Composable = sql.SQL("NULL")
            else:
                verifier = conn.pgconn.encrypt_password(value.encode(), role.encode(), b"scram-sha-256")
                password = sql.Literal(verifier.decode())
            await conn.execute(
                sql.SQL("ALTER ROLE {} WITH {} PASSWORD {}").format(
                    sql.Identifier(role), sql.SQL("LOGIN" if login else "NOLOGIN"), password
                )
            )

    async def _exists(self, role: str) -> bool:
        async with self._sql("look up role", role) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            return await cur.fetchone() is not None

    def _other(self, username: str | None) -> str:
        current = username or self.role
        if current not in (self.role, self.clone):
            raise ProviderError(
                f"postgres role {current!r} is neither {self.role!r} nor {self.clone!r}", retryable=False
            )
        return self.clone if current == self.role else self.role

    def _user_of(self, credential: Credential) -> str:
        return credential.username if self.overlapping and credential.username else self.role

    # --- the protocol ----------------------------------------------------------------------------

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        if not self.overlapping:
            await self._set_password(self.role, new.value, login=True, op="set password")
            return Credential(new.value, self.role, self.role)
        # ``new.username`` is the role in use (the saga passes the previous version's username).
        target = self._other(new.username or (previous.username if previous else None))
        if target == self.clone and not await self._exists(self.clone):
            async with self._sql("create clone role", self.clone) as conn, conn.transaction():
                clone, role = sql.Identifier(self.clone), sql.Identifier(self.role)
                await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE {}").format(clone, role))
                await conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(clone, sql.Literal(self.role)))
        await self._set_password(target, new.value, login=True, op="set password")
        return Credential(new.value, target, target)

    async def authenticate(self, credential: Credential) -> Auth:
        user = self._user_of(credential)
        params = conninfo_to_dict(self.dsn)
        sslmode = str(params.get("sslmode") or "prefer")
        try:
            conn = await asyncpg.connect(
                host=str(params.get("host") or "127.0.0.1"),
                port=int(params.get("port") or 5432),
                database=str(params.get("dbname") or "postgres"),
                user=user,
                password=credential.value,
                ssl=sslmode if sslmode != "disable" else False,
                timeout=5,
            )
        except asyncpg.PostgresError as exc:
            state = str(exc.sqlstate)
            if state in REFUSED_SQLSTATES:
                return refused(f"postgres login as {user!r}: SQLSTATE {state}")
            if state.startswith("42") or state == "3D000":
                # Authentication happens before the database and CONNECT checks: it succeeded.
                return accepted(f"postgres login as {user!r}: authenticated, then SQLSTATE {state}")
            return unknown(f"postgres login as {user!r}: SQLSTATE {state} (no answer about the password)")
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            return unknown(f"postgres login as {user!r}: server unreachable ({type(exc).__name__})")
        await conn.close()
        return accepted(f"postgres login as {user!r}: OK")

    async def retire(self, credential: Credential) -> None:
        if self.overlapping:
            role = self._user_of(credential)
            await self._set_password(role, None, login=False, op="retire")
            if self.terminate_sessions:
                await self._terminate([role])
        elif not (await self.authenticate(credential)).refused:
            # single: create already replaced this password; if it still works, nothing else does either.
            await self._set_password(self.role, None, login=True, op="retire")

    async def restore(self, credential: Credential) -> None:
        await self._set_password(self._user_of(credential), credential.value, login=True, op="restore")

    async def revoke(self, credentials: list[Credential]) -> None:
        roles = {self._user_of(c) for c in credentials} | ({self.role, self.clone} if self.overlapping else {self.role})
        present = [r for r in sorted(roles) if await self._exists(r)]
        for role in present:
            await self._set_password(role, None, login=False, op="revoke")
        await self._terminate(present)

    async def discard(self, credential: Credential) -> None:
        # Without a username (create crashed before it was recorded) the value tells which role took it.
        candidates = [credential.username] if credential.username else [self.role, self.clone]
        for role in candidates if self.overlapping else [self.role]:
            if await self._exists(role) and not (await self.authenticate(Credential(credential.value, role))).refused:
                await self._set_password(role, None, login=not self.overlapping, op="discard")

    async def _terminate(self, roles: list[str]) -> None:
        async with self._sql("terminate sessions") as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = ANY(%s) AND pid <> pg_backend_pid()",
                (roles,),
            )

    async def observed_usage(self) -> list[Usage]:
        roles = [self.role, self.clone] if self.overlapping else [self.role]
        async with self._sql("read pg_stat_activity") as conn:
            cur = await conn.execute(
                "SELECT usename, count(*), max(coalesce(state_change, backend_start)),"
                " string_agg(DISTINCT coalesce(host(client_addr), 'local'), ', ')"
                " FROM pg_stat_activity WHERE usename = ANY(%s) AND pid <> pg_backend_pid()"
                " GROUP BY usename ORDER BY usename",
                (roles,),
            )
            rows = await cur.fetchall()
        return [
            Usage("pg_stat_activity", f"{count} session(s) as role {role} from {clients}", at)
            for role, count, at, clients in rows
        ]

    async def usage_signals(self, retired: Sequence[str], since: datetime | None) -> list[Signal]:
        """Sessions of a retired role (alternating: the role not in use); a refused login leaves no trace in
        the catalog, so ``since`` is not used here."""
        roles = [r for r in retired if r in (self.role, self.clone)]
        if not roles:
            return []
        async with self._sql("read pg_stat_activity") as conn:
            cur = await conn.execute(
                "SELECT usename, coalesce(host(client_addr), 'local'), count(*), min(backend_start)"
                " FROM pg_stat_activity WHERE usename = ANY(%s) AND pid <> pg_backend_pid()"
                " GROUP BY 1, 2 ORDER BY 1, 2",
                (roles,),
            )
            rows = await cur.fetchall()
        return [
            Signal(
                "session",
                role,
                f"{n} session(s) still open as retired role {role} from {host}",
                f"session:{role}:{host}",
                at,
            )
            for role, host, n, at in rows
        ]

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


SPEC = ProviderSpec(
    name="postgres_role",
    summary="A PostgreSQL login role. alternating (default): two roles take turns, zero downtime; single: ALTER ROLE.",
    required={
        "dsn": "admin connection, e.g. postgresql://admin:PASSWORD@db:5432/app",
        "role": "the login role whose password rotates",
    },
    optional={
        "strategy": "alternating (two roles, zero downtime) or single (one role, ALTER ROLE … PASSWORD)",
        "clone_role": "the second role of alternating; default <role>_alt (created if missing)",
        "terminate_sessions": "true: retire also ends the old role's sessions; default false",
    },
    permissions="the admin role needs CREATEROLE (PostgreSQL 16+: with ADMIN OPTION on the role) to ALTER ROLE …"
    " PASSWORD / LOGIN / NOLOGIN and to create the clone role; reading pg_stat_activity for observed usage and"
    " pg_terminate_backend for revoke need pg_read_all_stats and pg_signal_backend (or superuser)",
    factory=lambda config, _: PostgresRoleProvider(config),
    username_key="role",
    strategies=frozenset({"alternating", "single"}),
    # Roles belong to the cluster, not to a database.
    account=lambda cfg: f"postgres {server_of(str(cfg['dsn']))} role {cfg['role']}",
    usage_signals=True,
)
