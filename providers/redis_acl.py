"""`redis_acl`: a Redis (>= 6) ACL user. Redis users may hold several passwords, so the new one is
added beside the old (`>new`), dependents move, and the old one is removed at retire (`<old`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from lockzero.providers.base import Auth, Credential, ProviderError, Signal, Usage, accepted, refused, unknown
from lockzero.providers.spec import ProviderSpec, server_of


class RedisAclProvider:
    name = "redis_acl"
    overlapping = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.url = str(config["url"])
        self.username = str(config["username"])
        self.kill_clients = bool(config.get("kill_clients", False))
        #: ACL rules to create a missing user with (e.g. "~cache:* +get +set"); without them a missing user
        #: is an error: registration and rotation only ever touch passwords, never permissions.
        self.acl_rules = str(config.get("acl_rules") or "").split()
        self._pool: aioredis.ConnectionPool | None = None
        self._admin: aioredis.Redis | None = None

    def _admin_pool(self) -> aioredis.ConnectionPool:
        if self._pool is None:
            self._pool = aioredis.ConnectionPool.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        return self._pool

    def _connection(self) -> aioredis.Redis:
        # Made only for an admin command: a client costs ~160 µs to build (its reply callbacks), and a live
        # check (verify_remediation, the saga's validate and verify) sends none, only AUTH on its own connection.
        if self._admin is None:
            self._admin = aioredis.Redis(connection_pool=self._admin_pool())
        return self._admin

    async def _acl(self, *rules: str, op: str) -> None:
        try:
            await self._connection().execute_command("ACL", "SETUSER", self.username, *rules)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            # Rules carry passwords: report the operation and the error class only.
            raise ProviderError(f"redis ACL {op} for user {self.username!r} failed ({type(exc).__name__})") from None

    async def _user_exists(self) -> bool:
        try:
            found = await self._connection().execute_command("ACL", "GETUSER", self.username)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            raise ProviderError(f"redis ACL GETUSER {self.username!r} failed ({type(exc).__name__})") from None
        return found is not None

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        if previous is None and not await self._user_exists():
            if not self.acl_rules:
                raise ProviderError(
                    f"redis user {self.username!r} does not exist; create it with the permissions it needs, or name"
                    " them in config 'acl_rules' (e.g. \"~app:* +@read +@write\") for Lockzero to create it",
                    retryable=False,
                )
            await self._acl("reset", "on", *self.acl_rules, f">{new.value}", op="create user")
        else:
            await self._acl(f">{new.value}", op="add password")
        return Credential(new.value, self.username, None)

    async def authenticate(self, credential: Credential) -> Auth:
        """``AUTH user pass`` on a connection of its own: AUTH needs no command permission, so a user
        allowed only ``+get`` is judged on its password alone. The answer is read by its protocol code
        (WRONGPASS), never by its text."""
        pool = self._admin_pool()
        kwargs = dict(pool.connection_kwargs)
        for handshake in ("username", "password", "credential_provider", "client_name", "db"):
            kwargs.pop(handshake, None)
        kwargs.update(lib_name=None, lib_version=None, socket_timeout=5, socket_connect_timeout=5)
        conn = pool.connection_class(**kwargs)
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("AUTH", self.username, credential.value)
            await conn.read_response()
            return accepted(f"redis AUTH as {self.username!r}: OK")
        except AuthenticationError:
            # redis-py maps the WRONGPASS reply code to this class (and a failed handshake AUTH, which
            # this connection never sends: it carries no credentials of its own).
            return refused(f"redis AUTH as {self.username!r}: WRONGPASS")
        except NoPermissionError:
            return unknown(f"redis AUTH as {self.username!r}: NOPERM (no answer about the password)")
        except RedisTimeout:
            return unknown(f"redis AUTH as {self.username!r}: timed out")
        except RedisError as exc:
            return unknown(f"redis AUTH as {self.username!r}: {type(exc).__name__} (no answer about the password)")
        finally:
            await conn.disconnect()

    async def retire(self, credential: Credential) -> None:
        await self._remove(credential, op="remove password")
        if self.kill_clients:
            await self._kill_clients()

    async def _remove(self, credential: Credential, op: str) -> None:
        try:
            await self._acl(f"<{credential.value}", op=op)
        except ProviderError:
            # `<pw` of a password the user no longer has is an error in Redis; the outcome we want holds.
            if not (await self.authenticate(credential)).refused:
                raise

    async def restore(self, credential: Credential) -> None:
        await self._acl(f">{credential.value}", op="restore password")

    async def revoke(self, credentials: list[Credential]) -> None:
        # resetpass drops every password and nopass: nothing authenticates as this user any more.
        await self._acl("resetpass", op="revoke")
        await self._kill_clients()

    async def discard(self, credential: Credential) -> None:
        await self._remove(credential, op="discard password")

    async def _kill_clients(self) -> None:
        try:
            await self._connection().execute_command("CLIENT", "KILL", "USER", self.username)  # type: ignore[no-untyped-call]
        except ResponseError:
            pass  # no connected clients
        except RedisError as exc:
            raise ProviderError(f"redis CLIENT KILL USER {self.username!r} failed ({type(exc).__name__})") from None

    async def observed_usage(self) -> list[Usage]:
        try:
            listing = await self._connection().execute_command("CLIENT", "LIST")  # type: ignore[no-untyped-call]
        except RedisError as exc:
            raise ProviderError(f"redis CLIENT LIST failed ({type(exc).__name__})") from None
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        mine = [line for line in text.splitlines() if f" user={self.username} " in f" {line} "]
        addrs = sorted({field.split("=", 1)[1] for line in mine for field in line.split() if field.startswith("addr=")})
        if not mine:
            return []
        return [Usage("redis CLIENT LIST", f"{len(mine)} connection(s) as {self.username}: {', '.join(addrs[:10])}")]

    async def usage_signals(self, retired: Sequence[str], since: datetime | None) -> list[Signal]:
        """Connections still authenticated as a retired user (CLIENT LIST), and, after a rotation, ACL LOG
        entries of refused AUTH for the managed user (a client still presenting a removed password)."""
        try:
            listing = await self._connection().execute_command("CLIENT", "LIST")  # type: ignore[no-untyped-call]
            log = await self._connection().acl_log(128) if since is not None else []
        except RedisError as exc:
            raise ProviderError(f"redis CLIENT LIST / ACL LOG failed ({type(exc).__name__})") from None
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        signals: list[Signal] = []
        by_user: dict[tuple[str, str], int] = {}
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            user = fields.get("user", "")
            if user in retired and user != self.username:
                host = fields.get("addr", "?").rpartition(":")[0] or "?"
                by_user[(user, host)] = by_user.get((user, host), 0) + 1
        for (user, host), n in sorted(by_user.items()):
            detail = f"{n} connection(s) still authenticated as retired user {user} from {host}"
            signals.append(Signal("session", user, detail, f"session:{user}:{host}"))
        now = datetime.now(UTC)
        for entry in log:
            if entry.get("reason") != "auth" or entry.get("username") != self.username:
                continue
            # age-seconds is relative to the server's clock, so no clock skew enters: when it was last refused.
            last = now - timedelta(seconds=float(entry.get("age-seconds") or 0))
            if since is None or last < since:
                continue
            info = entry.get("client-info") or {}
            addr = str(info.get("addr", "?")) if isinstance(info, dict) else "?"
            host = addr.rpartition(":")[0] or "?"
            count = int(entry.get("count") or 1)
            detail = f"{count} refused AUTH as {self.username} from {host} since the rotation (ACL LOG)"
            # Redis 7.2+ names each entry; older ones do not, so the client host identifies it.
            key = f"auth:{self.username}:{host}:{entry.get('entry-id', '')}"
            signals.append(Signal("auth_failure", self.username, detail, key, last))
        return signals

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.aclose()
            self._admin = None
        if self._pool is not None:
            await self._pool.disconnect()
            self._pool = None


SPEC = ProviderSpec(
    name="redis_acl",
    summary="A Redis >= 6 ACL user. Two passwords are live during the switch (>new, later <old): zero downtime.",
    required={
        "url": "admin connection, e.g. redis://default:PASSWORD@127.0.0.1:6379/0",
        "username": "the ACL user whose password rotates",
    },
    optional={
        "kill_clients": "true: retire also closes the old password's connections (CLIENT KILL USER); default false",
        "acl_rules": 'rules to create the user with if it does not exist, e.g. "~app:* +@read +@write"',
    },
    permissions="the admin user needs ACL SETUSER and ACL GETUSER (+acl|setuser +acl|getuser), CLIENT LIST for"
    " observed usage, and CLIENT KILL for revoke and kill_clients; the rotated user needs no extra rights",
    factory=lambda config, _: RedisAclProvider(config),
    username_key="username",
    account=lambda cfg: f"redis {server_of(str(cfg['url']))} user {cfg['username']}",
    usage_signals=True,
)
