"""A real syslog receiver for the tests (TCP or TLS, octet-counting framing) and an RFC 5424 parser written
from the RFC's ABNF, independent of the sink's formatter."""

from __future__ import annotations

import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Mode = Literal["up", "crash"]

_HEADER = re.compile(
    rb"<(?P<pri>[0-9]{1,3})>(?P<version>[1-9][0-9]{0,2}) (?P<timestamp>\S+) (?P<hostname>[\x21-\x7e]{1,255})"
    rb" (?P<app>[\x21-\x7e]{1,48}) (?P<procid>[\x21-\x7e]{1,128}) (?P<msgid>[\x21-\x7e]{1,32}) "
)
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
#: SD-NAME: 1*32 PRINTUSASCII except '=', SP, ']' and '"'.
_SD_NAME = rb"[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}"


@dataclass
class Message:
    pri: int
    version: int
    timestamp: datetime
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: bytes


def parse_rfc5424(raw: bytes) -> Message:
    m = _HEADER.match(raw)
    assert m, f"not an RFC 5424 header: {raw[:120]!r}"
    ts = m["timestamp"].decode()
    assert _TIMESTAMP.fullmatch(ts), ts
    rest = raw[m.end() :]
    sd: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        while rest.startswith(b"["):
            sd_id = re.match(_SD_NAME, rest[1:])
            assert sd_id, rest[:80]
            name = sd_id.group().decode()
            i = 1 + sd_id.end()
            params: dict[str, str] = {}
            while rest[i : i + 1] == b" ":
                pm = re.match(rb" (" + _SD_NAME + rb')="', rest[i:])
                assert pm, rest[i : i + 80]
                i += pm.end()
                value = bytearray()
                while rest[i : i + 1] != b'"':
                    if rest[i : i + 1] == b"\\" and rest[i + 1 : i + 2] in (b'"', b"\\", b"]"):
                        value += rest[i + 1 : i + 2]
                        i += 2
                        continue
                    assert rest[i : i + 1] not in (b"]", b""), "unescaped ] or unterminated PARAM-VALUE"
                    value += rest[i : i + 1]
                    i += 1
                params[pm.group(1).decode()] = value.decode()
                i += 1
            assert rest[i : i + 1] == b"]", rest[i : i + 40]
            sd[name] = params
            rest = rest[i + 1 :]
    msg = rest[1:] if rest.startswith(b" ") else rest
    assert not rest or rest.startswith(b" "), "MSG must follow STRUCTURED-DATA after one space"
    return Message(
        int(m["pri"]),
        int(m["version"]),
        datetime.fromisoformat(ts.replace("Z", "+00:00")),
        m["hostname"].decode(),
        m["app"].decode(),
        m["procid"].decode(),
        m["msgid"].decode(),
        sd,
        msg,
    )


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Octet-counted frames (RFC 6587 §3.4.1), and what is left of an incomplete last one."""
    frames: list[bytes] = []
    while data:
        length, sep, rest = data.partition(b" ")
        if not sep or len(rest) < int(length):
            break
        assert length.isdigit() and not length.startswith(b"0"), length
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    return frames, data


@dataclass
class SyslogReceiver:
    """Accepts one connection at a time. ``up``: reads to the sender's close, closes in order (TLS: answers
    close_notify). ``crash``: reads ``crash_after`` bytes, then resets the connection, like a receiver killed
    with data still unread."""

    context: ssl.SSLContext | None = None
    mode: Mode = "up"
    crash_after: int = 1000
    frames: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(8)
        sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        self._sock, self._stop = sock, threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            try:
                self._handle(conn)
            except (OSError, ssl.SSLError):
                pass  # a sender that gave up; the test looks at what arrived
            finally:
                conn.close()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        conn = self.context.wrap_socket(raw, server_side=True) if self.context else raw
        try:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
                if self.mode == "crash" and len(data) >= self.crash_after:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self._keep(data[: self.crash_after])  # it processed only this much before dying
                    return  # closed below with linger 0: a reset, the rest unread
            if isinstance(conn, ssl.SSLSocket):
                conn = conn.unwrap()
            self._keep(data)
            conn.shutdown(socket.SHUT_WR)
        finally:
            conn.close()

    def _keep(self, data: bytes) -> None:
        frames, _ = split_frames(data)
        self.frames.extend(frames)
