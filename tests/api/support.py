"""Helpers for the HTTP integration tests: a real `lockzero serve` subprocess, the real CLI, raw JSON-RPC."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
MODERN = "2026-07-28"
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
ALL_VERSIONS = (MODERN, *HANDSHAKE_VERSIONS)
META_VERSION = "io.modelcontextprotocol/protocolVersion"
READ_TOOLS = (
    "list_secrets",
    "get_secret_metadata",
    "check_rotation_policy",
    "get_rotation_history",
    "get_active_incidents",
    "get_audit_log",
    "verify_remediation",
    "assess_blast_radius",
)
WRITE_TOOLS = ("rotate_secret", "rollback_secret", "revoke_secret")
#: Offered to read-only keys, but not read-only: a scan may open an incident (readOnlyHint false, not destructive).
SCAN_TOOLS = ("detect_exposure",)
ALL_TOOLS = (*READ_TOOLS, *SCAN_TOOLS, *WRITE_TOOLS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class CliError(AssertionError):
    pass


@dataclass
class Key:
    tenant: str
    key_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Server:
    """A running `lockzero serve` plus the CLI environment that points at the same store."""

    backend: str
    database_url: str
    workdir: Path
    env: dict[str, str] = field(repr=False)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0), repr=False)
    #: Extra arguments of `lockzero serve` (e.g. --tls-cert/--tls-key) and the scheme they make it speak.
    serve_args: tuple[str, ...] = ()
    scheme: str = "http"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/api/mcp"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "serve.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "serve.stderr"

    # --- process ---------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        self.env["LOCKZERO_PORT"] = str(self.port)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lockzero.api.cli.main", "serve", *self.serve_args],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lockzero serve exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.http.get(f"{self.base}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"lockzero serve did not answer /healthz within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        self.http.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # --- the real CLI ----------------------------------------------------------------------------

    def cli(self, *args: str, stdin: bytes | None = None, check: bool = True) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "lockzero.api.cli.main", *args, "--json"],
            cwd=self.workdir,
            env=self.env,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CliError(
                f"lockzero {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout.decode(errors='replace')}\nstderr: {proc.stderr.decode(errors='replace')}"
            )
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def tenant(self, prefix: str = "t") -> str:
        name = unique(prefix)
        out = self.cli("tenant", "create", name)
        assert out["tenant"] == name
        return name

    def key(self, tenant: str, *, read_only: bool = False, scopes: tuple[str, ...] = ()) -> Key:
        args = ["key", "create", "--tenant", tenant]
        if read_only:
            args.append("--read-only")
        for scope in scopes:
            args += ["--scope", scope]
        out = self.cli(*args)
        assert out["key"].startswith("lz_mcp_"), out
        return Key(tenant, out["key_id"], out["key"])

    def revoke(self, key: Key) -> Any:
        return self.cli("key", "revoke", key.key_id)

    def secret(
        self,
        tenant: str,
        secret_id: str,
        *,
        environment: str = "prod",
        value: bytes | None = None,
        labels: dict[str, str] | None = None,
        provider: str = "generated",
        config: str | None = None,
    ) -> dict[str, Any]:
        args = ["secret", "add", secret_id, "--tenant", tenant, "--provider", provider, "--environment", environment]
        for k, v in (labels or {}).items():
            args += ["--label", f"{k}={v}"]
        if config is not None:
            args += ["--config", config]
        if value is not None:
            args.append("--value-stdin")
        out = self.cli(*args, stdin=value)
        assert out["secret_id"] == secret_id, out
        return dict(out)

    def secret_list(self, tenant: str) -> dict[str, Any]:
        return dict(self.cli("secret", "list", "--tenant", tenant))

    def dependent(self, tenant: str, secret_id: str, service: str, delivery: str = "pull") -> dict[str, Any]:
        return dict(
            self.cli(
                "dependent",
                "add",
                secret_id,
                "--tenant",
                tenant,
                "--service",
                service,
                "--environment",
                "prod",
                "--delivery",
                delivery,
            )
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def post(
        self,
        body: Any = None,
        *,
        key: Key | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if key is not None:
            h.update(key.auth)
        h.update(headers or {})
        data = content if content is not None else json.dumps(body).encode()
        return self.http.post(self.mcp_url, content=data, headers=h)

    def call(self, key: Key, method: str, params: Any = None, *, rid: Any = 1, **kw: Any) -> httpx.Response:
        """A direct JSON-RPC call (no MCP headers, no session)."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            body["params"] = params
        return self.post(body, key=key, **kw)

    def result(self, key: Key, method: str, params: Any = None) -> Any:
        r = self.call(key, method, params if params is not None else {})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "error" not in body, body
        return body["result"]

    def error(self, key: Key, method: str, params: Any = None) -> dict[str, Any]:
        r = self.call(key, method, params if params is not None else {})
        body = r.json()
        assert "result" not in body, body
        assert body["jsonrpc"] == "2.0" and body["id"] == 1, body
        return dict(body["error"])

    # --- the two MCP eras, by hand -----------------------------------------------------------------

    def initialize(self, key: Key, version: str = "2025-11-25") -> tuple[str, dict[str, Any]]:
        r = self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "lockzero-tests", "version": "0"},
                },
            },
            key=key,
        )
        assert r.status_code == 200, r.text
        sid = r.headers.get("mcp-session-id")
        assert sid, r.headers
        result = r.json()["result"]
        n = self.post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            key=key,
            headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": result["protocolVersion"]},
        )
        assert n.status_code == 202, n.text
        return sid, result

    def modern(
        self,
        key: Key,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        rid: Any = 1,
        headers: dict[str, str] | None = None,
        meta: bool = True,
    ) -> httpx.Response:
        p = dict(params or {})
        if meta:
            p["_meta"] = {META_VERSION: MODERN}
        h = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
        if method == "tools/call" and isinstance(p.get("name"), str):
            h["Mcp-Name"] = p["name"]
        h.update(headers or {})
        return self.post({"jsonrpc": "2.0", "id": rid, "method": method, "params": p}, key=key, headers=h)


def start_server(backend: str, workdir: Path, database_url: str, **extra_env: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKZERO_", "OTEL_"))}
    env.update(
        LOCKZERO_DATABASE_URL=database_url,
        LOCKZERO_MASTER_KEY=new_master_key(),
        LOCKZERO_RATE_LIMIT="0",
        # The tests' webhook and hook receivers listen on loopback, a private target refused by default.
        LOCKZERO_OUTBOUND_ALLOW="127.0.0.1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore::RuntimeWarning",
    )
    env.update(extra_env)
    server = Server(backend, database_url, workdir, env)
    if backend == "postgresql":
        server.cli("migrate")
    server.start()
    return server


def jsonrpc_error(r: httpx.Response, code: int, status: int | None = None) -> dict[str, Any]:
    """Assert `r` is a JSON-RPC error object with `code` (and HTTP `status`); return the error member."""
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict), body
    assert body.get("jsonrpc") == "2.0", body
    assert "result" not in body, body
    assert "id" in body, body
    err = body["error"]
    assert err["code"] == code, body
    assert isinstance(err["message"], str) and err["message"], body
    return dict(err)
