"""POST/GET/DELETE /api/mcp: Streamable HTTP for both protocol eras plus direct JSON-RPC calls.

Era selection, per request:
- `MCP-Protocol-Version: 2026-07-28` → stateless era: `_meta` version, Mcp-Method/Mcp-Name header checks.
- a handshake version, an `initialize`, or an `Mcp-Session-Id` → handshake era with sessions.
- none of these → a direct call (product page style), treated as 2025-03-26 without a session.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import msgspec
from litestar import Request
from litestar.response import Response

from api.auth import authenticate_key, origin_allowed
from api.mcp import versions
from api.mcp.dispatcher import CallState, Dispatcher
from api.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    PAYLOAD_TOO_LARGE,
    UNAVAILABLE,
    UNSUPPORTED_VERSION,
    Message,
    RpcError,
    parse_message,
    result_body,
)
from engine.aggregates.api_key import ApiKey
from engine.app import Engine
from eventstore import StoreUnavailable

log = logging.getLogger("lockzero.api")

MAX_BODY_BYTES = 16 * 1024 * 1024
_JSON = "application/json"
_encoder = msgspec.json.Encoder()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encoder.encode(body), status_code=status, media_type=_JSON, headers=headers or {})


def _error(err: RpcError, request_id: Any = None) -> Response[bytes]:
    return _json(err.body(request_id), err.http_status or 200)


class McpEndpoint:
    def __init__(
        self, engine: Engine, dispatcher: Dispatcher, allowed_origins: tuple[str, ...], bind_host: str = "127.0.0.1"
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.allowed_origins = allowed_origins
        self.bind_host = bind_host

    async def _gate(self, request: Request) -> ApiKey | Response[Any]:
        if not origin_allowed(request, self.allowed_origins, self.bind_host):
            return _json({"error": "forbidden_origin", "error_description": "this Origin is not allowed"}, 403)
        try:
            return await authenticate_key(self.engine, request)
        except StoreUnavailable:
            return _error(RpcError(UNAVAILABLE, "the event store is unavailable; retry later", http_status=503))

    async def post(self, request: Request) -> Response[Any]:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        key = gate
        payload: Any = None
        try:
            body = await _read_body(request)
            try:
                payload = msgspec.json.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8 in strings
                raise RpcError(PARSE_ERROR, "parse error: the body is not valid JSON", http_status=400) from None
            except RecursionError:
                raise RpcError(INVALID_REQUEST, "JSON nested too deeply", http_status=400) from None
            header_version = request.headers.get("mcp-protocol-version")
            if header_version is not None and header_version not in versions.SUPPORTED:
                raise RpcError(
                    UNSUPPORTED_VERSION,
                    "Unsupported protocol version",
                    {"supported": list(versions.SUPPORTED), "requested": header_version},
                    http_status=400,
                )
            if isinstance(payload, list):
                return await self._batch(request, key, payload, header_version)
            msg = parse_message(payload)
            state = self._state(request, key, msg, header_version)
            return await self._one(state, msg)
        except RpcError as err:
            return _error(err, _request_id(payload))

    async def _one(self, state: CallState, msg: Message) -> Response[Any]:
        try:
            result = await self.dispatcher.handle(state, msg)
        except RpcError as err:
            return _error(err, msg.id)
        except StoreUnavailable:
            return _error(RpcError(UNAVAILABLE, "the event store is unavailable; nothing was changed"), msg.id)
        except Exception as exc:  # never a traceback to the client
            log.error(
                "unexpected error in %s (%s)",
                msg.method,
                type(exc).__name__,
                exc_info=bool(os.environ.get("LOCKZERO_DEBUG")),
            )
            return _error(RpcError(INTERNAL_ERROR, "internal error; the call was not completed"), msg.id)
        if result is None:
            return Response(b"", status_code=202, headers=state.response_headers)
        return _json(result_body(msg.id, result), 200, state.response_headers)

    async def _batch(
        self, request: Request, key: ApiKey, payload: list[Any], header_version: str | None
    ) -> Response[Any]:
        version = header_version or versions.DEFAULT_HANDSHAKE
        session_id = request.headers.get("mcp-session-id")
        if session_id is not None:
            session = self.dispatcher.sessions.get(session_id, key.key_id)
            if session is None:
                raise RpcError(INVALID_REQUEST, "session not found or ended; initialize again", http_status=404)
            version = header_version or session.protocol_version
        if version not in versions.BATCH_VERSIONS:
            raise RpcError(INVALID_REQUEST, f"JSON-RPC batches are not allowed in protocol {version}", http_status=400)
        if not payload:
            raise RpcError(INVALID_REQUEST, "empty batch", http_status=400)
        out: list[dict[str, Any]] = []
        for raw in payload:
            try:
                msg = parse_message(raw)
                if msg.method == "initialize":
                    raise RpcError(INVALID_REQUEST, "initialize must not be part of a batch")
                state = self._state(request, key, msg, header_version)
            except RpcError as err:
                out.append(err.body(_request_id(raw)))
                continue
            response = await self._one(state, msg)
            if response.status_code != 202:
                out.append(msgspec.json.decode(response.content))
        return _json(out) if out else Response(b"", status_code=202)

    def _state(self, request: Request, key: ApiKey, msg: Message, header_version: str | None) -> CallState:
        meta = msg.params.get("_meta") if isinstance(msg.params.get("_meta"), dict) else None
        meta_version = meta.get(versions.META_PROTOCOL_VERSION) if meta else None
        if header_version == versions.MODERN:
            self._check_modern_headers(request, msg, meta_version)
            return CallState(key, "modern", versions.MODERN)
        if meta_version == versions.MODERN:
            raise RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header is required", http_status=400)
        session_id = request.headers.get("mcp-session-id")
        if msg.method == "initialize":
            return CallState(key, "handshake", header_version or versions.DEFAULT_HANDSHAKE)
        if session_id is None:
            if header_version is not None and not msg.is_notification:
                raise RpcError(
                    INVALID_REQUEST, "Mcp-Session-Id header is required; call initialize first", http_status=400
                )
            return CallState(key, "direct", header_version or versions.DEFAULT_HANDSHAKE)
        session = self.dispatcher.sessions.get(session_id, key.key_id)
        if session is None:
            raise RpcError(INVALID_REQUEST, "session not found or ended; initialize again", http_status=404)
        if header_version is not None and header_version != session.protocol_version:
            raise RpcError(
                INVALID_REQUEST,
                f"MCP-Protocol-Version {header_version} does not match the session's {session.protocol_version}",
                http_status=400,
            )
        return CallState(key, "handshake", session.protocol_version, session)

    @staticmethod
    def _check_modern_headers(request: Request, msg: Message, meta_version: object) -> None:
        if msg.is_response:
            return
        header_method = request.headers.get("mcp-method")
        if header_method != msg.method:
            raise RpcError(
                HEADER_MISMATCH,
                f"Header mismatch: Mcp-Method header value {header_method!r} does not match body value {msg.method!r}",
                http_status=400,
            )
        if msg.method == "tools/call":
            header_name, body_name = request.headers.get("mcp-name"), msg.params.get("name")
            if header_name != body_name:
                raise RpcError(
                    HEADER_MISMATCH,
                    f"Header mismatch: Mcp-Name header value {header_name!r} does not match body value {body_name!r}",
                    http_status=400,
                )
        if msg.is_notification:
            return
        if meta_version is None:
            raise RpcError(
                INVALID_PARAMS, f"params._meta must carry {versions.META_PROTOCOL_VERSION!r}", http_status=400
            )
        if meta_version != versions.MODERN:
            raise RpcError(
                HEADER_MISMATCH,
                "Header mismatch: MCP-Protocol-Version header does not match params._meta protocol version",
                http_status=400,
            )

    async def get(self, request: Request) -> Response[Any]:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        # No server-initiated messages: every answer comes back on its POST.
        return Response(b"", status_code=405, headers={"Allow": "POST, DELETE"})

    async def delete(self, request: Request) -> Response[Any]:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        session_id = request.headers.get("mcp-session-id")
        if session_id is None:
            return _error(RpcError(INVALID_REQUEST, "Mcp-Session-Id header is required", http_status=400))
        if not self.dispatcher.sessions.close(session_id, gate.key_id):
            return _error(RpcError(INVALID_REQUEST, "session not found or already ended", http_status=404))
        return Response(b"", status_code=204)


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RpcError(
                PAYLOAD_TOO_LARGE,
                f"request body above {MAX_BODY_BYTES // (1024 * 1024)} MiB; split the text and scan it in parts",
                http_status=413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(raw: Any) -> Any:
    if isinstance(raw, dict):
        rid = raw.get("id")
        if isinstance(rid, str | int) and not isinstance(rid, bool):
            return rid
    return None
