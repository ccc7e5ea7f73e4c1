"""Method handlers shared by both eras and by direct calls; the transport decides the era."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from api.mcp import versions
from api.mcp.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, Message, RpcError
from api.mcp.sessions import Session, SessionStore
from api.tools.runner import ToolRunner, UnknownTool
from engine.aggregates.api_key import ApiKey
from engine.errors import LockzeroError

Era = Literal["modern", "handshake", "direct"]

SERVER_INFO = {"name": "lockzero", "title": "Lockzero credential remediation", "version": "0.1.0"}
INSTRUCTIONS = (
    "Lockzero rotates leaked credentials for real. Typical flow: detect_exposure on suspicious text, "
    "get_secret_metadata / assess_blast_radius to understand impact, check_rotation_policy, then rotate_secret "
    "(returns at once) and poll verify_remediation until verified is true. Never paste secret values into calls "
    "other than detect_exposure; Lockzero never returns them."
)
TOOLS_TTL_MS = 60_000


@dataclass
class CallState:
    key: ApiKey
    era: Era
    protocol_version: str
    session: Session | None = None
    #: Headers the transport must add to the HTTP response (e.g. a new Mcp-Session-Id).
    response_headers: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, runner: ToolRunner, sessions: SessionStore) -> None:
        self.runner = runner
        self.sessions = sessions

    async def handle(self, state: CallState, msg: Message) -> dict[str, Any] | None:
        """The result object for a request; None for notifications and client responses."""
        if msg.is_notification or msg.is_response:
            if state.session is not None and msg.method == "notifications/initialized":
                state.session.initialized = True
            return None
        assert msg.method is not None
        method = msg.method
        if method == "initialize":
            result = await self._initialize(state, msg.params)
        elif method == "ping":
            result = {}
        elif method == "server/discover":
            result = self._discover()
        elif method == "tools/list":
            result = await self._tools_list(state)
        elif method == "tools/call":
            result = await self._tools_call(state, msg.params)
        elif method in self.runner.registry:
            return await self._direct(state, method, msg.params)
        else:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"method not found: {method!r}",
                http_status=404 if state.era == "modern" else 200,
            )
        if state.era == "modern":
            result = {"resultType": "complete", **result}
            meta = dict(result.get("_meta") or {})
            meta[versions.META_SERVER_INFO] = SERVER_INFO
            result["_meta"] = meta
        return result

    async def _initialize(self, state: CallState, params: dict[str, Any]) -> dict[str, Any]:
        if state.era == "modern":
            raise RpcError(
                METHOD_NOT_FOUND,
                "initialize does not exist in protocol 2026-07-28; use server/discover",
                http_status=404,
            )
        version = versions.negotiate(params.get("protocolVersion"))
        session = self.sessions.open(state.key.key_id, version)
        state.response_headers["Mcp-Session-Id"] = session.session_id
        await self.runner.record_protocol(state.key, "initialize")
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }

    def _discover(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(versions.SUPPORTED),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
            "ttlMs": TOOLS_TTL_MS,
            "cacheScope": "public",
        }

    async def _tools_list(self, state: CallState) -> dict[str, Any]:
        tools = [t.describe() for t in self.runner.registry.visible_to(state.key)]
        result: dict[str, Any] = {"tools": tools}
        if state.era == "modern":
            # The list depends on the key (read-only keys see fewer tools).
            result.update(ttlMs=TOOLS_TTL_MS, cacheScope="private")
        return result

    async def _tools_call(self, state: CallState, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, 'tools/call needs "name" (a string)')
        try:
            structured = await self.runner.call(state.key, name, params.get("arguments"))
        except UnknownTool:
            raise RpcError(
                INVALID_PARAMS, f"unknown tool {name!r}; tools/list shows the tools this key may use"
            ) from None
        except LockzeroError as exc:
            error = {"code": exc.code, "name": exc.name, "message": exc.message}
            if exc.data:
                error["data"] = exc.data
            payload = {"error": error}
            return {
                "content": [{"type": "text", "text": json.dumps(payload)}],
                "structuredContent": payload,
                "isError": True,
            }
        text = msgspec.json.encode(structured).decode()
        return {"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": False}

    async def _direct(self, state: CallState, method: str, params: dict[str, Any]) -> dict[str, Any]:
        arguments = {k: v for k, v in params.items() if k != "_meta"}
        try:
            return await self.runner.call(state.key, method, arguments)
        except LockzeroError as exc:
            raise RpcError(exc.code, exc.message, exc.data or None) from None
