"""Two `lockzero serve` processes on one PostgreSQL database and Redis (arq), behind a round-robin balancer:
the official SDK client in the 2025-11-25 era keeps one session while its requests alternate between the
processes and while one of them restarts; DELETE ends the session on both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.api.support import Server, start_server
from tests.conftest import fresh_pg_database
from tests.saga.support import REDIS_HOST, REDIS_PORT, Stack, admin_redis

pytestmark = pytest.mark.postgres

#: A Redis database of its own (flushed before and after): the arq queue of this test.
REDIS_DB = 9


@dataclass
class Served:
    port: int
    method: str
    session_id: str | None


@dataclass
class RoundRobin(httpx2.AsyncBaseTransport):
    """An L4-style balancer in the client: each request goes to the next process on a new connection; a
    process that refuses the connection (down, restarting) is skipped, as a balancer's health check would."""

    ports: list[int]
    served: list[Served] = field(default_factory=list)
    refused: int = 0
    _next: int = 0
    _inner: httpx2.AsyncHTTPTransport = field(default_factory=httpx2.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        for attempt in range(2 * len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            request.url = request.url.copy_with(port=port)
            # A new connection per request: a connection kept alive would pin the client to one process.
            request.headers["Connection"] = "close"
            try:
                response = await self._inner.handle_async_request(request)
            except httpx2.ConnectError:
                self.refused += 1
                await asyncio.sleep(0.05 * attempt)
                continue
            self.served.append(Served(port, request.method, request.headers.get("mcp-session-id")))
            return response
        raise httpx2.ConnectError("no process accepted the connection", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Stack, Server]]:
    flush = admin_redis(REDIS_DB)
    flush.flushdb()
    flush.close()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with fresh_pg_database() as url:
        first = start_server(
            "postgresql", tmp_path / "a", url, LOCKZERO_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
        )
        stack = Stack("arq", first, REDIS_DB)
        second = Server("postgresql", url, tmp_path / "b", dict(first.env))
        try:
            second.start()
            stack.start_worker()
            yield stack, second
        finally:
            second.stop()
            stack.stop()
            flush = admin_redis(REDIS_DB)
            flush.flushdb()
            flush.close()


def restart(server: Server) -> int:
    """Stop ``server`` (SIGTERM, in-flight requests finish) and start it again on the same port; its new pid."""
    assert server.proc is not None
    old_pid = server.proc.pid
    server.stop()
    server.http = httpx.Client(timeout=30.0)
    server.start()
    assert server.proc.pid != old_pid
    return server.proc.pid


async def test_a_session_survives_alternation_and_a_restart(tmp_path: Path, two_servers: tuple[Stack, Server]) -> None:
    stack, other = two_servers
    first = stack.server
    tenant, key = stack.tenant_and_key()
    first.secret(tenant, "prod/app/token")
    balancer = RoundRobin([first.port, other.port])
    async with (
        httpx2.AsyncClient(transport=balancer, headers=key.auth, timeout=30.0) as http,
        Client(streamable_http_client(first.mcp_url, http_client=http), mode="legacy") as client,
    ):
        assert client.protocol_version == "2025-11-25"
        for _ in range(3):
            listed = await client.call_tool("list_secrets", {})
            assert listed.is_error is False, listed
            assert [s["secret_id"] for s in listed.structured_content["secrets"]] == ["prod/app/token"]
            assert len((await client.list_tools()).tools) == 12

        # A rotation asked through one process, run by the arq worker, watched through both.
        rotation = await client.call_tool("rotate_secret", {"secret_id": "prod/app/token", "reason": "drill"})
        assert rotation.is_error is False, rotation
        rotation_id = rotation.structured_content["rotation_id"]

        # One process restarts while the client keeps calling.
        restarted = asyncio.create_task(asyncio.to_thread(restart, first))
        during = 0
        while not restarted.done():
            verify = await client.call_tool(
                "verify_remediation", {"secret_id": "prod/app/token", "rotation_id": rotation_id}
            )
            assert verify.is_error is False, verify
            during += 1
            await asyncio.sleep(0.05)
        await restarted
        mark = len(balancer.served)
        for _ in range(4):  # enough calls for the balancer to come round to the restarted process
            assert (await client.call_tool("list_secrets", {})).is_error is False
        deadline = time.monotonic() + 30
        while True:
            verify = await client.call_tool(
                "verify_remediation", {"secret_id": "prod/app/token", "rotation_id": rotation_id}
            )
            assert verify.is_error is False, verify
            if verify.structured_content["status"] == "completed" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert verify.structured_content["status"] == "completed", (verify, stack.logs())
        after = await client.call_tool("get_secret_metadata", {"secret_id": "prod/app/token"})
        assert after.structured_content["current_version"] == "v2"
        session_id = client_session_id(balancer)

    posts = [s for s in balancer.served if s.method == "POST"]
    # Every request after initialize carried the one session, and both processes served it.
    assert {s.session_id for s in posts[1:]} == {session_id}
    assert {s.port for s in posts} == {first.port, other.port}
    # The restart was real: while it ran the client's calls went on (some connections were refused and
    # went to the other process), and the restarted process served the same session afterwards.
    assert during >= 1 and balancer.refused >= 1
    assert first.port in {s.port for s in balancer.served[mark:] if s.method == "POST"}
    # The SDK ended the session on close (DELETE, through one process): it is gone on both.
    assert [s.method for s in balancer.served][-1] == "DELETE"
    for server in (first, other):
        r = server.post(
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            key=key,
            headers={"Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"},
        )
        assert r.status_code == 404, r.text


def client_session_id(balancer: RoundRobin) -> str:
    ids = {s.session_id for s in balancer.served if s.session_id}
    assert len(ids) == 1, ids
    return ids.pop()
