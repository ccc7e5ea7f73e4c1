"""detect_exposure through the real `lockzero serve`: direct JSON-RPC and MCP tools/call, limits,
argument errors, read-only and scoped keys, and the value absent from every answer, the audit rows,
the stored events and the server's output."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.api.support import Key, Server, jsonrpc_error, start_server
from tests.conftest import fresh_pg_database
from tests.detection.corpus import Maker
from tests.detection.test_managed import b64, password

FIVE_MIB = 5 * 1024 * 1024


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"detect-{request.param}")
    if request.param == "sqlite":
        s = start_server("sqlite", workdir, f"sqlite:///{workdir / 'lockzero.db'}")
        try:
            yield s
        finally:
            s.stop()
        return
    with fresh_pg_database() as url:
        s = start_server("postgresql", workdir, url)
        try:
            yield s
        finally:
            s.stop()


def dump_database(s: Server) -> str:
    """Every row of every table of the server's store, as text."""
    out: list[str] = []
    if s.backend == "sqlite":
        with sqlite3.connect(Path(s.database_url.removeprefix("sqlite:///"))) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                out.extend(repr(row) for row in conn.execute(f'SELECT * FROM "{t}"'))
        return "\n".join(out)
    with psycopg.connect(s.database_url) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
        ]
        for t in tables:
            out.extend(repr(row) for row in conn.execute(f'SELECT * FROM "{t}"').fetchall())
    return "\n".join(out)


def test_listed_for_read_write_and_read_only_keys(server: Server) -> None:
    t = server.tenant()
    for key in (server.key(t), server.key(t, read_only=True)):
        tools = {x["name"]: x for x in server.result(key, "tools/list")["tools"]}
        tool = tools["detect_exposure"]
        assert tool["annotations"] == {
            "title": "Detect exposed credentials",
            "readOnlyHint": False,
            "destructiveHint": False,
            "idempotentHint": False,
            "openWorldHint": False,
        }
        assert tool["inputSchema"]["required"] == ["text"]
        assert {"findings", "incident_ids", "scanned_bytes"} <= set(tool["outputSchema"]["properties"])


def test_direct_call_and_tools_call_find_a_managed_leak(server: Server) -> None:
    s = server
    t = s.tenant()
    key, ro = s.key(t), s.key(t, read_only=True)
    value = password(random.Random(4242))
    s.secret(t, "prod/db/password", value=value.encode())
    text = f"step 1\nexport DB_PASSWORD='{value}'\n  password: {b64(value)}\n"
    bodies: list[str] = []

    r = s.call(key, "detect_exposure", {"text": text, "source": "ci/build/981"})
    bodies.append(r.text)
    result = r.json()["result"]
    managed = [f for f in result["findings"] if f["managed"]]
    assert [(f["line"], f["column"], f["secret_id"]) for f in managed] == [
        (2, len("export DB_PASSWORD='") + 1, "prod/db/password"),
        (3, len("  password: ") + 1, "prod/db/password"),
    ]
    assert all(f["recommended_action"] == "rotate" and f["confidence"] == 1.0 for f in managed)
    assert result["scanned_bytes"] == len(text.encode())
    (incident,) = result["incident_ids"]

    # The read-only key may scan too, and joins the same incident; so does the MCP tools/call path.
    r = s.call(ro, "tools/call", {"name": "detect_exposure", "arguments": {"text": f"again: {value}"}})
    bodies.append(r.text)
    call = r.json()["result"]
    assert call["isError"] is False
    assert json.loads(call["content"][0]["text"]) == call["structuredContent"]
    assert call["structuredContent"]["incident_ids"] == [incident]

    r = s.modern(key, "tools/call", {"name": "detect_exposure", "arguments": {"text": f"x {value} y"}})
    bodies.append(r.text)
    assert r.json()["result"]["structuredContent"]["incident_ids"] == [incident]

    r = s.call(key, "get_active_incidents", {"kind": "leaked_credential"})
    bodies.append(r.text)
    assert [i["incident_id"] for i in r.json()["result"]["incidents"]] == [incident]
    r = s.call(key, "get_audit_log", {"method": "detect_exposure"})
    bodies.append(r.text)
    audit = r.json()["result"]["events"]
    assert len(audit) == 3 and {e["secret_id"] for e in audit} == {"prod/db/password"}
    assert all(e["outcome"] == "ok" and "findings" in e["detail"] for e in audit)

    for form in (value, b64(value), value[:8]):
        for body in bodies:
            assert form not in body
        assert form not in dump_database(s)
        assert form not in s.logs()


