"""`mysql_user`: a MariaDB (or MySQL) user account ``'user'@'host'``.

``alternating`` (zero downtime): two accounts take turns, ``user`` and ``clone_user`` (default
``<user>_alt``) at the same ``host``. A rotation sets the new password on the account not in use
(a missing clone is created; the primary's grants are copied onto it on every switch to it),
dependents move to it, and retire locks the old one (ACCOUNT LOCK) and gives it a random password.

``single``: one account, ``ALTER USER … IDENTIFIED``. The old password stops working for new
logins at create: dependents that connect before they adopt the new value fail in that window
(sessions already open go on). ``discard`` is not told the old password; ``restore`` brings it back.

On MariaDB the password travels as its mysql_native_password hash, not in clear. Sessions are cut
(KILL CONNECTION) only by ``revoke``. PyMySQL is synchronous: each call runs in a worker thread.
Error messages name the operation, the account and the server's error number, never the DSN.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pymysql

from lockzero.providers.base import Auth, Credential, ProviderError, Signal, Usage, accepted, refused, unknown
from lockzero.providers.spec import ProviderSpec, server_of

T = TypeVar("T")
#: Login refused because of the account: access denied, account locked (MariaDB, MySQL).
REFUSED = {1045, 4151, 3118}
#: Client-side errors (cannot connect, connection lost): worth trying again.
TRANSIENT = {2003, 2006, 2013, 1040, 1205, 1213}


@functools.cache
def _preferred_tls() -> ssl.SSLContext:
    """What PyMySQL builds for TLS when the DSN names none (PREFERRED: TLS if the server offers it, unverified), made
    once: PyMySQL makes it on every connect, and loading the system's CA store for it cost ~26 ms a connection,
    which a rotation makes five to seven of."""
    return pymysql.connections.Connection._create_ssl_ctx(None, {})  # type: ignore[no-any-return]


class _Connection(pymysql.connections.Connection):  # type: ignore[misc]
    def _create_ssl_ctx(self, sslp: Any) -> Any:
        return _preferred_tls() if sslp == {} else super()._create_ssl_ctx(sslp)


def native_hash(password: str) -> str:
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()  # noqa: S324 (the format)


class MysqlUserProvider:
    name = "mysql_user"

    def __init__(self, config: Mapping[str, Any]) -> None:
        url = urlsplit(str(config["dsn"]))
        self._params: dict[str, Any] = {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 3306,
            "user": unquote(url.username or "root"),
            "password": unquote(url.password or ""),
            "connect_timeout": 5,
            "autocommit": True,
        }
        self.user = str(config["user"])
        self.host = str(config.get("host", "%"))
        self.strategy = str(config.get("strategy", "alternating"))
        self.clone = str(config.get("clone_user") or f"{self.user}_alt")
        self.overlapping = self.strategy == "alternating"
        self._admin: pymysql.connections.Connection[Any] | None = None
        self._lock = asyncio.Lock()

    # --- plumbing --------------------------------------------------------------------------------

    async def _run(self, op: str, who: str | None, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` on the admin connection in a thread; driver errors become ProviderErrors."""

        def call() -> T:
            if self._admin is None or not self._admin.open:
                self._admin = _Connection(**self._params)
            with self._admin.cursor() as cur:
                return work(cur)

        async with self._lock:
            try:
                return await asyncio.to_thread(call)
            except pymysql.MySQLError as exc:
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
                what = f" for user {who!r}" if who else ""
                raise ProviderError(
                    f"mysql {op}{what} failed ({type(exc).__name__} {code})", retryable=code in TRANSIENT
                ) from None

    def _identified(self, cur: Any, value: str) -> str:
        mariadb = "MariaDB" in cur.connection.get_server_info()
        clause = "IDENTIFIED BY PASSWORD %s" if mariadb else "IDENTIFIED BY %s"
        return str(cur.mogrify(clause, (native_hash(value) if mariadb else value,)))

    async def _alter(self, user: str, value: str, *, lock: bool, op: str) -> None:
        def work(cur: Any) -> None:
            account = cur.mogrify("%s@%s", (user, self.host))
            cur.execute(f"ALTER USER {account} {self._identified(cur, value)} ACCOUNT {'LOCK' if lock else 'UNLOCK'}")

        await self._run(op, user, work)

    async def _exists(self, user: str) -> bool:
        def work(cur: Any) -> bool:
            return bool(cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (user, self.host)))

        return await self._run("look up user", user, work)

    def _other(self, username: str | None) -> str:
        current = username or self.user
        if current not in (self.user, self.clone):
            raise ProviderError(f"mysql user {current!r} is neither {self.user!r} nor {self.clone!r}", retryable=False)
        return self.clone if current == self.user else self.user

    def _user_of(self, credential: Credential) -> str:
        return credential.username if self.overlapping and credential.username else self.user

    def _copy_grants(self, cur: Any) -> None:
        """Create the clone if missing (locked) and give it the primary's grants (GRANT is idempotent)."""
        primary, clone = (cur.mogrify("%s@%s", (u, self.host)) for u in (self.user, self.clone))
        cur.execute(f"CREATE USER IF NOT EXISTS {clone} ACCOUNT LOCK")
        cur.execute(f"SHOW GRANTS FOR {primary}")
        quoted = "`{}`@`{}`".format(*(s.replace("`", "``") for s in (self.user, self.host)))
        for (grant,) in cur.fetchall():
            grant = re.sub(r" IDENTIFIED (BY PASSWORD|VIA) .*?(?= WITH |$)", "", grant.replace(quoted, clone))
            cur.execute(grant)  # no arguments: PyMySQL leaves the text as it is

    # --- the protocol ----------------------------------------------------------------------------

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        target = self.user
        if self.overlapping:
            # ``new.username`` is the account in use (the saga passes the previous version's username).
            target = self._other(new.username or (previous.username if previous else None))
            if target == self.clone:
                await self._run("copy grants to clone", self.clone, self._copy_grants)
        await self._alter(target, new.value, lock=False, op="set password")
        return Credential(new.value, target, target)

    async def authenticate(self, credential: Credential) -> Auth:
        user = self._user_of(credential)
        params = {**self._params, "user": user, "password": credential.value, "read_timeout": 5, "write_timeout": 5}

        def attempt() -> Auth:
            try:
                _Connection(**params).close()
            except pymysql.MySQLError as exc:
                code = exc.args[0] if exc.args else None
                if code in REFUSED:
                    return refused(f"mysql login as {user!r}: error {code}")
                return unknown(f"mysql login as {user!r}: error {code} (no answer about the password)")
            return accepted(f"mysql login as {user!r}: OK")

        return await asyncio.to_thread(attempt)

    async def retire(self, credential: Credential) -> None:
        if self.overlapping:
            await self._alter(self._user_of(credential), secrets.token_urlsafe(32), lock=True, op="retire")
        elif not (await self.authenticate(credential)).refused:
            # single: create already replaced this password; if it still works, nothing else does either.
            await self._alter(self.user, secrets.token_urlsafe(32), lock=False, op="retire")

    async def restore(self, credential: Credential) -> None:
        await self._alter(self._user_of(credential), credential.value, lock=False, op="restore")

    async def revoke(self, credentials: list[Credential]) -> None:
        users = {self._user_of(c) for c in credentials} | ({self.user, self.clone} if self.overlapping else {self.user})
        present = [u for u in sorted(users) if await self._exists(u)]
        for user in present:
            await self._alter(user, secrets.token_urlsafe(32), lock=True, op="revoke")

        def kill(cur: Any) -> None:
            if not present:
                return
            marks = ", ".join(["%s"] * len(present))
            cur.execute(
                f"SELECT ID FROM information_schema.processlist WHERE USER IN ({marks}) AND ID <> CONNECTION_ID()",
                present,
            )
            for (pid,) in cur.fetchall():
                try:
                    cur.execute("KILL CONNECTION %s", (pid,))
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != 1094:  # unknown thread id: it ended meanwhile
                        raise

        await self._run("kill sessions", ", ".join(present), kill)

    async def discard(self, credential: Credential) -> None:
        # Without a username (create crashed before it was recorded) the value tells which account took it.
        candidates = [credential.username] if credential.username else [self.user, self.clone]
        for user in candidates if self.overlapping else [self.user]:
            if await self._exists(user) and not (await self.authenticate(Credential(credential.value, user))).refused:
                await self._alter(user, secrets.token_urlsafe(32), lock=self.overlapping, op="discard")

    async def observed_usage(self) -> list[Usage]:
        users = [self.user, self.clone] if self.overlapping else [self.user]

        def work(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(
                "SELECT USER, COUNT(*), GROUP_CONCAT(DISTINCT SUBSTRING_INDEX(HOST, ':', 1) SEPARATOR ', ')"
                " FROM information_schema.processlist WHERE USER IN (%s, %s) AND ID <> CONNECTION_ID()"
                " GROUP BY USER ORDER BY USER",
                (users[0], users[-1]),
            )
            return list(cur.fetchall())

        rows = await self._run("read processlist", None, work)
        return [Usage("information_schema.processlist", f"{n} session(s) as user {u} from {h}") for u, n, h in rows]

    async def usage_signals(self, retired: Sequence[str], since: datetime | None) -> list[Signal]:
        """PROCESSLIST sessions of a retired user (alternating: the account not in use)."""
        users = [u for u in retired if u in (self.user, self.clone)]
        if not users:
            return []

        def work(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(
                "SELECT USER, SUBSTRING_INDEX(HOST, ':', 1), COUNT(*) FROM information_schema.processlist"
                " WHERE USER IN (%s, %s) AND ID <> CONNECTION_ID() GROUP BY 1, 2 ORDER BY 1, 2",
                (users[0], users[-1]),
            )
            return list(cur.fetchall())

        rows = await self._run("read processlist", None, work)
        return [
            Signal("session", u, f"{n} session(s) still open as retired user {u} from {h}", f"session:{u}:{h}")
            for u, h, n in rows
        ]

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None and admin.open:
            await asyncio.to_thread(admin.close)


SPEC = ProviderSpec(
    name="mysql_user",
    summary="A MariaDB / MySQL account 'user'@'host'. alternating (default): two accounts take turns; single:"
    " ALTER USER.",
    required={
        "dsn": "admin connection, e.g. mysql://root:PASSWORD@127.0.0.1:3306/test",
        "user": "the account whose password rotates",
    },
    optional={
        "host": "the account's host part; default %",
        "strategy": "alternating (two accounts, zero downtime) or single (one account, ALTER USER)",
        "clone_user": "the second account of alternating; default <user>_alt (created if missing)",
    },
    permissions="the admin account needs CREATE USER (ALTER USER, ACCOUNT LOCK), the grants of the rotated account"
    " WITH GRANT OPTION (they are copied onto the clone) and SELECT on mysql.user; PROCESS to see sessions for"
    " observed usage and CONNECTION ADMIN (or SUPER) to KILL them on revoke",
    factory=lambda config, _: MysqlUserProvider(config),
    username_key="user",
    strategies=frozenset({"alternating", "single"}),
    account=lambda cfg: f"mysql {server_of(str(cfg['dsn']))} user {cfg['user']}@{cfg.get('host', '%')}",
    usage_signals=True,
)
