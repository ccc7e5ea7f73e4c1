"""uvicorn's h11 protocol with the timeouts it lacks.

uvicorn times out only idle keep-alive connections, and any byte received cancels even that, so a
client that sends half a request line and then one header byte now and then holds a connection (and
a slot of the process's file descriptors) for ever. Here every request's headers must be complete
within HEADER_TIMEOUT_S of the connection opening or the previous response ending, and a response
sent before the request body was read to the end (a refusal) closes the connection, so a trickled
body cannot keep it open after its answer. The body's own pace is checked where it is read
(api/mcp/endpoint.py).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = HEADER_TIMEOUT_S
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()  # this request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            # Answered before the body was read to the end: the rest could trickle for ever.
            self.transport.close()
            return
        if self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
