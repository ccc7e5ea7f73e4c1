"""uvicorn's h11 protocol with the timeouts it lacks.

uvicorn times out only idle keep-alive connections, and any byte received cancels even that, so a
client that sends half a request line and then one header byte now and then holds a connection (and
a slot of the process's file descriptors) for ever. Here every request's headers must be complete
within HEADER_TIMEOUT_S of the connection opening or the previous response ending, and after a
response sent before the request body was read to the end (a refusal) the rest of the body must
arrive within DRAIN_TIMEOUT_S, so a trickled body cannot keep the connection open after its answer.
The pace of a body the app reads is checked where it is read (api/mcp/endpoint.py).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
#: How long the rest of an already answered request's body may take before the connection closes.
DRAIN_TIMEOUT_S = 5.0


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = HEADER_TIMEOUT_S
    drain_timeout_s = DRAIN_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None
    _deadline_kind: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refresh_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_deadline(None)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._refresh_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._refresh_deadline()

    def _refresh_deadline(self) -> None:
        """Which clock runs depends on what we wait for: the next request's headers, or the rest of
        a body we already answered (a refusal). While the app works, none does."""
        if self.transport.is_closing():
            self._set_deadline(None)
        elif self.conn.their_state is h11.IDLE:
            self._set_deadline("headers")
        elif self.conn.their_state is h11.SEND_BODY and self.conn.our_state in (h11.DONE, h11.MUST_CLOSE):
            # Closing at once would reset the connection under the answer still in flight; read
            # (and drop) the rest for a while instead.
            self._set_deadline("drain")
        else:
            self._set_deadline(None)

    def _set_deadline(self, kind: str | None) -> None:
        if kind == self._deadline_kind:
            return  # a running clock is not restarted by more bytes: that is the point
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_kind = kind
        if kind is not None:
            timeout = self.header_timeout_s if kind == "headers" else self.drain_timeout_s
            self._deadline = self.loop.call_later(timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        self._deadline_kind = None
        if not self.transport.is_closing():
            self.transport.close()
