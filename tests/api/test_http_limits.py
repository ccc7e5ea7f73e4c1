"""Request size and pace, against a real `lockzero serve` over raw sockets: a body above the limit is
refused as soon as it passes it (or when announced), and connections that send headers or a body
too slowly are closed by the server instead of being held open."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockzero.api.http_protocol import DRAIN_TIMEOUT_S
from tests.api.conftest import running_server
from tests.api.support import Key, Server

LIMIT = 5 * 1024 * 1024 + 64 * 1024
HEADER_TIMEOUT_S = 10.0
BODY_GRACE_S = 10.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One backend is enough: these limits live in the HTTP layer, before any store is touched.
    with running_server("postgresql", Path(tmp_path_factory.mktemp("limits"))) as s:
        yield s


@pytest.fixture(scope="module")
def key(srv: Server) -> Key:
    return srv.key(srv.tenant())


def _connect(srv: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10)


def _head(key: Key, length: int | None, *, chunked: bool = False) -> bytes:
    lines = [
        "POST /api/mcp HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Authorization: Bearer {key.token}",
    ]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _readable(sock: socket.socket, timeout: float) -> bool:
    # selectors, not select.select: the test holds more than 1,024 descriptors.
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(timeout))


def _read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sent until it closed (True) or ``timeout`` passed (False)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _readable(sock, max(0.0, deadline - time.monotonic())):
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _until_closed(socks: list[socket.socket], deadline: float) -> dict[int, tuple[bytes, bool]]:
    """Per socket: what the server sent, and whether it closed the connection before ``deadline``."""
    got = {id(s): b"" for s in socks}
    closed: set[int] = set()
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for selected, _ in sel.select(max(0.0, deadline - time.monotonic())):
                assert isinstance(selected.fileobj, socket.socket)
                sock = selected.fileobj
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    got[id(sock)] += chunk
                else:
                    closed.add(id(sock))
                    sel.unregister(sock)
    return {k: (v, k in closed) for k, v in got.items()}


def _status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_announced_oversize_body_is_refused_before_it_is_sent(srv: Server, key: Key) -> None:
    with _connect(srv) as sock:
        sock.sendall(_head(key, 6 * 1024 * 1024))
        raw, closed = _read_all(sock, DRAIN_TIMEOUT_S + 5.0)
    status, body = _status_and_body(raw)
    assert status == 413, raw[:300]
    assert body["error"]["code"] == -32015, body  # type: ignore[index]
    assert closed, "the connection stays open after refusing the body"


def test_streamed_body_is_cut_off_at_the_limit(srv: Server, key: Key) -> None:
    """A chunked body (no length announced) above the limit: refused once past it; the server does
    not read (or buffer) the rest. 12 MiB of a valid ping was accepted by the old 16 MiB limit."""
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * (12 * 1024 * 1024)}})
    data = payload.encode()
    sent = 0
    answer = b""
    with _connect(srv) as sock:
        sock.sendall(_head(key, None, chunked=True))
        step = 256 * 1024
        try:
            while sent < len(data):
                piece = data[sent : sent + step]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
                if _readable(sock, 0.005):
                    break
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer, _ = _read_all(sock, 10.0)
    status, body = _status_and_body(answer)
    assert status == 413, answer[:300]
    assert body["error"]["code"] == -32015, body  # type: ignore[index]
    # The answer came while the client was still sending (socket buffers hold a few MiB more).
    assert sent < len(data), "the whole 12 MiB body was taken in before the answer"


def test_body_at_the_limit_is_read(srv: Server, key: Key) -> None:
    # Just under the limit is still a request (here a ping with a big, ignored parameter).
    envelope = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"pad": ""}})
    body = envelope.replace('"pad": ""', '"pad": "' + "x" * (LIMIT - len(envelope) - 100) + '"').encode()
    assert len(body) <= LIMIT
    r = srv.post(content=body, key=key)
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}


def test_slow_headers_and_trickled_bodies_are_closed(srv: Server, key: Key) -> None:
    """1,000 connections with half a request, some trickling a body one byte a second, some trickling
    a second request's headers on a kept-alive connection: all closed by the server within the
    timeouts, while other clients are still served."""
    partial = [_connect(srv) for _ in range(1000)]
    for sock in partial:
        sock.sendall(b"POST /api/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    bodies = [_connect(srv) for _ in range(10)]
    for sock in bodies:
        sock.sendall(_head(key, 1000) + b'{"jsonrpc"')
    kept = [_connect(srv) for _ in range(10)]
    for sock in kept:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _readable(sock, 5) and b"200 OK" in sock.recv(65536)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()

    stop = threading.Event()

    def trickle() -> None:
        # One byte a second: each byte resets uvicorn's own keep-alive timer, not ours.
        while not stop.is_set():
            for sock in bodies + kept:
                with contextlib.suppress(OSError):  # closed by the server: the point of the test
                    sock.send(b" " if sock in bodies else b"X")
            stop.wait(1.0)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        # Meanwhile the server answers others at once.
        with _connect(srv) as fresh:
            fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            raw, _ = _read_all(fresh, 5.0)
            assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
        results = _until_closed(partial + bodies + kept, started + max(HEADER_TIMEOUT_S, BODY_GRACE_S) + 4.0)
    finally:
        stop.set()
        trickler.join(5)
        for sock in partial + bodies + kept:
            sock.close()
    elapsed = time.monotonic() - started
    still_open = [i for i, s in enumerate(partial) if not results[id(s)][1]]
    assert not still_open, f"{len(still_open)} of 1000 partial-header connections still open after {elapsed:.1f}s"
    for sock in bodies:
        raw, closed = results[id(sock)]
        assert closed, "a trickled body kept its connection"
        assert raw.startswith(b"HTTP/1.1 408"), raw[:200]
    for sock in kept:
        raw, closed = results[id(sock)]
        assert closed, "trickled headers on a kept-alive connection kept it open"
    # The server still works after all that.
    r = srv.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, key=key)
    assert r.status_code == 200 and r.json()["result"] == {}, r.text
