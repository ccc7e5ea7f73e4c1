"""Settings from the environment (12-factor). Every failure names the variable in one line."""

from __future__ import annotations

import os
import sqlite3
import ssl
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lockzero.engine.security.crypto import CryptoError, MasterKey
from lockzero.engine.security.outbound import OutboundPolicy

DEFAULT_DATABASE_URL = "sqlite:///./.lockzero/lockzero.db"


class ConfigError(Exception):
    """A bad or missing setting; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    host: str
    port: int
    allowed_origins: tuple[str, ...]
    master_key: MasterKey | None = field(repr=False)
    #: Calls per second per MCP key (burst 5x); 0 turns the limit off.
    rate_limit_per_s: float = 20.0
    #: Set when embedded mode created a master key file this start (caller prints the warning).
    created_master_key_file: Path | None = None
    #: Non-public hosts/networks that webhooks, notify URLs and http hooks may reach (LOCKZERO_OUTBOUND_ALLOW).
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    #: PEM certificate chain and private key for HTTPS in `lockzero serve` (LOCKZERO_TLS_CERT / LOCKZERO_TLS_KEY).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: How long SIGTERM waits for in-flight calls before closing them (LOCKZERO_SHUTDOWN_TIMEOUT, seconds).
    shutdown_timeout_s: int = 25
    #: Where `lockzero worker` serves its own /metrics (LOCKZERO_METRICS_PORT); None = not served.
    metrics_port: int | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def state_dir(self) -> Path | None:
        """Directory of the embedded SQLite file (where master.key lives), None in PostgreSQL mode."""
        if not self.embedded:
            return None
        path = self.sqlite_path
        return path.parent if path is not None else None

    @property
    def sqlite_path(self) -> Path | None:
        """The embedded SQLite file, None in PostgreSQL mode."""
        if not self.embedded:
            return None
        path = self.database_url.removeprefix("sqlite://")
        return Path(path[1:] if path.startswith("/") else path)

    def require_master_key(self) -> MasterKey:
        if self.master_key is None:
            raise ConfigError(
                "LOCKZERO_MASTER_KEY (or LOCKZERO_MASTER_KEY_FILE) is required: a base64 32-byte key,"
                ' e.g. from `python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"`'
            )
        return self.master_key


def load_settings(env: Mapping[str, str] | None = None, *, create_embedded_key: bool = True) -> Settings:
    env = os.environ if env is None else env
    database_url = env.get("LOCKZERO_DATABASE_URL") or DEFAULT_DATABASE_URL
    if not database_url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ConfigError("LOCKZERO_DATABASE_URL must start with postgresql:// or sqlite:///")
    if database_url.startswith("sqlite:") and database_url.removeprefix("sqlite:///").strip("/") == "":
        raise ConfigError("LOCKZERO_DATABASE_URL needs a file path, e.g. sqlite:///./.lockzero/lockzero.db")
    redis_url = env.get("LOCKZERO_REDIS_URL") or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("LOCKZERO_REDIS_URL must start with redis://, rediss:// or unix://")
    host = env.get("LOCKZERO_HOST") or "127.0.0.1"
    port_text = env.get("LOCKZERO_PORT") or "8080"
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ConfigError("LOCKZERO_PORT must be a TCP port number (1-65535)")
    origins = tuple(o.strip() for o in (env.get("LOCKZERO_ALLOWED_ORIGINS") or "").split(",") if o.strip())
    rate_text = env.get("LOCKZERO_RATE_LIMIT") or "20"
    try:
        rate = float(rate_text)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 1_000_000:
        raise ConfigError("LOCKZERO_RATE_LIMIT must be calls per second per key (a number; 0 = unlimited)")
    try:
        outbound = OutboundPolicy.parse(env.get("LOCKZERO_OUTBOUND_ALLOW") or "")
    except ValueError as exc:
        raise ConfigError(f"LOCKZERO_OUTBOUND_ALLOW: {exc} (a comma list of hosts, IPs and CIDRs)") from None
    tls_cert, tls_key = check_tls(env.get("LOCKZERO_TLS_CERT") or None, env.get("LOCKZERO_TLS_KEY") or None)
    shutdown_text = env.get("LOCKZERO_SHUTDOWN_TIMEOUT") or "25"
    shutdown_s = int(shutdown_text) if shutdown_text.isascii() and shutdown_text.isdigit() else -1
    if not 0 <= shutdown_s <= 3600:
        raise ConfigError("LOCKZERO_SHUTDOWN_TIMEOUT must be whole seconds to drain calls on SIGTERM (0-3600)")
    metrics_text = env.get("LOCKZERO_METRICS_PORT") or ""
    if metrics_text and not (metrics_text.isascii() and metrics_text.isdigit() and 0 < int(metrics_text) < 65536):
        raise ConfigError("LOCKZERO_METRICS_PORT must be a TCP port number (1-65535) for the worker's /metrics")
    settings = Settings(database_url, redis_url, host, int(port_text), origins, None, rate)
    key, created = _load_master_key(env, settings.state_dir if create_embedded_key else None, settings.sqlite_path)
    return Settings(
        database_url, redis_url, host, int(port_text), origins, key, rate, created, outbound, tls_cert, tls_key,
        shutdown_s, int(metrics_text) if metrics_text else None,
    )  # fmt: skip


def check_tls(
    cert: str | None, key: str | None, names: tuple[str, str] = ("LOCKZERO_TLS_CERT", "LOCKZERO_TLS_KEY")
) -> tuple[Path | None, Path | None]:
    """Both or neither; each a readable PEM file that loads as one certificate chain + key (checked now, so a
    bad pair fails at start with one line instead of at the first handshake)."""
    if cert is None and key is None:
        return None, None
    if cert is None or key is None:
        raise ConfigError(f"{names[0]} and {names[1]} go together: set both (PEM certificate chain and its key)")
    for name, value in zip(names, (cert, key), strict=True):
        path = Path(value)
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path} ({exc.strerror})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError:
        raise ConfigError(
            f"{names[0]} / {names[1]}: not a PEM certificate and its matching unencrypted private key"
        ) from None
    return Path(cert), Path(key)


def _load_master_key(
    env: Mapping[str, str], embedded_dir: Path | None, database: Path | None
) -> tuple[MasterKey | None, Path | None]:
    if value := env.get("LOCKZERO_MASTER_KEY"):
        try:
            return MasterKey.from_base64(value), None
        except CryptoError as exc:
            raise ConfigError(f"LOCKZERO_MASTER_KEY: {exc}") from None
    if file_name := env.get("LOCKZERO_MASTER_KEY_FILE"):
        return _read_key_file(Path(file_name), "LOCKZERO_MASTER_KEY_FILE"), None
    if embedded_dir is None:
        return None, None
    path = embedded_dir / "master.key"
    if path.exists():
        return _read_key_file(path, f"embedded master key file {path}"), None
    if database is not None and _holds_tenant_keys(database):
        # A new key now would orphan every stored secret and token, and mix two keys in one store.
        raise ConfigError(
            f"{database} holds tenant keys but {path} is missing: restore the key file, or set LOCKZERO_MASTER_KEY"
            " or LOCKZERO_MASTER_KEY_FILE to the key this database was created with"
        )
    embedded_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = MasterKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.to_base64() + "\n")
    return key, path


def _read_key_file(path: Path, what: str) -> MasterKey:
    try:
        text = path.read_bytes().decode("ascii")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} must hold the key as base64 text") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        print(f"lockzero: warning: {path} is readable by other users (mode {mode:o}); chmod 600 it", file=sys.stderr)
    try:
        return MasterKey.from_base64(text)
    except CryptoError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _holds_tenant_keys(database: Path) -> bool:
    """Whether the SQLite file already holds wrapped tenant keys; an unreadable file counts as yes (never risk it)."""
    if not database.exists():
        return False
    try:
        conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return True
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lz_tenant_keys'").fetchone():
            return conn.execute("SELECT 1 FROM lz_tenant_keys LIMIT 1").fetchone() is not None
        return False
    except sqlite3.Error:
        return True
    finally:
        conn.close()
