"""Helpers for the saga tests: the real server (+ `lockzero worker` processes in arq mode), real Redis
ACL users, a real webhook receiver that checks signatures, and a TCP proxy that can stall Redis replies."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import redis

from tests.api.support import Key, Server, start_server
from tests.conftest import fresh_pg_database

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
EMBEDDED, ARQ = "embedded", "arq"

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy (a generous deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what} after {timeout}s (last: {last!r})")


# --- Redis ACL users -------------------------------------------------------------------------------


def admin_redis(db: int = 0) -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)


@dataclass
class AclUser:
    """A real Redis ACL user with one password, deleted in teardown."""

    name: str
    password: str
    admin: redis.Redis = field(default_factory=admin_redis, repr=False)

    @classmethod
    def create(cls) -> AclUser:
        user = cls(f"lzt-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
        user.admin.execute_command("ACL", "SETUSER", user.name, "reset", "on", f">{user.password}", "~*", "+@all")
        return user

    def delete(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.admin.execute_command("ACL", "DELUSER", self.name)
        self.admin.close()

    def rules(self, field: str) -> Any:
        """One field of `ACL GETUSER` (e.g. "passwords", "commands", "flags"); None when the user is gone."""
        info = self.admin.execute_command("ACL", "GETUSER", self.name)
        if info is None:
            return None
        if isinstance(info, list):
            info = dict(zip(info[::2], info[1::2], strict=True))
        items = {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}
        return items[field]

    def passwords(self) -> list[str]:
        found = self.rules("passwords")
        return [p.decode() if isinstance(p, bytes) else p for p in found or []]

    def setuser(self, *rules: str) -> None:
        self.admin.execute_command("ACL", "SETUSER", self.name, *rules)

    def connect(self, password: str) -> redis.Redis:
        return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, username=self.name, password=password, socket_timeout=5)

    def auth_error(self, password: str) -> str | None:
        """None when a NEW connection with ``password`` authenticates and PINGs; else the error text."""
        client = self.connect(password)
        try:
            client.ping()
            return None
        except redis.AuthenticationError as exc:
            return f"AuthenticationError: {exc}"
        except redis.ResponseError as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            client.close()

    def works(self, password: str) -> bool:
        return self.auth_error(password) is None

    def refused(self, password: str) -> bool:
        """The server rejects the password itself (WRONGPASS, which redis-py raises as AuthenticationError)."""
        error = self.auth_error(password)
        return error is not None and error.startswith("AuthenticationError") and "username-password" in error

    def config(self, port: int = REDIS_PORT) -> str:
        return json.dumps({"url": f"redis://{REDIS_HOST}:{port}/0", "username": self.name})


class PasswordSampler:
    """Samples `ACL GETUSER` of one user in a background thread for the whole test."""

    def __init__(self, user: AclUser, interval: float = 0.01) -> None:
        self.user = user
        self.interval = interval
        self.samples = 0
        self.max_seen = 0
        self.min_seen = 99
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._conn = admin_redis()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        info = self._conn.execute_command("ACL", "GETUSER", self.user.name)
        if isinstance(info, list):
            info = dict(zip(info[::2], info[1::2], strict=True))
        items = {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}
        return len(items["passwords"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self._count()
            except Exception as exc:
                self.errors.append(repr(exc))
            else:
                self.samples += 1
                self.max_seen = max(self.max_seen, n)
                self.min_seen = min(self.min_seen, n)
            self._stop.wait(self.interval)

    def __enter__(self) -> PasswordSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._conn.close()


# --- webhook receiver ---------------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class LocalHttpServer:
    """A real HTTP server on a free loopback port, serving from a thread between ``with`` enter and exit.
    Subclasses answer each POST in ``answer``: its status, headers and body."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, reply = server.answer(self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, path: str, headers: Message, body: bytes) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class WebhookReceiver(LocalHttpServer):
    """A real HTTP server that answers 204 to correctly signed POSTs and 401 to anything else."""

    def __init__(self) -> None:
        super().__init__()
        self.signing_secret: str | None = None
        self.deliveries: list[Delivery] = []

    def answer(self, path: str, headers: Message, body: bytes) -> tuple[int, dict[str, str], bytes]:
        got = headers.get("X-Lockzero-Signature", "")
        ok = False
        if self.signing_secret is not None:
            want = "sha256=" + hmac.new(self.signing_secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(got, want)
        with self.lock:
            self.deliveries.append(Delivery(dict(headers.items()), body, ok))
        return (204 if ok else 401), {}, b""

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/lockzero"

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


# --- a TCP proxy in front of Redis that can stall replies ------------------------------------------


class StallingProxy:
    """Forwards TCP to Redis, counting the `ACL SETUSER` commands that pass. With ``stall_setuser`` on, a
    connection that sends `ACL SETUSER` has it delivered to Redis but gets no reply: the change happens at
    the provider and its caller never learns it (the worst moment for a worker to die). With ``hold`` on,
    nothing a client sends reaches Redis until it is cleared (``held`` counts connections waiting)."""

    def __init__(self, upstream: tuple[str, int] = (REDIS_HOST, REDIS_PORT)) -> None:
        self.upstream = upstream
        self.stall_setuser = threading.Event()
        self.hold = threading.Event()
        self.held = 0
        self.setusers_forwarded = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            stalled = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, stalled, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, stalled, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, stalled: threading.Event, to_redis: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_redis:
                    if self.hold.is_set():
                        with self._lock:
                            self.held += 1
                        while self.hold.is_set() and not self._closing.is_set():
                            time.sleep(0.002)
                        with self._lock:
                            self.held -= 1
                    if b"SETUSER" in data.upper():
                        with self._lock:
                            self.setusers_forwarded += 1
                        if self.stall_setuser.is_set():
                            stalled.set()
                    dst.sendall(data)
                else:
                    if stalled.is_set():
                        continue  # Redis answered; the caller never hears it
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            if not to_redis:
                with contextlib.suppress(OSError):
                    src.close()

    def __enter__(self) -> StallingProxy:
        self._accept_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


# --- the running product ------------------------------------------------------------------------


@dataclass
class Stack:
    """`lockzero serve` (+ `lockzero worker` processes in arq mode) on a fresh store."""

    mode: str
    server: Server
    redis_db: int | None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def workdir(self) -> Path:
        return self.server.workdir

    def start_worker(self) -> subprocess.Popen[bytes]:
        assert self.mode == ARQ
        n = len(self.workers)
        out = (self.workdir / f"worker{n}.stdout").open("wb")
        err = (self.workdir / f"worker{n}.stderr").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lockzero.api.cli.main", "worker"],
            cwd=self.workdir,
            env=self.server.env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        err.close()
        self.workers.append(proc)
        # A worker that prints its banner has opened Redis; it starts polling right after.
        wait_for(
            lambda: proc.poll() is not None or b"consuming sagas" in (self.workdir / f"worker{n}.stdout").read_bytes(),
            30,
            "the worker to start",
        )
        assert proc.poll() is None, self.logs()
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def logs(self) -> str:
        parts = [self.server.logs()]
        for path in sorted(self.workdir.glob("worker*.std*")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.server.stop()

    # --- setup through the real CLI ------------------------------------------------------------------

    def tenant_and_key(self) -> tuple[str, Key]:
        tenant = self.server.tenant("saga")
        return tenant, self.server.key(tenant)

    def add_redis_secret(self, tenant: str, secret_id: str, user: AclUser, port: int = REDIS_PORT) -> dict[str, Any]:
        out = self.server.secret(
            tenant, secret_id, provider="redis_acl", config=user.config(port), value=user.password.encode()
        )
        assert out["current_version"] == "v1", out
        return out

    def policy(self, tenant: str, secret_id: str, *args: str) -> dict[str, Any]:
        return dict(self.server.cli("secret", "policy", secret_id, "--tenant", tenant, *args))

    # --- JSON-RPC ------------------------------------------------------------------------------------

    def history(self, key: Key, secret_id: str) -> list[dict[str, Any]]:
        return list(self.server.result(key, "get_rotation_history", {"secret_id": secret_id})["rotations"])

    def rotation(self, key: Key, secret_id: str, rotation_id: str) -> dict[str, Any]:
        for r in self.history(key, secret_id):
            if r["rotation_id"] == rotation_id:
                return r
        raise AssertionError(f"rotation {rotation_id} not in the history of {secret_id}")

    def step_status(self, key: Key, secret_id: str, rotation_id: str, step: str) -> str | None:
        found = [s for s in self.rotation(key, secret_id, rotation_id)["steps"] if s["step"] == step]
        return found[-1]["status"] if found else None

    def verify(self, key: Key, secret_id: str, rotation_id: str | None = None) -> dict[str, Any]:
        params = {"secret_id": secret_id} | ({"rotation_id": rotation_id} if rotation_id else {})
        return dict(self.server.result(key, "verify_remediation", params))

    def wait_finished(self, key: Key, secret_id: str, rotation_id: str, timeout: float = 40) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            v = self.verify(key, secret_id, rotation_id)
            return v if v["status"] not in ("in_progress", "compensating") else None

        try:
            return wait_for(finished, timeout, f"rotation {rotation_id} to finish", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.history(key, secret_id)}\n{self.logs()}") from None

    def pull(self, token: str, secret_id: str) -> httpx.Response:
        return self.server.http.get(
            f"{self.server.base}/api/v1/secrets/{secret_id}/current", headers={"Authorization": f"Bearer {token}"}
        )

    def metadata(self, key: Key, secret_id: str) -> dict[str, Any]:
        return dict(self.server.result(key, "get_secret_metadata", {"secret_id": secret_id}))


@contextlib.contextmanager
def running_stack(
    mode: str, workdir: Path, redis_db: int | None = None, *, worker: bool = True, **env: str
) -> Iterator[Stack]:
    """Embedded: SQLite and the in-process worker. arq: PostgreSQL, Redis db ``redis_db`` (flushed first),
    and one `lockzero worker` unless ``worker`` is False. ``env`` goes to every process."""
    workdir.mkdir(parents=True, exist_ok=True)
    if mode == EMBEDDED:
        server = start_server("sqlite", workdir, f"sqlite:///{workdir / 'lockzero.db'}", **env)
        stack = Stack(mode, server, None)
        try:
            yield stack
        finally:
            stack.stop()
        return
    assert redis_db is not None and redis_db != 0
    flush = admin_redis(redis_db)
    flush.flushdb()
    flush.close()
    with fresh_pg_database() as url:
        server = start_server(
            "postgresql", workdir, url, LOCKZERO_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}", **env
        )
        stack = Stack(mode, server, redis_db)
        try:
            if worker:
                stack.start_worker()
            yield stack
        finally:
            stack.stop()
            flush = admin_redis(redis_db)
            flush.flushdb()
            flush.close()


def env_without_lockzero() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCKZERO_")}
