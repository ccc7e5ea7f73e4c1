"""Real services for the provider tests: a moto server process (local AWS) and an in-memory hook service."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx

from lockzero.providers.deliveries import SIGNATURE_HEADER
from tests.api.support import free_port

#: Requests moto serves before it starts checking signatures and policies: the bootstrap below.
BOOTSTRAP_REQUESTS = 3


@dataclass
class MotoServer:
    """``python -m moto.server`` in its own process, with request signing enforced after the bootstrap."""

    url: str
    process: subprocess.Popen[bytes]
    admin_key_id: str = ""
    admin_secret: str = ""

    @classmethod
    def start(cls) -> MotoServer:
        port = free_port()
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS)}
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{server.url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    server.stop()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        server._bootstrap()
        return server

    def _bootstrap(self) -> None:
        """Exactly BOOTSTRAP_REQUESTS unsigned calls: an admin user allowed everything, and its key."""
        iam = self.client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName="lockzero-admin")
        iam.put_user_policy(UserName="lockzero-admin", PolicyName="all", PolicyDocument=_policy("*"))
        key = iam.create_access_key(UserName="lockzero-admin")["AccessKey"]
        self.admin_key_id, self.admin_secret = key["AccessKeyId"], key["SecretAccessKey"]

    def client(self, service: str, key_id: str | None = None, secret: str | None = None) -> Any:
        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id=key_id or self.admin_key_id,
            aws_secret_access_key=secret or self.admin_secret,
        )

    def new_user(self) -> tuple[str, str, str]:
        """A fresh IAM user allowed to ask who it is, with one key: (user name, key id, secret)."""
        iam = self.client("iam")
        name = f"app-{secrets.token_hex(4)}"
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="whoami", PolicyDocument=_policy("sts:GetCallerIdentity"))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return name, key["AccessKeyId"], key["SecretAccessKey"]

    def keys(self, user: str) -> dict[str, str]:
        """Key id → status, as IAM lists them."""
        listing = self.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in listing}

    def config(self, user: str, **overrides: Any) -> dict[str, Any]:
        return {
            "user_name": user,
            "region": "us-east-1",
            "endpoint_url": self.url,
            "admin_access_key_id": self.admin_key_id,
            "admin_secret_access_key": self.admin_secret,
            **overrides,
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _policy(action: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class HookService:
    """A service implementing the `http` provider's hook contract, credentials in memory.

    ``issue_values``: create answers a value of its own instead of taking Lockzero's.
    """

    signing_secret: str
    issue_values: bool = False
    #: value_sha256 → {"username", "status": "active" | "retired"}
    creds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: idempotency_key (create only) → the first answer
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: (path, action) of every verified request, replays included
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: statuses to answer (instead of acting) to the next requests
    fail_next: list[int] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> HookService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with service._lock:
                    status, answer = service.handle(self.path, self.headers.get(SIGNATURE_HEADER, ""), body)
                answer = b"" if status == 204 else answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "create_url": f"{self.url}/create",
            "validate_url": f"{self.url}/validate",
            "retire_url": f"{self.url}/retire",
            "revoke_url": f"{self.url}/revoke",
            "signing_secret": self.signing_secret,
            **overrides,
        }

    def seed(self, value: str, username: str | None = None) -> None:
        """A credential in use before Lockzero manages it (what --value-stdin imports)."""
        self.creds[sha256(value)] = {"username": username, "status": "active"}

    def status(self, value: str) -> str | None:
        entry = self.creds.get(sha256(value))
        return entry["status"] if entry else None

    # --- the contract, server side ---------------------------------------------------------------

    def handle(self, path: str, sig: str, body: bytes) -> tuple[int, bytes]:
        expected = "sha256=" + hmac.new(self.signing_secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig, expected):
            self.bad_signatures += 1
            return 401, b'{"error": "bad signature"}'
        req = json.loads(body)
        path = path.split("?", 1)[0]
        self.calls.append((path, req["action"]))
        if self.fail_next:
            return self.fail_next.pop(0), b'{"error": "injected"}'
        key = req.get("idempotency_key")
        if (key is not None) != (req["action"] == "create"):
            return 400, b'{"error": "idempotency_key belongs to create only"}'
        if key in self.answers:
            return self.answers[key]
        status, answer = self._act(path, req)
        if key is not None and 200 <= status < 300:
            self.answers[key] = (status, json.dumps(answer).encode())
        return status, json.dumps(answer).encode()

    def _act(self, path: str, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action = req["action"]
        carries_value = "value" in req
        if carries_value != (path in ("/create", "/validate")):
            return 400, {"error": "value only to create and validate"}
        if carries_value and sha256(req["value"]) != req["value_sha256"]:
            return 400, {"error": "value_sha256 does not match"}
        if (path, action) == ("/create", "create"):
            if self.issue_values:
                value, username = secrets.token_urlsafe(30), f"svc-{secrets.token_hex(3)}"
                self.creds[sha256(value)] = {"username": username, "status": "active"}
                return 200, {"value": value, "username": username}
            self.creds[req["value_sha256"]] = {"username": req["username"], "status": "active"}
            return 201, {}
        if (path, action) == ("/create", "restore"):
            entry = self.creds.get(req["value_sha256"])
            if entry is None:
                return 409, {"error": "gone"}
            entry["status"] = "active"
            return 200, {}
        if (path, action) == ("/validate", "validate"):
            return 200, {"valid": self.status(req["value"]) == "active"}
        if (path, action) == ("/retire", "retire"):
            if req["value_sha256"] in self.creds:
                self.creds[req["value_sha256"]]["status"] = "retired"
            return 204, {}
        if (path, action) == ("/revoke", "discard"):
            self.creds.pop(req["value_sha256"], None)
            return 200, {}
        if (path, action) == ("/revoke", "revoke"):
            for ref in req["credentials"]:
                self.creds.pop(ref["value_sha256"], None)
            return 200, {"revoked": len(req["credentials"])}
        return 404, {"error": f"no {action} at {path}"}


async def accepts(provider: Any, credential: Any) -> bool:
    """The provider accepted the credential at authentication (refused and unknown are both "no")."""
    return bool((await provider.authenticate(credential)).accepted)
