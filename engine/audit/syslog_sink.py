"""Streaming the audit trail to syslog: RFC 5424 messages, octet-counting framing (RFC 6587 §3.4.1), over
plain TCP or TLS (RFC 5425).

Syslog over TCP has no acknowledgements, so bytes accepted by the kernel prove nothing. Each batch therefore
travels on its own connection that is closed in order: after the frames Lockzero half-closes (TCP FIN, or
the TLS close_notify answered by the receiver's) and waits for the receiver to close its side. A receiver
only does that after reading every byte before the close; one that died with unread data resets the
connection instead, and the batch is sent again next time (at-least-once; the cursor is export.stream's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.audit.export import ExportRecord, Format, SinkResult, encode, stream
from lockzero.engine.domain.errors import InvalidInput, Unavailable

#: Facility 13, "log audit" (RFC 5424 table 1).
FACILITY = 13
APP_NAME = "lockzero"
MSGID = "audit"
#: SD-ID of the structured data; 32473 is the enterprise number RFC 5612 reserves for documentation and
#: examples, used until Lockzero has its own.
SD_ID = "lockzero@32473"
_SEVERITY = {"ok": 6, "invalid": 5, "denied": 4, "error": 3}  # informational, notice, warning, error
_BOM = b"\xef\xbb\xbf"
_DEFAULT_PORT = {"tcp": 601, "tls": 6514}
Transport = Literal["tcp", "tls"]


class SyslogTarget(msgspec.Struct, frozen=True):
    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        return f"syslog+{self.transport}://{self.host}:{self.port}"


def parse_target(url: str) -> SyslogTarget:
    """``syslog+tcp://host[:601]`` or ``syslog+tls://host[:6514]``."""
    parts = urlsplit(url)
    transport = parts.scheme.removeprefix("syslog+")
    if transport not in ("tcp", "tls") or not parts.scheme.startswith("syslog+"):
        raise InvalidInput("a syslog sink is syslog+tcp://HOST:PORT or syslog+tls://HOST:PORT")
    try:
        port = parts.port or _DEFAULT_PORT[transport]
    except ValueError:
        raise InvalidInput("the syslog sink's port must be a number from 1 to 65535") from None
    if not parts.hostname or parts.username or parts.path not in ("", "/") or parts.query:
        raise InvalidInput("a syslog sink is syslog+tcp://HOST:PORT or syslog+tls://HOST:PORT, nothing more")
    return SyslogTarget("tcp" if transport == "tcp" else "tls", parts.hostname, port)


def _printable(text: str, limit: int) -> str:
    """RFC 5424 header fields are 1*N PRINTUSASCII; anything else becomes the NILVALUE."""
    ok = text and len(text) <= limit and all(33 <= ord(c) <= 126 for c in text)
    return text if ok else "-"


def _sd_value(text: str) -> str:
    # RFC 5424 §6.3.3: inside PARAM-VALUE, '"', '\' and ']' are escaped with a backslash.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(at: str) -> str:
    # At most six fractional digits and an explicit zone (RFC 5424 §6.2.3).
    dt = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_message(r: ExportRecord, fmt: Format, hostname: str, procid: str = "-") -> bytes:
    """One RFC 5424 SYSLOG-MSG: header, the record's identifying fields as structured data, and the whole
    record (JSON line or OCSF) as a UTF-8 MSG with BOM."""
    pri = FACILITY * 8 + _SEVERITY.get(r.outcome, 5)
    params = {
        "tenant": r.tenant,
        "position": str(r.position),
        "event_id": r.event_id,
        "actor_id": r.actor_id,
        "actor_type": r.actor_type,
        "method": r.method,
        "outcome": r.outcome,
        "secret_id": r.secret_id,
        "chain_seq": None if r.chain_seq is None else str(r.chain_seq),
        "chain_hash": r.chain_hash,
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items() if v is not None) + "]"
    header = (
        f"<{pri}>1 {_timestamp(r.at)} {_printable(hostname, 255)} {APP_NAME} {_printable(procid, 128)} {MSGID} {sd} "
    )
    return header.encode() + _BOM + encode(r, fmt)


def frame(message: bytes) -> bytes:
    """Octet counting (RFC 6587 §3.4.1): MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode() + b" " + message


class TlsFiles(msgspec.Struct, frozen=True):
    """Trust for the receiver's certificate (None: the system's), and an optional client certificate for
    receivers that authenticate senders (RFC 5425 §5.2)."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=files.ca_file)
        if files.client_cert:
            ctx.load_cert_chain(files.client_cert, files.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"cannot load the syslog TLS files ({type(exc).__name__}: {exc.strerror or exc})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _send(target: SyslogTarget, ctx: ssl.SSLContext | None, payload: bytes, timeout: float) -> None:
    """Blocking: connect, send, close in order and wait until the receiver closed too (module docstring)."""
    raw = socket.create_connection((target.host, target.port), timeout=timeout)
    conn = raw
    try:
        if ctx is not None:
            conn = ctx.wrap_socket(raw, server_hostname=target.host)
        conn.sendall(payload)
        if isinstance(conn, ssl.SSLSocket):
            # Our close_notify, then the receiver's. One that closes TCP without close_notify is fine too:
            # had it left bytes unread, its kernel would have reset the connection instead.
            with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError):
                conn = conn.unwrap()
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):
            pass  # a receiver has nothing to say on this channel; read until its FIN
    finally:
        conn.close()
        raw.close()


async def stream_to_syslog(
    engine: Engine,
    tenant: str,
    url: str,
    *,
    fmt: Format = "jsonl",
    batch: int = 200,
    tls: TlsFiles | None = None,
    hostname: str | None = None,
    timeout: float = 10.0,
    sink: str | None = None,
) -> SinkResult:
    """Send the records after the sink's cursor to a syslog receiver, one connection per batch."""
    target = parse_target(url)
    ctx = tls_context(tls or TlsFiles()) if target.transport == "tls" else None
    host = hostname or socket.gethostname()
    procid = str(os.getpid())
    name = sink or f"syslog:{tenant}:{hashlib.sha256(str(target).encode()).hexdigest()[:16]}"

    async def deliver(pending: list[ExportRecord]) -> None:
        payload = b"".join(frame(format_message(r, fmt, host, procid)) for r in pending)
        try:
            await asyncio.to_thread(_send, target, ctx, payload, timeout)
        except ssl.SSLCertVerificationError as exc:
            raise Unavailable(f"audit sink {target}: certificate not trusted ({exc.verify_message})") from None
        except (OSError, ssl.SSLError) as exc:
            raise Unavailable(f"audit sink {target} unreachable or closed early ({type(exc).__name__})") from None

    return await stream(engine, tenant, name, deliver, batch=batch)
