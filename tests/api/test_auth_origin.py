"""Bearer authentication (401 + WWW-Authenticate, no OAuth metadata) and the Origin check."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import BACKENDS, Tenant, running_server
from tests.api.support import Server

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
CHALLENGE = 'Bearer error="invalid_token"'


def _assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers.get("www-authenticate") == CHALLENGE
    assert "resource_metadata" not in r.headers.get("www-authenticate", "")
    assert r.headers.get("content-type", "").startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and body.get("error") == "invalid_token", body


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Token lz_mcp_whatever",
        "Bearer garbage",
        "Bearer lz_mcp_" + "A" * 43,
        "Bearer lz_svc_" + "A" * 43,
        "Bearer lz_mcp_" + "A" * 300,
    ],
)
def test_bad_credentials_get_401(shared: Tenant, authorization: str | None) -> None:
    s = shared.server
    headers = {} if authorization is None else {"Authorization": authorization}
    _assert_401(s.post(PING, headers=headers))
    _assert_401(s.http.get(s.mcp_url, headers=headers))
    _assert_401(s.http.delete(s.mcp_url, headers={**headers, "Mcp-Session-Id": "x"}))


def test_wrong_scheme_with_a_valid_token_gets_401(shared: Tenant) -> None:
    _assert_401(shared.server.post(PING, headers={"Authorization": f"Basic {shared.key.token}"}))
    _assert_401(shared.server.post(PING, headers={"Authorization": shared.key.token}))


def test_bearer_scheme_is_case_insensitive(shared: Tenant) -> None:
    r = shared.server.post(PING, headers={"Authorization": f"bearer {shared.key.token}"})
    assert r.status_code == 200, r.text


def test_revoked_key_gets_401_at_once(shared: Tenant) -> None:
    s = shared.server
    key = s.key(shared.name)
    assert s.post(PING, key=key).status_code == 200
    sid, _ = s.initialize(key, "2025-11-25")
    revoked = s.revoke(key)
    assert revoked["key_id"] == key.key_id
    _assert_401(s.post(PING, key=key))
    _assert_401(s.call(key, "list_secrets", {}))
    _assert_401(s.post(PING, key=key, headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}))
    # Other keys of the tenant keep working.
    assert s.post(PING, key=shared.key).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/api/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ],
)
def test_no_oauth_metadata_is_advertised(shared: Tenant, path: str) -> None:
    r = shared.server.http.get(shared.server.base + path)
    assert r.status_code == 404


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil.example", "file://"])
def test_foreign_origin_is_403(shared: Tenant, origin: str) -> None:
    s = shared.server
    r = s.post(PING, key=shared.key, headers={"Origin": origin})
    assert r.status_code == 403, r.text
    assert r.json()  # a JSON body
    assert s.http.get(s.mcp_url, headers={**shared.key.auth, "Origin": origin}).status_code == 403
    assert s.http.delete(s.mcp_url, headers={**shared.key.auth, "Origin": origin}).status_code == 403


def test_own_origin_is_allowed(shared: Tenant) -> None:
    s = shared.server
    r = s.post(PING, key=shared.key, headers={"Origin": s.base})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module", params=BACKENDS)
def origin_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"origins-{request.param}")
    with running_server(
        request.param, workdir, LOCKZERO_ALLOWED_ORIGINS="https://app.example, https://console.example"
    ) as s:
        yield s


def test_allowed_origins_are_accepted(origin_server: Server) -> None:
    s = origin_server
    t = s.tenant()
    key = s.key(t)
    for origin in ("https://app.example", "https://console.example"):
        r = s.post(PING, key=key, headers={"Origin": origin})
        assert r.status_code == 200, (origin, r.text)
        assert r.json()["result"] == {}
    assert s.post(PING, key=key, headers={"Origin": "https://evil.example"}).status_code == 403
    assert s.post(PING, key=key, headers={"Origin": "https://app.example.evil.example"}).status_code == 403
