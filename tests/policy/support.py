"""Helpers of the policy/approval/incident/notification tests: the CLI with its exit code, polling,
a local notification receiver, and direct reads of the store behind a running server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any, TypeVar

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.api.support import Key, Server
from tests.saga.support import LocalHttpServer, wait_for

T = TypeVar("T")
SCANNER = ev.EventMeta(actor_id="scanner:ci", actor_type="service")


def run_cli(server: Server, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """The real CLI, as a person types it (no --json unless given): exit code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "lockzero.api.cli.main", *args],
        cwd=server.workdir,
        env=server.env,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tool(server: Server, key: Key, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """tools/call (no session needed on this server); returns the whole CallToolResult."""
    r = server.call(key, "tools/call", {"name": name, "arguments": arguments})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "error" not in body, body
    return dict(body["result"])


def verified(server: Server, key: Key, secret_id: str, rotation_id: str | None = None) -> dict[str, Any] | None:
    params: dict[str, Any] = {"secret_id": secret_id}
    if rotation_id:
        params["rotation_id"] = rotation_id
    v = server.result(key, "verify_remediation", params)
    return v if v["verified"] else None


def wait_verified(
    server: Server, key: Key, secret_id: str, rotation_id: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    return wait_for(lambda: verified(server, key, secret_id, rotation_id), timeout, f"{secret_id} verified")


# --- the store behind a running server -----------------------------------------------------------


async def _stream_events(url: str, stream: str) -> list[tuple[ev.AnyEvent, ev.EventMeta]]:
    store = await open_store(url)
    try:
        return [(ev.decode(r.data), ev.decode_meta(r.metadata)) for r in await store.read_stream(stream)]
    finally:
        await store.close()


def stream_events(server: Server, stream: str) -> list[tuple[ev.AnyEvent, ev.EventMeta]]:
    return asyncio.run(_stream_events(server.database_url, stream))


def with_engine(server: Server, work: Callable[[Engine], Any]) -> Any:
    """Run ``await work(engine)`` on an engine over the server's store and master key (as a detector would)."""

    async def go() -> Any:
        engine = Engine(await open_store(server.database_url), MasterKey.from_base64(server.env["LOCKZERO_MASTER_KEY"]))
        try:
            return await work(engine)
        finally:
            await engine.close()

    return asyncio.run(go())


def open_leak(server: Server, tenant: str, secret_id: str, summary: str) -> str:
    """A critical leaked_credential incident about ``secret_id``, opened as a CI scanner would; its id."""
    from lockzero.engine.commands.incidents import open_incident

    async def leak(engine: Engine) -> str:
        return await open_incident(
            engine, tenant, SCANNER, kind="leaked_credential", severity="critical", secret_id=secret_id, summary=summary
        )

    return str(with_engine(server, leak))


# --- a notification receiver ---------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def signed_with(self, secret: str, body: bytes | None = None) -> bool:
        want = "sha256=" + hmac.new(secret.encode(), self.body if body is None else body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-lockzero-signature", ""), want)


class Receiver(LocalHttpServer):
    """A real local HTTP server; each path answers the status set in ``statuses`` (default 204)."""

    def __init__(self, statuses: dict[str, int] | None = None) -> None:
        super().__init__()
        self.statuses = dict(statuses or {})
        self.received: list[Received] = []

    def answer(self, path: str, headers: Message, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.received.append(Received(path, {k.lower(): v for k, v in headers.items()}, body))
        return self.statuses.get(path, 204), {"Content-Length": "0"}, b""

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]
