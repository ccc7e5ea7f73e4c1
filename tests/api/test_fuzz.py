"""Hypothesis fuzzing of POST /api/mcp with a valid key: never a 5xx, always JSON, never a traceback."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Tenant
from tests.api.strategies import json_scalars
from tests.api.support import ALL_TOOLS, ALL_VERSIONS, META_VERSION, READ_TOOLS, Key

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

scalars = json_scalars(40)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)

METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "resources/list",
    *ALL_TOOLS,
]
ARG_NAMES = [
    "secret_id",
    "limit",
    "cursor",
    "environment",
    "provider",
    "status",
    "label",
    "overdue_only",
    "kind",
    "severity",
    "actor_id",
    "method",
    "outcome",
    "since",
    "until",
    "reason",
    "to_version",
    "idempotency_key",
    "rotation_id",
    "text",
    "source",
]
arg_values = (
    json_values
    | st.sampled_from(["prod/db/password", "staging/api-token", "prod/*", "", "a" * 257, "2026-01-01T00:00:00Z"])
    | st.integers(min_value=-5, max_value=300)
    | st.sampled_from(["ok", "denied", "invalid", "error", "leaked_credential", "critical"])
)
arguments = st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=8), arg_values, max_size=5)
meta = st.fixed_dictionaries({META_VERSION: st.sampled_from(ALL_VERSIONS) | scalars})
params = (
    arguments
    | st.fixed_dictionaries(
        {"name": st.sampled_from(READ_TOOLS) | st.text(max_size=10)},
        optional={"arguments": arguments | json_values, "_meta": meta | json_values},
    )
    | st.fixed_dictionaries(
        {"protocolVersion": st.sampled_from(ALL_VERSIONS) | scalars},
        optional={"capabilities": json_values, "clientInfo": json_values},
    )
    | json_values
)
rpc_messages = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | scalars, "method": st.sampled_from(METHODS) | st.text(max_size=20) | scalars},
    optional={"id": st.integers() | st.text(max_size=10) | json_values, "params": params},
)
bodies = json_values | rpc_messages | st.lists(rpc_messages, max_size=4)

SPEC_CODES = (-32602, -32010, -32011, -32012, -32013, -32014, -32015, -32016, -32603)
HEADER_VALUES = st.sampled_from(["", "x", "1999-01-01", *ALL_VERSIONS, *METHODS, "list_secrets", "no-such-session"])
header_sets = st.fixed_dictionaries(
    {},
    optional={
        "MCP-Protocol-Version": HEADER_VALUES,
        "Mcp-Method": HEADER_VALUES,
        "Mcp-Name": HEADER_VALUES,
        "Mcp-Session-Id": HEADER_VALUES,
    },
)


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text, r.text[:2000]
    assert 'File "' not in r.text, r.text[:2000]
    if r.status_code == 202:
        assert r.content == b""
        return
    if r.status_code == 405:
        return
    body = r.json()  # raises if not JSON
    if isinstance(body, dict) and "jsonrpc" in body:
        assert body["jsonrpc"] == "2.0"
        assert ("result" in body) != ("error" in body), body
        if "error" in body:
            assert isinstance(body["error"]["code"], int) and isinstance(body["error"]["message"], str)


@pytest.fixture(scope="module")
def fuzz_key(shared: Tenant) -> Key:
    return shared.key


@FUZZ
@given(body=bodies, headers=header_sets)
def test_fuzz_json_bodies(shared: Tenant, fuzz_key: Key, body: Any, headers: dict[str, str]) -> None:
    _check(shared.server.post(content=json.dumps(body).encode(), key=fuzz_key, headers=headers))


@FUZZ
@given(body=rpc_messages)
def test_fuzz_jsonrpc_messages_direct(shared: Tenant, fuzz_key: Key, body: dict[str, Any]) -> None:
    r = shared.server.post(body, key=fuzz_key)
    _check(r)
    if r.status_code == 200:
        answer = r.json()
        assert isinstance(answer, dict), answer
        # A request with a usable id is answered with that id.
        rid = body.get("id")
        if isinstance(rid, int | str) and not isinstance(rid, bool) and "error" not in answer:
            assert answer["id"] == rid


@FUZZ
@given(tool=st.sampled_from(READ_TOOLS), args=arguments, modern=st.booleans())
def test_fuzz_tool_arguments(shared: Tenant, fuzz_key: Key, tool: str, args: dict[str, Any], modern: bool) -> None:
    s = shared.server
    if modern:
        r = s.modern(fuzz_key, "tools/call", {"name": tool, "arguments": args})
    else:
        r = s.call(fuzz_key, "tools/call", {"name": tool, "arguments": args})
    _check(r)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert isinstance(result["isError"], bool)
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    if result["isError"]:
        # One of the documented codes (SPEC §3), or -32603.
        assert result["structuredContent"]["error"]["code"] in SPEC_CODES, result


@FUZZ
@given(raw=st.binary(max_size=400))
def test_fuzz_random_bytes(shared: Tenant, fuzz_key: Key, raw: bytes) -> None:
    r = shared.server.post(content=raw, key=fuzz_key)
    _check(r)


@FUZZ
@given(raw=st.binary(max_size=200), headers=header_sets)
def test_fuzz_random_bytes_after_valid_prefix(
    shared: Tenant, fuzz_key: Key, raw: bytes, headers: dict[str, str]
) -> None:
    prefix = b'{"jsonrpc":"2.0","id":1,"method":"list_secrets","params":'
    _check(shared.server.post(content=prefix + raw, key=fuzz_key, headers=headers))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 2000 + b"]" * 2000,
        b'{"jsonrpc":"2.0","id":1,"method":"list_secrets","params":{"label":' + b"[" * 2000 + b"]" * 2000 + b"}}",
    ],
    ids=["deep-array", "deep-params"],
)
def test_deeply_nested_json_is_a_client_error(shared: Tenant, raw: bytes) -> None:
    r = shared.server.post(content=raw, key=shared.key)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"]["code"] in (-32700, -32600)


#: Codes a JSON-RPC answer may carry: the protocol's, the MCP transport's and the product's (SPEC §3).
ANY_CODES = (-32700, -32600, -32601, -32602, -32603, -32020, -32021, -32022, *SPEC_CODES)


@FUZZ
@given(batch=st.lists(rpc_messages | json_values, min_size=1, max_size=12))
def test_fuzz_batches(shared: Tenant, fuzz_key: Key, batch: list[Any]) -> None:
    """A batch answers each request (with its id) and nothing else; never a 5xx, never a traceback."""
    r = shared.server.post(content=json.dumps(batch).encode(), key=fuzz_key)
    _check(r)
    if r.status_code != 200:
        return
    answers = r.json()
    assert isinstance(answers, list) and 1 <= len(answers) <= len(batch), answers
    for answer in answers:
        assert answer["jsonrpc"] == "2.0" and ("result" in answer) != ("error" in answer), answer
        if "error" in answer:
            assert answer["error"]["code"] in ANY_CODES, answer
    ids = [m.get("id") for m in batch if isinstance(m, dict)]
    for answer in answers:
        if answer["id"] is not None:
            assert answer["id"] in ids, (answer, ids)


@FUZZ
@given(method=st.sampled_from(METHODS), params=params, rid=st.integers(min_value=1, max_value=10**6))
def test_fuzz_every_method(shared: Tenant, fuzz_key: Key, method: str, params: Any, rid: int) -> None:
    """Each method (protocol, notification, every tool) with random params: a known code or a result."""
    r = shared.server.post({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}, key=fuzz_key)
    _check(r)
    if r.status_code == 202:
        return
    answer = r.json()
    if "error" in answer:
        assert answer["error"]["code"] in ANY_CODES, answer
    else:
        assert answer["id"] == rid, answer
