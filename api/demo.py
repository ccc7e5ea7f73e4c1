"""`lockzero demo`: the incident story end to end on the embedded default, with real Redis.

A Redis ACL user is registered with two dependents (a service that pulls, one that takes a signed
webhook), its password leaks into a fake CI log, and an "agent" drives the MCP endpoint: look at the
secret, rotate it, poll verify_remediation. Everything runs in a temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
import uvicorn
from litestar import Litestar, Request, post

from lockzero.api.app import create_app
from lockzero.engine.app import Engine
from lockzero.engine.commands import dependents, tenants
from lockzero.engine.commands import secrets as secret_cmds
from lockzero.engine.config import load_settings
from lockzero.engine.domain import events as ev
from lockzero.engine.security import keys
from lockzero.engine.security.crypto import MasterKey
from lockzero.providers.deliveries import SIGNATURE_HEADER, signature
from lockzero.workers.inprocess import InProcessQueue

ADMIN_REDIS = os.environ.get("LOCKZERO_DEMO_REDIS_URL", "redis://127.0.0.1:6379/0")
DEMO = ev.EventMeta(actor_id="lockzero:demo", actor_type="operator")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _serving(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _say(line: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.3f}s] {line}", flush=True)


async def run_demo(as_json: bool = False) -> None:
    t0 = time.perf_counter()
    admin = aioredis.Redis.from_url(ADMIN_REDIS)
    user = f"lockzero-demo-{secrets.token_hex(3)}"
    leaked = secrets.token_urlsafe(24)
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{leaked}", "~demo:*", "+@all")
    received: list[dict[str, Any]] = []
    signing: dict[str, str] = {}

    @post("/hook", status_code=200)
    async def hook(request: Request[Any, Any, Any]) -> dict[str, str]:
        body = await request.body()
        ok = request.headers.get(SIGNATURE_HEADER.lower()) == signature(signing["secret"], body)
        received.append({"signature_ok": ok, **msgspec.json.decode(body)})
        return {"adopted": "yes" if ok else "no"}

    with tempfile.TemporaryDirectory(prefix="lockzero-demo-") as state:
        settings = load_settings(
            {
                "LOCKZERO_DATABASE_URL": f"sqlite:///{state}/lockzero.db",
                "LOCKZERO_RATE_LIMIT": "0",
                "LOCKZERO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                # The demo's webhook receiver runs on loopback, which outbound targets may not reach by default.
                "LOCKZERO_OUTBOUND_ALLOW": "127.0.0.1",
            }
        )
        engine = await Engine.open(
            settings.database_url, settings.master_key or MasterKey.generate(), outbound=settings.outbound
        )
        queue = InProcessQueue(engine)
        try:
            await engine.migrate()
            await tenants.create_tenant(engine, "demo", DEMO)
            key = (await keys.create_key(engine, "demo", DEMO, name="demo-agent")).key
            await secret_cmds.register_secret(
                engine,
                "demo",
                DEMO,
                secret_id="prod/redis/cache",
                provider="redis_acl",
                environment="prod",
                config={"url": ADMIN_REDIS, "username": user},
                value=leaked.encode(),
                labels={"team": "platform"},
            )
            hook_port, api_port = _free_port(), _free_port()
            pull = await dependents.add_dependent(
                engine,
                "demo",
                DEMO,
                secret_id="prod/redis/cache",
                service="checkout-api",
                environment="prod",
                delivery="pull",
            )
            wh = await dependents.add_dependent(
                engine,
                "demo",
                DEMO,
                secret_id="prod/redis/cache",
                service="session-worker",
                environment="prod",
                delivery=f"webhook:http://127.0.0.1:{hook_port}/hook",
            )
            signing["secret"] = wh.signing_secret or ""
            _say(
                f"registered prod/redis/cache (Redis ACL user {user}) with dependents checkout-api (pull)"
                " and session-worker (webhook)",
                t0,
            )
            ci_log = f"+ redis-cli --user {user} --pass {leaked} PING\nPONG\n"
            _say(f"a CI log leaks it: {ci_log.splitlines()[0].replace(leaked, leaked[:4] + '…')}", t0)
            queue.start()
            async with (
                _serving(Litestar([hook]), hook_port),
                _serving(create_app(engine, settings, queue), api_port),
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http,
            ):

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                    reply = (await http.post("/api/mcp", json=body, headers={"Authorization": f"Bearer {key}"})).json()
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']['message']}")
                    result: dict[str, Any] = reply["result"]
                    return result

                async def checkout_api() -> None:
                    # A pull dependent: re-reads the secret every 50 ms, as a sidecar would.
                    for _ in range(400):
                        await http.get(
                            "/api/v1/secrets/prod/redis/cache/current",
                            headers={"Authorization": f"Bearer {pull.token}"},
                        )
                        await asyncio.sleep(0.05)

                poller = asyncio.create_task(checkout_api())
                start = time.perf_counter()
                found = await call("detect_exposure", text=ci_log, source="ci/build-4711.log")
                hit = next((f for f in found["findings"] if f["managed"]), None)
                _say(
                    f"agent: detect_exposure → {len(found['findings'])} finding(s);"
                    + (f" managed {hit['secret_id']} at line {hit['line']}, {hit['redacted']}" if hit else "")
                    + f"; incident {', '.join(found['incident_ids']) or '-'}",
                    t0,
                )
                meta = await call("get_secret_metadata", secret_id="prod/redis/cache")
                _say(
                    f"agent: get_secret_metadata → {meta['current_version']}, {meta['dependents_count']} dependents", t0
                )
                started = await call("rotate_secret", secret_id="prod/redis/cache", reason="password leaked in CI log")
                _say(
                    f"agent: rotate_secret → {started['rotation_id']} {started['status']}"
                    f" ({started['from_version']} → {started['to_version']})",
                    t0,
                )
                verdict: dict[str, Any] = {}
                for _ in range(600):
                    verdict = await call("verify_remediation", secret_id="prod/redis/cache")
                    if verdict["verified"] or verdict["status"] in ("failed", "compensated"):
                        break
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - start
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
                _say(f"agent: verify_remediation → verified={verdict['verified']} {verdict['checks']}", t0)
                # The saga resolves the leak right after it records the outcome verify just saw: give it a moment.
                open_now = await call("get_active_incidents", secret_id="prod/redis/cache")
                for _ in range(40):
                    if not open_now["incidents"] or not verdict["verified"]:
                        break
                    await asyncio.sleep(0.05)
                    open_now = await call("get_active_incidents", secret_id="prod/redis/cache")
                _say(f"open incidents on the secret after verification: {len(open_now['incidents'])}", t0)
                history = await call("get_rotation_history", secret_id="prod/redis/cache")
                for step in history["rotations"][0]["steps"]:
                    print(f"           {step['at'][11:23]}  {step['step']:<10} {step['status']}")
                try:
                    probe = aioredis.Redis.from_url(ADMIN_REDIS, username=user, password=leaked)
                    await probe.ping()
                    leaked_works = True
                except Exception:
                    leaked_works = False
                finally:
                    await probe.aclose()
                _say(
                    f"the leaked password now {'STILL WORKS' if leaked_works else 'is refused by Redis'};"
                    f" webhook deliveries: {len(received)} (signature ok: {all(r['signature_ok'] for r in received)})",
                    t0,
                )
                print(f"\ntime to remediation: {elapsed * 1000:.0f} ms (rotate_secret call → verified)")
                if as_json:
                    sys.stdout.write(
                        msgspec.json.encode(
                            {"verified": verdict["verified"], "time_to_remediation_ms": round(elapsed * 1000, 1)}
                        ).decode()
                        + "\n"
                    )
        finally:
            await queue.close()
            await engine.close()
            await admin.execute_command("ACL", "DELUSER", user)
            await admin.aclose()
