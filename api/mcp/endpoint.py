"""POST/GET/DELETE /api/mcp: Streamable HTTP for both protocol eras plus direct JSON-RPC calls.

Era selection, per request:
- `MCP-Protocol-Version: 2026-07-28` → stateless era: `_meta` version, Mcp-Method/Mcp-Name header checks.
- a handshake version, an `initialize`, or an `Mcp-Session-Id` → handshake era with sessions.
- none of these → a direct call (product page style), treated as 2025-03-26 without a session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException
from litestar.response import Response

from lockzero.api.auth import authenticate_key, origin_allowed, try_authenticate
from lockzero.api.mcp import versions
from lockzero.api.mcp.dispatcher import CallState, Dispatcher, ProtocolError, audit_label
from lockzero.api.mcp.jsonrpc import (
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
from lockzero.api.mcp.sessions import Session
from lockzero.api.tools.registry import IN_BATCH
from lockzero.api.tools.runner import actor_of
from lockzero.engine.app import Engine
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.security.key_cache import KeyCache
from lockzero.eventstore import StoreUnavailable

log = logging.getLogger("lockzero.api")

#: detect_exposure takes up to 5 MiB of text (SPEC §3); the margin is the JSON-RPC envelope around it.
MAX_BODY_BYTES = 5 * 1024 * 1024 + 64 * 1024
#: A batch answers at most this many messages: one request must not hold the server for long.
MAX_BATCH = 100
#: A body must keep arriving: this much time to start, then at least this rate (a trickled body is
#: closed rather than holding a connection and a buffer for minutes).
BODY_GRACE_S = 10.0
BODY_MIN_BYTES_PER_S = 16 * 1024
_JSON = "application/json"
_encoder = msgspec.json.Encoder()
#: After these the connection is closed at once. Not after 413: closing a socket with the refused body still
#: arriving makes the kernel reset it, and the client loses the answer; api/http_protocol.py reads and drops
#: the rest for DRAIN_TIMEOUT_S instead, then closes.
_CLOSING = (408,)
_VERSION_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encoder.encode(body), status_code=status, media_type=_JSON, headers=headers or {})


def _error(err: RpcError, request_id: Any = None) -> Response[bytes]:
    status = err.http_status or 200
    return _json(err.body(request_id), status, {"Connection": "close"} if status in _CLOSING else None)


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client and request.client.host else "unknown"


class McpEndpoint:
    def __init__(
        self,
        engine: Engine,
        dispatcher: Dispatcher,
        allowed_origins: tuple[str, ...],
        bind_host: str = "127.0.0.1",
        keys: KeyCache | None = None,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.dispatcher = dispatcher
        self.allowed_origins = allowed_origins
        self.bind_host = bind_host

    async def _gate(self, request: Request[Any, Any, Any]) -> ApiKey | Response[Any]:
        source = client_address(request)
        what = f"{request.method} /api/mcp"
        if not origin_allowed(request, self.allowed_origins, self.bind_host):
            # The tenant's own audit when the request carries one of its keys: it learns that its key
            # is used from a browser page it did not allow.
            key = await try_authenticate(self.engine, request)
            await self._audit_refusal(key, what, "denied", "forbidden_origin", source)
            return _json({"error": "forbidden_origin", "error_description": "this Origin is not allowed"}, 403)
        try:
            gate = await authenticate_key(self.engine, request, self.keys)
        except StoreUnavailable:
            return _error(RpcError(UNAVAILABLE, "the event store is unavailable; retry later", http_status=503))
        if isinstance(gate, Response):
            await self._audit_refusal(None, what, "denied", "invalid_token", source)
        return gate

    async def _audit_refusal(self, key: ApiKey | None, method: str, outcome: str, reason: str, source: str) -> None:
        try:
            await self.dispatcher.runner.guard.refused(
                key.tenant if key else None,
                actor_of(key) if key else None,
                method,
                outcome,
                reason=reason,
                source=source,
            )
        except Exception as exc:  # the call is refused either way; the log says the audit missed it
            log.error("audit of a refused call failed (%s)", type(exc).__name__)

    async def _refused(self, key: ApiKey, label: str, err: RpcError, source: str) -> None:
        try:
            await self.dispatcher.runner.refused(key, label, ProtocolError(err), source)
        except Exception as exc:
            log.error("audit of a refused call failed (%s)", type(exc).__name__)

    async def post(self, request: Request[Any, Any, Any]) -> Response[Any]:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        key = gate
        source = client_address(request)
        payload: Any = None
        label = "request"
        try:
            body = await _read_body(request)
            label = "parse_error"
            try:
                payload = msgspec.json.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8 in strings
                raise RpcError(PARSE_ERROR, "parse error: the body is not valid JSON", http_status=400) from None
            except RecursionError:
                raise RpcError(INVALID_REQUEST, "JSON nested too deeply", http_status=400) from None
            label = "invalid_request"
            header_version = request.headers.get("mcp-protocol-version")
            if header_version is not None and header_version not in versions.SUPPORTED:
                data: dict[str, Any] = {"supported": list(versions.SUPPORTED)}
                if _VERSION_SHAPE.fullmatch(header_version):
                    data["requested"] = header_version  # a date, nothing else is echoed
                raise RpcError(UNSUPPORTED_VERSION, "Unsupported protocol version", data, http_status=400)
            if isinstance(payload, list):
                label = "batch"
                return await self._batch(request, key, payload, header_version, source)
            msg = parse_message(payload)
            label = audit_label(msg.method, self.dispatcher.runner.registry)
            state = await self._state(request, key, msg, header_version, source)
            body_out, status, headers = await self._answer(state, msg)
        except RpcError as err:
            await self._refused(key, label, err, source)
            return _error(err, _request_id(payload))
        if body_out is None:
            return Response(b"", status_code=202, headers=headers)
        return _json(body_out, status, headers)

    async def _answer(self, state: CallState, msg: Message) -> tuple[dict[str, Any] | None, int, dict[str, str]]:
        """The JSON-RPC answer (None for a notification), its HTTP status and extra headers."""
        try:
            result = await self.dispatcher.handle(state, msg)
        except RpcError as err:
            return err.body(msg.id), err.http_status or 200, {}
        except StoreUnavailable:
            return RpcError(UNAVAILABLE, "the event store is unavailable; nothing was changed").body(msg.id), 200, {}
        except Exception as exc:  # never a traceback to the client
            log.error(
                "unexpected error in %s (%s)",
                audit_label(msg.method, self.dispatcher.runner.registry),
                type(exc).__name__,
                exc_info=bool(os.environ.get("LOCKZERO_DEBUG")),
            )
            return RpcError(INTERNAL_ERROR, "internal error; the call was not completed").body(msg.id), 200, {}
        if result is None:
            return None, 202, state.response_headers
        return result_body(msg.id, result), 200, state.response_headers

    async def _batch(
        self, request: Request[Any, Any, Any], key: ApiKey, payload: list[Any], header_version: str | None, source: str
    ) -> Response[Any]:
        version = header_version or versions.DEFAULT_HANDSHAKE
        session_id = request.headers.get("mcp-session-id")
        if session_id is not None:
            session = await self._session(session_id, key)
            version = header_version or session.protocol_version
        if version not in versions.BATCH_VERSIONS:
            raise RpcError(INVALID_REQUEST, f"JSON-RPC batches are not allowed in protocol {version}", http_status=400)
        if not payload:
            raise RpcError(INVALID_REQUEST, "empty batch", http_status=400)
        if len(payload) > MAX_BATCH:
            raise RpcError(
                INVALID_REQUEST,
                f"batch too long: at most {MAX_BATCH} messages per batch; split it",
                {"max_batch": MAX_BATCH},
                http_status=400,
            )
        out: list[dict[str, Any]] = []
        batch = IN_BATCH.set(True)
        try:
            for raw in payload:
                # Other requests run between the messages of a batch, not after all of them.
                await asyncio.sleep(0)
                label = "invalid_request"
                try:
                    msg = parse_message(raw)
                    label = audit_label(msg.method, self.dispatcher.runner.registry)
                    if msg.method == "initialize":
                        raise RpcError(INVALID_REQUEST, "initialize must not be part of a batch")
                    state = await self._state(request, key, msg, header_version, source)
                except RpcError as err:
                    await self._refused(key, label, err, source)
                    out.append(err.body(_request_id(raw)))
                    continue
                answer, _, _ = await self._answer(state, msg)
                if answer is not None:
                    out.append(answer)
        finally:
            IN_BATCH.reset(batch)
        return _json(out) if out else Response(b"", status_code=202)

    async def _session(self, session_id: str, key: ApiKey) -> Session:
        try:
            session = await self.dispatcher.sessions.get(session_id, key.key_id)
        except StoreUnavailable:
            raise RpcError(UNAVAILABLE, "the event store is unavailable; retry later", http_status=503) from None
        if session is None:
            raise RpcError(INVALID_REQUEST, "session not found or ended; initialize again", http_status=404)
        return session

    async def _state(
        self, request: Request[Any, Any, Any], key: ApiKey, msg: Message, header_version: str | None, source: str
    ) -> CallState:
        meta = msg.params.get("_meta") if isinstance(msg.params.get("_meta"), dict) else None
        meta_version = meta.get(versions.META_PROTOCOL_VERSION) if meta else None
        if header_version == versions.MODERN:
            self._check_modern_headers(request, msg, meta_version)
            return CallState(key, "modern", versions.MODERN, source=source)
        if meta_version == versions.MODERN:
            raise RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header is required", http_status=400)
        session_id = request.headers.get("mcp-session-id")
        if msg.method == "initialize":
            return CallState(key, "handshake", header_version or versions.DEFAULT_HANDSHAKE, source=source)
        if session_id is None:
            if header_version is not None and not msg.is_notification:
                raise RpcError(
                    INVALID_REQUEST, "Mcp-Session-Id header is required; call initialize first", http_status=400
                )
            return CallState(key, "direct", header_version or versions.DEFAULT_HANDSHAKE, source=source)
        session = await self._session(session_id, key)
        if header_version is not None and header_version != session.protocol_version:
            raise RpcError(
                INVALID_REQUEST,
                f"the MCP-Protocol-Version header does not match the session's {session.protocol_version}",
                http_status=400,
            )
        return CallState(key, "handshake", session.protocol_version, session, source=source)

    @staticmethod
    def _check_modern_headers(request: Request[Any, Any, Any], msg: Message, meta_version: object) -> None:
        if msg.is_response:
            return
        header_method = request.headers.get("mcp-method")
        if header_method != msg.method:
            raise RpcError(
                HEADER_MISMATCH,
                "Header mismatch: the Mcp-Method header does not match the body's method",
                http_status=400,
            )
        if msg.method == "tools/call":
            header_name, body_name = request.headers.get("mcp-name"), msg.params.get("name")
            if header_name != body_name:
                raise RpcError(
                    HEADER_MISMATCH,
                    "Header mismatch: the Mcp-Name header does not match the body's params.name",
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

    async def get(self, request: Request[Any, Any, Any]) -> Response[Any]:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        # No server-initiated messages: every answer comes back on its POST.
        return Response(b"", status_code=405, headers={"Allow": "POST, DELETE"})

    async def delete(self, request: Request[Any, Any, Any]) -> Response[Any]:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        session_id = request.headers.get("mcp-session-id")
        if session_id is None:
            return _error(RpcError(INVALID_REQUEST, "Mcp-Session-Id header is required", http_status=400))
        try:
            ended = await self.dispatcher.sessions.close(session_id, gate.key_id)
        except StoreUnavailable:
            return _error(RpcError(UNAVAILABLE, "the event store is unavailable; retry later", http_status=503))
        if not ended:
            return _error(RpcError(INVALID_REQUEST, "session not found or already ended", http_status=404))
        return Response(b"", status_code=204)


def _too_large() -> RpcError:
    return RpcError(
        PAYLOAD_TOO_LARGE,
        "request body above 5 MiB; split the text and scan it in parts",
        {"max_bytes": MAX_BODY_BYTES},
        http_status=413,
    )


async def _read_body(request: Request[Any, Any, Any]) -> bytes:
    """The body, read as it arrives: refused once it passes the limit (never buffered beyond it) or
    when it arrives slower than BODY_MIN_BYTES_PER_S after BODY_GRACE_S."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    while True:
        budget = started + BODY_GRACE_S + size / BODY_MIN_BYTES_PER_S - loop.time()
        try:
            if budget <= 0:
                raise TimeoutError
            async with asyncio.timeout(budget):
                chunk = await anext(stream)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise RpcError(
                INVALID_REQUEST, "the request body arrived too slowly; the connection is closed", http_status=408
            ) from None
        except HTTPException:  # the client went away mid-body
            raise RpcError(INVALID_REQUEST, "the request body was cut short", http_status=400) from None
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(raw: Any) -> Any:
    if isinstance(raw, dict):
        rid = raw.get("id")
        if isinstance(rid, str | int) and not isinstance(rid, bool):
            return rid
    return None
