"""Closed-loop HTTP load generator for the MCP benchmark (run as its own process).

N clients, each on its own keep-alive HTTP/1.1 connection, send direct JSON-RPC calls back to back
(`{"jsonrpc":"2.0","id":i,"method":"get_secret_metadata","params":{"secret_id":...}}` with the Bearer
key, secret ids round-robin) and time each call from the first byte written to the last byte read.

Two clients, chosen with ``--client``:
- ``raw`` (default): asyncio streams, requests built as bytes, responses parsed by Content-Length.
  It costs the client a few tens of microseconds of CPU per call, so on a 2-core machine the load
  generator takes little CPU away from the server (and from PostgreSQL) it measures.
- ``httpx``: one httpx.AsyncClient with a pool of N connections; several times the CPU per call.

Prints one JSON document (the last line): ok/failed counts, elapsed seconds, client CPU seconds and
the latencies of the measured calls.

    python -m tests.bench.loadgen --port 8080 --token lz_mcp_... --secret a --secret b --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

PATH = "/api/mcp"

Call = Callable[[int, str], Awaitable[bool]]


@dataclass
class Result:
    ok: int = 0
    failed: int = 0
    first_failure: str = ""
    latencies_us: list[int] = field(default_factory=list)


def request_body(call_id: int, secret_id: str) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": call_id, "method": "get_secret_metadata", "params": {"secret_id": secret_id}},
        separators=(",", ":"),
    ).encode()


def good_response(status: int, body: bytes) -> bool:
    return status == 200 and body.startswith(b'{"jsonrpc":"2.0"') and b'"result":{' in body and b'"error":' not in body


class RawConnection:
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def call(self, call_id: int, secret_id: str) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        body = request_body(call_id, secret_id)
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
            self.reader = self.writer = None
        return status, payload


async def run_load(
    *,
    host: str,
    port: int,
    token: str,
    secrets: list[str],
    concurrency: int,
    duration: float,
    warmup: float,
    client: str = "raw",
    markers: bool = False,
) -> dict[str, object]:
    """Warm up for ``warmup`` s (calls counted, latencies not kept), then measure for ``duration`` s.

    With ``markers``, print "start" and "stop" lines at the edges of the measured window, so a
    parent process can read server-side counters around exactly that window."""
    result = Result()
    warm = Result()
    phase: dict[str, object] = {"current": warm, "stop": False}
    counter = iter(range(1, 1 << 62))

    async def worker(call: Call, offset: int) -> None:
        n = offset
        while not phase["stop"]:
            into = phase["current"]
            assert isinstance(into, Result)
            call_id = next(counter)
            t0 = time.perf_counter_ns()
            try:
                ok = await call(call_id, secrets[n % len(secrets)])
                failure = "" if ok else "bad response"
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                ok, failure = False, f"{type(exc).__name__}: {exc}"
            elapsed_us = (time.perf_counter_ns() - t0) // 1000
            n += 1
            if ok:
                into.ok += 1
                into.latencies_us.append(elapsed_us)
            else:
                into.failed += 1
                into.first_failure = into.first_failure or failure

    def mark(text: str) -> None:
        if markers:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    async def timed(tasks: list[asyncio.Task[None]]) -> tuple[float, float]:
        await asyncio.sleep(warmup)
        mark("start")
        c0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        phase["current"] = result
        await asyncio.sleep(duration)
        phase["stop"] = True
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        c1 = resource.getrusage(resource.RUSAGE_SELF)
        mark("stop")
        return elapsed, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)

    if client == "httpx":
        import httpx  # only this mode needs it

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits, headers=headers) as http:

            async def httpx_call(call_id: int, secret_id: str) -> bool:
                response = await http.post(PATH, content=request_body(call_id, secret_id))
                return good_response(response.status_code, response.content)

            tasks = [asyncio.create_task(worker(httpx_call, i)) for i in range(concurrency)]
            elapsed, cpu = await timed(tasks)
    else:
        conns = [RawConnection(host, port, token) for _ in range(concurrency)]
        await asyncio.gather(*(c.open() for c in conns))

        def raw_call(conn: RawConnection) -> Call:
            async def call(call_id: int, secret_id: str) -> bool:
                status, body = await conn.call(call_id, secret_id)
                return good_response(status, body)

            return call

        tasks = [asyncio.create_task(worker(raw_call(c), i)) for i, c in enumerate(conns)]
        try:
            elapsed, cpu = await timed(tasks)
        finally:
            await asyncio.gather(*(c.close() for c in conns))
    return {
        "client": client,
        "concurrency": concurrency,
        "warmup_ok": warm.ok,
        "warmup_failed": warm.failed,
        "ok": result.ok,
        "failed": result.failed,
        "first_failure": result.first_failure or warm.first_failure,
        "elapsed_s": elapsed,
        "client_cpu_s": cpu,
        "latencies_us": result.latencies_us,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--secret", action="append", required=True, help="secret id (repeatable; used round-robin)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw")
    p.add_argument("--markers", action="store_true", help='print "start"/"stop" lines around the measured window')
    a = p.parse_args(argv)
    out = asyncio.run(
        run_load(
            host=a.host,
            port=a.port,
            token=a.token,
            secrets=a.secret,
            concurrency=a.concurrency,
            duration=a.duration,
            warmup=a.warmup,
            client=a.client,
            markers=a.markers,
        )
    )
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
