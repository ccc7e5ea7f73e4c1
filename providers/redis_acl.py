"""`redis_acl`: a Redis (>= 6) ACL user. Redis users may hold several passwords, so the new one is
added beside the old (`>new`), dependents move, and the old one is removed at retire (`<old`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from providers.base import Credential, ProviderError, Usage


class RedisAclProvider:
    name = "redis_acl"
    overlapping = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.url = str(config["url"])
        self.username = str(config["username"])
        self.kill_clients = bool(config.get("kill_clients", False))
        self._admin: aioredis.Redis | None = None

    def _connection(self) -> aioredis.Redis:
        if self._admin is None:
            self._admin = aioredis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        return self._admin

    async def _acl(self, *rules: str, op: str) -> None:
        try:
            await self._connection().execute_command("ACL", "SETUSER", self.username, *rules)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            # Rules carry passwords: report the operation and the error class only.
            raise ProviderError(f"redis ACL {op} for user {self.username!r} failed ({type(exc).__name__})") from None

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        await self._acl("on", f">{new.value}", op="add password")
        return Credential(new.value, self.username, None)

    async def validate(self, credential: Credential) -> bool:
        host_conn = self._connection().connection_pool.connection_kwargs
        client = aioredis.Redis(
            host=host_conn.get("host", "127.0.0.1"),
            port=host_conn.get("port", 6379),
            username=self.username,
            password=credential.value,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        try:
            await client.ping()
            return True
        except (AuthenticationError, ResponseError):
            return False
        except RedisError as exc:
            raise ProviderError(f"redis unreachable while validating user {self.username!r}") from exc
        finally:
            await client.aclose()

    async def retire(self, credential: Credential) -> None:
        await self._remove(credential, op="remove password")
        if self.kill_clients:
            await self._kill_clients()

    async def _remove(self, credential: Credential, op: str) -> None:
        try:
            await self._acl(f"<{credential.value}", op=op)
        except ProviderError:
            # `<pw` of a password the user no longer has is an error in Redis; the outcome we want holds.
            if await self.validate(credential):
                raise

    async def restore(self, credential: Credential) -> None:
        await self._acl("on", f">{credential.value}", op="restore password")

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

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.aclose()
            self._admin = None
