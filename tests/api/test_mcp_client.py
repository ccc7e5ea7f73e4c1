"""The official MCP Python SDK client against the real server, in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.api.conftest import Tenant
from tests.api.support import ALL_TOOLS, READ_TOOLS, SCAN_TOOLS, Key, Server


@asynccontextmanager
async def mcp_client(server: Server, key: Key, mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=key.auth, timeout=30.0) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client


ERAS = [pytest.param("legacy", "2025-11-25", id="legacy"), pytest.param("auto", "2026-07-28", id="auto-modern")]


@pytest.mark.parametrize(("mode", "expected_version"), ERAS)
async def test_sdk_negotiates_the_era(shared: Tenant, mode: str, expected_version: str) -> None:
    async with mcp_client(shared.server, shared.key, mode) as c:
        assert c.protocol_version == expected_version
        assert c.server_info is not None and c.server_info.name == "lockzero"


@pytest.mark.parametrize(("mode", "expected_version"), ERAS)
async def test_sdk_lists_every_described_tool(shared: Tenant, mode: str, expected_version: str) -> None:
    async with mcp_client(shared.server, shared.key, mode) as c:
        tools = (await c.list_tools()).tools
    assert sorted(t.name for t in tools) == sorted(ALL_TOOLS)
    for t in tools:
        assert t.input_schema.get("type") == "object", t.name
        assert t.output_schema is not None and t.output_schema.get("type") == "object", t.name
        assert t.description and len(t.description) > 40, t.name
        assert t.annotations is not None, t.name
        reads = t.name in READ_TOOLS
        assert t.annotations.read_only_hint is reads, t.name
        assert t.annotations.destructive_hint is (not reads and t.name not in SCAN_TOOLS), t.name
        assert isinstance(t.annotations.idempotent_hint, bool), t.name
        assert isinstance(t.annotations.open_world_hint, bool), t.name
    by_name = {t.name: t for t in tools}
    # The schemas describe the real arguments: the per-secret tools need a secret_id.
    for name in ("get_secret_metadata", "check_rotation_policy", "get_rotation_history"):
        assert "secret_id" in by_name[name].input_schema.get("required", []), name
    assert "secrets" in by_name["list_secrets"].output_schema["properties"]


@pytest.mark.parametrize(("mode", "expected_version"), ERAS)
async def test_sdk_list_secrets_matches_cli(shared: Tenant, mode: str, expected_version: str) -> None:
    cli_page = shared.server.secret_list(shared.name)
    assert [s["secret_id"] for s in cli_page["secrets"]] == sorted(shared.secrets)
    async with mcp_client(shared.server, shared.key, mode) as c:
        r = await c.call_tool("list_secrets", {})
    assert r.is_error is False
    assert r.structured_content == cli_page
    # The same JSON as a text block.
    assert r.content[0].type == "text"
    assert json.loads(r.content[0].text) == r.structured_content
    labels = {s["secret_id"]: s["labels"] for s in r.structured_content["secrets"]}
    assert labels == {"prod/db/password": {"team": "payments"}, "staging/api-token": {}}


@pytest.mark.parametrize(("mode", "expected_version"), ERAS)
async def test_sdk_secret_metadata_and_unknown_secret(shared: Tenant, mode: str, expected_version: str) -> None:
    async with mcp_client(shared.server, shared.key, mode) as c:
        r = await c.call_tool("get_secret_metadata", {"secret_id": "prod/db/password"})
        missing = await c.call_tool("get_secret_metadata", {"secret_id": "prod/never/existed"})
    assert r.is_error is False, r
    meta = r.structured_content
    assert meta is not None
    assert meta["secret_id"] == "prod/db/password"
    assert meta["provider"] == "generated"
    assert meta["environment"] == "prod"
    assert meta["labels"] == {"team": "payments"}
    assert meta["status"] == "active"
    assert meta["current_version"] == "v1"
    assert meta["version_arn"] == f"arn:lockzero:secrets:{shared.name}:secret:prod/db/password:v1"
    assert json.loads(r.content[0].text) == meta

    assert missing.is_error is True
    assert missing.structured_content is not None
    assert missing.structured_content["error"]["code"] == -32010
    assert "prod/never/existed" not in missing.structured_content["error"]["message"]  # never echoed
    assert json.loads(missing.content[0].text) == missing.structured_content
