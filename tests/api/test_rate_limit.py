"""Per-key rate limit (LOCKZERO_RATE_LIMIT=1 → 1 call/s, burst 5): -32014 with data.retry_after_ms."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import BACKENDS, running_server
from tests.api.support import Server


@pytest.fixture(scope="module", params=BACKENDS)
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        request.param, tmp_path_factory.mktemp(f"ratelimit-{request.param}"), LOCKZERO_RATE_LIMIT="1"
    ) as s:
        yield s


def _hammer(s: Server, body: dict[str, Any], key: Any, n: int = 20) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        r = s.post({**body, "id": i}, key=key)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def test_direct_calls_get_rate_limited(limited: Server) -> None:
    s = limited
    t = s.tenant()
    s.secret(t, "prod/x")
    key, other = s.key(t), s.key(t)
    answers = _hammer(s, {"jsonrpc": "2.0", "method": "list_secrets", "params": {}}, key)
    ok = [a for a in answers if "result" in a]
    limited_answers = [a for a in answers if "error" in a]
    assert 1 <= len(ok) <= 7, answers  # the burst (5), plus what refilled meanwhile
    assert limited_answers, "20 rapid calls were never limited"
    assert all(a["result"]["secrets"][0]["secret_id"] == "prod/x" for a in ok)
    for a in limited_answers:
        err = a["error"]
        assert err["code"] == -32014, a
        assert isinstance(err["data"]["retry_after_ms"], int) and err["data"]["retry_after_ms"] > 0, a
        assert err["data"]["retry_after_ms"] <= 1000, a
    # The first refusal comes after the allowed ones, not interleaved at random.
    first_refusal = next(i for i, a in enumerate(answers) if "error" in a)
    assert first_refusal >= 4, answers
    # The limit is per key: another key of the same tenant is not affected.
    assert "result" in s.call(other, "list_secrets", {}).json()


def test_tools_call_rate_limit_is_an_error_result(limited: Server) -> None:
    s = limited
    t = s.tenant()
    key = s.key(t)
    answers = _hammer(
        s, {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "list_secrets", "arguments": {}}}, key
    )
    refused = [a["result"] for a in answers if a["result"]["isError"]]
    assert refused, answers
    for result in refused:
        err = result["structuredContent"]["error"]
        assert err["code"] == -32014
        assert err["data"]["retry_after_ms"] > 0
    # The refusals are audited as errors of this key.
    time.sleep(1.2)  # let one token refill so the audit read itself is allowed
    page = s.result(key, "get_audit_log", {"actor_id": key.key_id, "method": "list_secrets", "limit": 200})
    outcomes = [e["outcome"] for e in page["events"]]
    assert len(outcomes) == 20
    assert outcomes.count("ok") == 20 - len(refused)


@pytest.mark.parametrize("method", ["ping", "tools/list", "initialize", "server/discover"])
def test_protocol_methods_count_against_the_limit(limited: Server, method: str) -> None:
    """ping, tools/list and initialize cost a token like any call: a key cannot flood with them."""
    key = limited.key(limited.tenant())
    params = {"protocolVersion": "2025-11-25", "capabilities": {}} if method == "initialize" else {}
    answers = _hammer(limited, {"jsonrpc": "2.0", "method": method, "params": params}, key)
    refused = [a for a in answers if "error" in a]
    assert refused, f"20 rapid {method} calls were never limited"
    assert all(a["error"]["code"] == -32014 and a["error"]["data"]["retry_after_ms"] > 0 for a in refused), refused
    assert "result" in answers[0], answers[0]