def test_format_findings_for_a_scoped_key(server: Server) -> None:
    s = server
    t = s.tenant()
    scoped = s.key(t, scopes=("staging/*",))
    token = Maker(random.Random(7)).anthropic()
    s.secret(t, "prod/anthropic/key", value=token.encode())
    result = s.result(scoped, "detect_exposure", {"text": f"ANTHROPIC_API_KEY={token}\n"})
    (finding,) = result["findings"]
    assert finding["detector"] == "anthropic_api_key"
    assert (finding["managed"], finding["secret_id"], finding["recommended_action"]) == (
        False,
        None,
        "register_and_rotate",
    )
    assert (finding["line"], finding["column"]) == (1, len("ANTHROPIC_API_KEY=") + 1)
    assert finding["redacted"] == "sk-a…AA" and result["incident_ids"] == []


def test_payload_limit_is_5_mib(server: Server) -> None:
    s = server
    key = s.key(s.tenant())
    ok = s.result(key, "detect_exposure", {"text": "a" * FIVE_MIB})
    assert ok["scanned_bytes"] == FIVE_MIB and ok["findings"] == []
    err = jsonrpc_error(s.call(key, "detect_exposure", {"text": "a" * (FIVE_MIB + 1)}), -32015)
    assert "5 MiB" in err["message"]
    # Multi-byte characters count as bytes.
    jsonrpc_error(s.call(key, "detect_exposure", {"text": "é" * (FIVE_MIB // 2 + 1)}), -32015)
    r = s.call(key, "tools/call", {"name": "detect_exposure", "arguments": {"text": "b" * (FIVE_MIB + 1)}})
    result = r.json()["result"]
    assert result["isError"] is True and result["structuredContent"]["error"]["code"] == -32015


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"text": 42},
        {"text": ["a"]},
        {"text": None},
        {"text": "x", "source": 5},
        {"text": "x", "source": "s" * 513},
        {"text": "x", "extra": True},
    ],
)
def test_wrong_arguments_are_invalid_params(server: Server, arguments: dict[str, Any]) -> None:
    key = server.key(server.tenant())
    jsonrpc_error(server.call(key, "detect_exposure", arguments), -32602)
    r = server.call(key, "tools/call", {"name": "detect_exposure", "arguments": arguments})
    result = r.json()["result"]
    assert result["isError"] is True and result["structuredContent"]["error"]["code"] == -32602


def test_every_response_is_free_of_the_value_even_on_errors(server: Server) -> None:
    s = server
    t = s.tenant()
    key: Key = s.key(t)
    value = "Canary-" + "Qm3x" * 5
    s.secret(t, "prod/canary", value=value.encode())
    answers = [
        s.call(key, "detect_exposure", {"text": value, "bogus": value}).text,
        s.call(key, "detect_exposure", {"text": value, "source": value}).text,
        s.call(key, "detect_exposure", {"text": value * 300_000}).text,
    ]
    assert "-32602" in answers[0] and "-32015" in answers[2]
    # A source that contains the value is not recorded.
    assert json.loads(answers[1])["result"]["findings"][0]["secret_id"] == "prod/canary"
    for text in [*answers, dump_database(s), s.logs()]:
        assert value not in text
