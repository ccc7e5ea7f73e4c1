"""Method handlers shared by both eras and by direct calls; the transport decides the era."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from lockzero.api.errors import rpc_code
from lockzero.api.mcp import versions
from lockzero.api.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    UNSUPPORTED_VERSION,
    Message,
    RpcError,
)
from lockzero.api.mcp.sessions import Session, SessionStore
from lockzero.api.tools.runner import ToolRunner, UnknownTool
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.domain.errors import InvalidInput, LockzeroError, RateLimited

Era = Literal["modern", "handshake", "direct"]

SERVER_INFO = {"name": "lockzero", "title": "Lockzero credential remediation", "version": "0.1.0"}
INSTRUCTIONS = (
    "Lockzero rotates leaked credentials for real. Typical flow: detect_exposure on suspicious text, "
    "get_secret_metadata / assess_blast_radius to understand impact, check_rotation_policy, then rotate_secret "
    "(returns at once) and poll verify_remediation until verified is true. Never paste secret values into calls "
    "other than detect_exposure; Lockzero never returns them."
)
TOOLS_TTL_MS = 60_000
PROTOCOL_METHODS = ("initialize", "ping", "server/discover", "tools/list", "tools/call")
#: Notifications a client may send; any other name is audited as "notifications/other", never as sent.
NOTIFICATIONS = (
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
)


def audit_label(method: str | None, tools: object) -> str:
    """What the audit calls a message: its method when it is one we know, else a fixed word, so that a
    caller's made-up method name never lands in the audit."""
    if method is None:
        return "client_response"
    if method in PROTOCOL_METHODS or method in NOTIFICATIONS or (tools is not None and method in tools):  # type: ignore[operator]
        return method
    return "notifications/other" if method.startswith("notifications/") else "unknown_method"


@dataclass
class CallState:
    key: ApiKey
    era: Era
    protocol_version: str
    session: Session | None = None
    #: The client's address, for the audit summaries of refused calls.
    source: str = ""
    #: Set once the runner has taken a call over: it writes that call's audit record itself.
    audited: bool = False
    #: Headers the transport must add to the HTTP response (e.g. a new Mcp-Session-Id).
    response_headers: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, runner: ToolRunner, sessions: SessionStore) -> None:
        self.runner = runner
        self.sessions = sessions

    async def handle(self, state: CallState, msg: Message) -> dict[str, Any] | None:
        """The result object for a request; None for notifications and client responses. Every
        message is rate-limited and audited here (tool calls by the runner, which knows their secret)."""
        label = audit_label(msg.method, self.runner.registry)
        tool = msg.params.get("name") if msg.method == "tools/call" else msg.method
        # A call the runner takes over is limited and audited there, with its secret id.
        is_tool = not msg.is_notification and isinstance(tool, str) and tool in self.runner.registry
        if not is_tool:
            try:
                self.runner.acquire(state.key)
            except RateLimited as exc:
                await self.runner.refused(state.key, label, exc, state.source)
                if msg.is_notification or msg.is_response:
                    return None  # nothing to answer a notification with
                raise RpcError(RATE_LIMITED, exc.message, exc.data) from None
        try:
            result = await self._handle(state, msg)
        except RpcError as err:
            if not state.audited:
                await self.runner.refused(state.key, label, ProtocolError(err), state.source)
            raise
        if not state.audited:
            await self.runner.record_protocol(state.key, label)
        return result

    async def _handle(self, state: CallState, msg: Message) -> dict[str, Any] | None:
        if msg.is_notification or msg.is_response:
            # notifications/initialized changes nothing: no method waits for it, so it costs no write.
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
                "method not found; the methods are initialize, ping, server/discover, tools/list, tools/call"
                " and the tool names that tools/list shows",
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
        session = await self.sessions.open(state.key.key_id, version)
        state.response_headers["Mcp-Session-Id"] = session.session_id
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
        result: dict[str, Any] = {"tools": self.runner.registry.described_for(state.key)}
        if state.era == "modern":
            # The list depends on the key (read-only keys see fewer tools).
            result.update(ttlMs=TOOLS_TTL_MS, cacheScope="private")
        return result

    async def _tools_call(self, state: CallState, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, 'tools/call needs "name" (a string)')
        state.audited = name in self.runner.registry
        try:
            structured = await self.runner.call(state.key, name, params.get("arguments"), state.source)
        except UnknownTool:
            raise RpcError(INVALID_PARAMS, "unknown tool; tools/list shows the tools this key may use") from None
        except LockzeroError as exc:
            error = {"code": rpc_code(exc), "name": exc.name, "message": exc.message}
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
        state.audited = True
        try:
            return await self.runner.call(state.key, method, arguments, state.source)
        except LockzeroError as exc:
            raise RpcError(rpc_code(exc), exc.message, exc.data or None) from None


class ProtocolError(InvalidInput):
    """A malformed or unknown request as the runner's error type: audited as "invalid", counted by
    the flood guard under its name."""

    def __init__(self, err: RpcError) -> None:
        super().__init__(err.message)
        self.code = err.code
        self.name = _RPC_NAMES.get(err.code, "invalid_request")


_RPC_NAMES = {
    PARSE_ERROR: "parse_error",
    PAYLOAD_TOO_LARGE: "payload_too_large",
    HEADER_MISMATCH: "header_mismatch",
    UNSUPPORTED_VERSION: "unsupported_version",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    RATE_LIMITED: "rate_limited",
}
