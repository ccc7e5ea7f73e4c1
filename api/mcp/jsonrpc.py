"""JSON-RPC 2.0 messages: validation, responses and the error codes (SPEC §3)."""

from __future__ import annotations

from typing import Any

import msgspec

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022
RATE_LIMITED = -32014
PAYLOAD_TOO_LARGE = -32015
UNAVAILABLE = -32016

RequestId = str | int


class RpcError(Exception):
    """A JSON-RPC error answer; ``http_status`` is what the transport sends with it."""

    def __init__(self, code: int, message: str, data: Any = None, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status

    def body(self, request_id: RequestId | None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


class Message(msgspec.Struct, frozen=True):
    """One inbound message: a request (has id), a notification (no id) or a client response."""

    method: str | None
    id: RequestId | None
    params: dict[str, Any]
    is_response: bool = False

    @property
    def is_notification(self) -> bool:
        return self.id is None and not self.is_response


def parse_message(raw: Any) -> Message:
    if not isinstance(raw, dict):
        raise RpcError(INVALID_REQUEST, "each JSON-RPC message must be an object", http_status=400)
    if raw.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', http_status=400)
    rid = raw.get("id")
    if "id" in raw and (rid is None or isinstance(rid, bool) or not isinstance(rid, str | int)):
        raise RpcError(INVALID_REQUEST, 'invalid request: "id" must be a string or an integer', http_status=400)
    method = raw.get("method")
    if method is None and ("result" in raw or "error" in raw):
        return Message(None, rid, {}, is_response=True)
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, 'invalid request: "method" must be a non-empty string', http_status=400)
    params = raw.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, '"params" must be an object', http_status=400)
    return Message(method, rid, params)


def result_body(request_id: RequestId | None, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}
