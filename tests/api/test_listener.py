"""The socket `lockzero serve` listens on: connections it accepts send small writes at once (TCP_NODELAY).

asyncio turns Nagle's algorithm off only for sockets whose protocol says TCP; a listener made with protocol 0
passed that on to every accepted connection, and on a keep-alive connection each response body then waited for
the client's delayed ACK of the headers (about 40 ms per request after the first).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from lockzero.api.serve import bind
from lockzero.engine.config import Settings


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_accepted_connections_have_nagle_off(host: str) -> None:
    listener = bind(Settings("sqlite://", None, host, 0, (), None))
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Record(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Record, sock=listener)
    try:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(accepted, 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
