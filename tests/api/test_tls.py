"""`lockzero serve` over HTTPS: the official MCP SDK client against a certificate the test makes, TLS 1.2+
only, HSTS on every answer, and one clear line for a bad certificate setting."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.api.support import REPO, Server, new_master_key
from tests.api.tls_support import TlsFiles, make_certificates


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKZERO_", "OTEL_"))}
    env.update(
        LOCKZERO_DATABASE_URL=f"sqlite:///{workdir / 'lockzero.db'}",
        LOCKZERO_MASTER_KEY=new_master_key(),
        LOCKZERO_RATE_LIMIT="0",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _trusting(files: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(files.ca))


def https_server(workdir: Path, files: TlsFiles, *, flags: bool) -> Server:
    """Started with --tls-cert/--tls-key (flags) or LOCKZERO_TLS_CERT/LOCKZERO_TLS_KEY."""
    workdir.mkdir(parents=True, exist_ok=True)
    if flags:
        env, args = _env(workdir), ("--tls-cert", str(files.cert), "--tls-key", str(files.key))
    else:
        env, args = _env(workdir, LOCKZERO_TLS_CERT=str(files.cert), LOCKZERO_TLS_KEY=str(files.key)), ()
    server = Server(
        "sqlite",
        f"sqlite:///{workdir / 'lockzero.db'}",
        workdir,
        env,
        http=httpx.Client(timeout=30.0, verify=_trusting(files)),
        serve_args=args,
        scheme="https",
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls(certs: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = https_server(tmp_path_factory.mktemp("serve-tls"), certs, flags=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_client_over_https(tls: Server, certs: TlsFiles, mode: str) -> None:
    tenant = tls.tenant("tls")
    key = tls.key(tenant)
    tls.secret(tenant, "prod/tls/token")
    async with (
        httpx2.AsyncClient(headers=key.auth, timeout=30.0, verify=_trusting(certs)) as http,
        Client(streamable_http_client(tls.mcp_url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        assert tls.mcp_url.startswith("https://")
        listed = await client.call_tool("list_secrets", {})
        rotated = await client.call_tool("rotate_secret", {"secret_id": "prod/tls/token", "reason": "tls test"})
    assert listed.is_error is False, listed
    assert listed.structured_content is not None
    assert [s["secret_id"] for s in listed.structured_content["secrets"]] == ["prod/tls/token"]
    assert rotated.is_error is False, rotated
    assert rotated.structured_content is not None and rotated.structured_content["to_version"] == "v2"


def test_every_answer_carries_hsts(tls: Server) -> None:
    for r in (
        tls.http.get(f"{tls.base}/healthz"),
        tls.http.post(tls.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}),  # 401: no key
        tls.http.get(f"{tls.base}/no-such-page"),
    ):
        assert r.headers.get("strict-transport-security") == "max-age=63072000; includeSubDomains", r


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        return tls_sock.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_2_and_1_3_only(tls: Server, certs: TlsFiles) -> None:
    for version, name in ((ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
        context = _trusting(certs)
        context.minimum_version = context.maximum_version = version
        assert _handshake(tls.port, context) == name
    old = _trusting(certs)
    # The client would happily speak TLS 1.0/1.1 (security level 0 lets OpenSSL offer them); the server refuses.
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        _handshake(tls.port, old)


def test_plain_http_and_untrusted_clients_get_nothing(tls: Server) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls.port}/healthz", timeout=5)
    # Without the test CA the certificate is not trusted: the server really presents the one the test made.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls.base}/healthz", timeout=5)


def test_flags_serve_https_too(certs: TlsFiles, tmp_path: Path) -> None:
    server = https_server(tmp_path / "flags", certs, flags=True)
    try:
        r = server.http.get(f"{server.base}/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert "listening on https://" in server.stdout_path.read_text()
    finally:
        server.stop()


def _serve_fails(workdir: Path, *args: str, **env: str) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "lockzero.api.cli.main", "serve", *args],
        cwd=workdir,
        env=_env(workdir, LOCKZERO_PORT="1", **env),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    # Nothing was created: a refused start leaves no store behind.
    assert not (workdir / "lockzero.db").exists()
    return lines[0]


def test_bad_tls_settings_fail_in_one_line(certs: TlsFiles, tmp_path: Path) -> None:
    other = make_certificates(tmp_path / "other")
    line = _serve_fails(tmp_path / "a", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(certs.key))
    assert "--tls-cert" in line and "cannot read" in line, line
    line = _serve_fails(tmp_path / "b", LOCKZERO_TLS_CERT=str(certs.cert))
    assert "LOCKZERO_TLS_KEY" in line, line
    line = _serve_fails(tmp_path / "c", "--tls-cert", str(certs.cert), "--tls-key", str(other.key))
    assert "--tls-cert / --tls-key" in line and "matching" in line, line
    line = _serve_fails(tmp_path / "d", LOCKZERO_TLS_CERT=str(certs.ca), LOCKZERO_TLS_KEY=str(certs.ca))
    assert "LOCKZERO_TLS_CERT / LOCKZERO_TLS_KEY" in line, line
