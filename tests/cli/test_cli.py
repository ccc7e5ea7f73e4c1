"""The real `lockzero` console script (SPEC §1, §5), run as a subprocess against both backends.

Each test gets a fresh store (tests/conftest.py ``store_url``: a SQLite file or a throwaway PostgreSQL
database) and a fresh master key; the commands run with cwd=tmp_path and nothing on stdin unless a
value is piped. Results are checked through the output contract and, where it matters, by reading the
database directly or through the engine with the same master key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets as engine_secrets
from lockzero.engine.security.crypto import MasterKey
from lockzero.engine.security.outbound import redact_url
from lockzero.engine.security.secret_config import config_ref
from lockzero.eventstore import open_store

_SCRIPT = Path(sys.executable).with_name("lockzero")
LOCKZERO = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-W", "ignore", "-m", "lockzero.api.cli.main"]
TIMEOUT = 60


def base_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any LOCKZERO_* / OTEL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKZERO_", "OTEL_"))}
    env.update(extra)
    return env


def new_key_b64() -> str:
    return MasterKey.generate().to_base64()


@dataclass
class Result:
    args: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def json(self) -> Any:
        return json.loads(self.out)


def run(args: tuple[str, ...] | list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None) -> Result:
    proc = subprocess.run(
        [*LOCKZERO, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return Result(tuple(args), proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_one_error_line(r: Result, rc: int, *needles: str) -> str:
    """Exit code ``rc``, exactly one line on stderr, no traceback; returns that line."""
    assert r.rc == rc, (r.args, r.rc, r.out, r.err)
    assert "Traceback" not in r.err and "Traceback" not in r.out
    assert len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert line.startswith("lockzero: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@dataclass
class Cli:
    cwd: Path
    url: str
    master_key: str
    history: list[Result] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return base_env(LOCKZERO_DATABASE_URL=self.url, LOCKZERO_MASTER_KEY=self.master_key)

    def __call__(self, *args: str, stdin: bytes | None = None) -> Result:
        r = run(args, self.env, self.cwd, stdin)
        self.history.append(r)
        return r

    def ok(self, *args: str, stdin: bytes | None = None) -> Result:
        r = self(*args, stdin=stdin)
        assert r.rc == 0, (args, r.rc, r.out, r.err)
        assert "Traceback" not in r.err
        return r

    def json(self, *args: str, stdin: bytes | None = None) -> Any:
        return self.ok(*args, "--json", stdin=stdin).json()

    async def engine(self) -> Engine:
        return Engine(await open_store(self.url), MasterKey.from_base64(self.master_key))


def is_pg(url: str) -> bool:
    return url.startswith("postgresql")


@pytest.fixture
def cli(store_url: str, tmp_path: Path) -> Cli:
    """A CLI on a fresh, migrated store of each backend."""
    c = Cli(tmp_path, store_url, new_key_b64())
    if is_pg(store_url):
        assert c.json("migrate")["applied"]
    return c


# --- database inspection (direct, not through the engine) ----------------------------------------


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def table_names(url: str) -> list[str]:
    if url.startswith("sqlite"):
        rows = query(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = query(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    return sorted(str(r[0]) for r in rows)


def cell_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


# --- migrate -------------------------------------------------------------------------------------


def test_command_before_migrate_fails_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    c = Cli(tmp_path, pg_url, new_key_b64())
    for args in (("tenant", "list"), ("tenant", "create", "acme"), ("key", "list", "--tenant", "acme")):
        assert_one_error_line(c(*args), 1, "lockzero migrate")
    assert "lz_events" not in table_names(pg_url)  # nothing was created behind the operator's back
    c.json("migrate")
    assert c.json("tenant", "list") == {"tenants": []}


def test_migrate_is_idempotent(store_url: str, tmp_path: Path) -> None:
    c = Cli(tmp_path, store_url, new_key_b64())
    first = c.json("migrate")["applied"]
    assert any(name.startswith("eventstore:") for name in first)
    assert any(name.startswith("engine:") for name in first)
    assert c.json("migrate") == {"applied": []}
    text = c.ok("migrate")
    assert text.out.strip() == "schema is up to date"
    assert {"lz_events", "rm_secrets", "lz_secret_versions"} <= set(table_names(store_url))


# --- tenants -------------------------------------------------------------------------------------


def test_tenant_create_and_list(cli: Cli) -> None:
    created = cli.json("tenant", "create", "acme")
    assert created["tenant"] == "acme" and created["created_at"]
    assert cli.ok("tenant", "create", "beta-2").out.strip() == "created tenant beta-2"
    assert [t["tenant"] for t in cli.json("tenant", "list")["tenants"]] == ["acme", "beta-2"]
    table = cli.ok("tenant", "list").out.splitlines()
    assert table[0].split() == ["TENANT", "CREATED"]
    assert [line.split()[0] for line in table[1:]] == ["acme", "beta-2"]

    assert_one_error_line(cli("tenant", "create", "acme"), 1, "already exists")
    assert_one_error_line(cli("tenant", "create", "Bad Name"), 2, "tenant name")
    assert len(cli.json("tenant", "list")["tenants"]) == 2


def test_errors_with_json_are_json(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    r = cli("tenant", "create", "acme", "--json")
    assert r.rc == 1
    assert r.json()["error"]["code"] == "conflict"
    assert "already exists" in r.json()["error"]["message"]
    assert len(r.err_lines) == 1


# --- keys ----------------------------------------------------------------------------------------


async def test_key_create_list_revoke(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    rw = cli.json("key", "create", "--tenant", "acme", "--name", "ci")
    assert set(rw) == {"key_id", "key"}
    assert rw["key"].startswith("lz_mcp_") and rw["key_id"].startswith("key_")
    ro = cli.json("key", "create", "--tenant", "acme", "--read-only", "--scope", "prod/*", "--scope", "*/api-key")

    listed = cli.ok("key", "list", "--tenant", "acme", "--json")
    text = cli.ok("key", "list", "--tenant", "acme")
    for output in (listed.out, text.out, listed.err, text.err):
        assert rw["key"] not in output and ro["key"] not in output
        assert "lz_mcp_" not in output and "token_hash" not in output
    views = {k["key_id"]: k for k in listed.json()["keys"]}
    assert set(views) == {rw["key_id"], ro["key_id"]}
    assert (views[rw["key_id"]]["name"], views[rw["key_id"]]["permission"], views[rw["key_id"]]["scopes"]) == (
        "ci",
        "read-write",
        [],
    )
    assert (views[ro["key_id"]]["permission"], views[ro["key_id"]]["scopes"]) == ("read", ["prod/*", "*/api-key"])
    assert {k["status"] for k in views.values()} == {"active"}
    assert "read-write" in text.out and "prod/*,*/api-key" in text.out

    engine = await cli.engine()
    try:
        from lockzero.engine.security import keys

        key = await keys.authenticate(engine, rw["key"])
        assert key is not None and key.key_id == rw["key_id"] and not key.read_only

        revoked = cli.json("key", "revoke", rw["key_id"])
        assert revoked["key_id"] == rw["key_id"] and revoked["status"] == "revoked" and revoked["revoked_at"]
        assert await keys.authenticate(engine, rw["key"]) is None
        assert await keys.authenticate(engine, ro["key"]) is not None
    finally:
        await engine.close()
    statuses = {k["key_id"]: k["status"] for k in cli.json("key", "list", "--tenant", "acme")["keys"]}
    assert statuses == {rw["key_id"]: "revoked", ro["key_id"]: "active"}

    assert_one_error_line(cli("key", "revoke", rw["key_id"]), 1, "already revoked")
    assert_one_error_line(cli("key", "revoke", "key_doesnotexist"), 1, "key_doesnotexist")
    assert_one_error_line(cli("key", "create", "--tenant", "ghost"), 1, "ghost")
    assert_one_error_line(cli("key", "list", "--tenant", "ghost"), 1, "ghost")
    assert_one_error_line(cli("key", "create", "--tenant", "acme", "--scope", "prod db"), 2, "scope")


def test_key_create_text_prints_the_key_once_on_stdout(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    r = cli.ok("key", "create", "--tenant", "acme", "--read-only")
    lines = dict(line.split(":", 1) for line in r.out.splitlines())
    key = lines["key"].strip()
    assert key.startswith("lz_mcp_")
    assert r.out.count(key) == 1
    assert lines["permission"].strip() == "read"
    assert key not in r.err and "shown once" in r.err


# --- secrets: add --------------------------------------------------------------------------------

REDIS_CONFIG = {"url": "redis://default:admin-pw-canary@127.0.0.1:6379/0", "username": "app"}


async def read_value(cli: Cli, tenant: str, secret_id: str, version: int = 1) -> bytes | None:
    engine = await cli.engine()
    try:
        return await engine_secrets.read_version_value(engine, tenant, secret_id, version)
    finally:
        await engine.close()


async def test_secret_add_with_value_stdin(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    canary = b"value-canary-" + secrets.token_hex(8).encode()
    summary = cli.json(
        "secret",
        "add",
        "prod/redis/app",
        "--tenant",
        "acme",
        "--provider",
        "redis_acl",
        "--environment",
        "prod",
        "--config",
        json.dumps(REDIS_CONFIG),
        "--value-stdin",
        "--no-validate",
        "--label",
        "team=core",
        "--label",
        "tier=1",
        "--max-age",
        "30d",
        stdin=canary + b"\n",
    )
    assert summary == {
        "secret_id": "prod/redis/app",
        "status": "active",
        "provider": "redis_acl",
        "environment": "prod",
        "labels": {"team": "core", "tier": "1"},
        "current_version": "v1",
        "last_rotated_at": None,
        "rotation_age_days": 0,
        "overdue": False,
    }
    # One trailing newline (from `echo`) is not part of the credential; everything else is kept.
    assert await read_value(cli, "acme", "prod/redis/app") == canary
    policy = msgspec.json.decode(query(cli.url, "SELECT policy FROM rm_secrets")[0][0])
    assert policy["max_age_s"] == 30 * 86400

    cli.ok(
        "secret",
        "add",
        "prod/raw",
        "--tenant",
        "acme",
        "--provider",
        "generated",
        "--environment",
        "prod",
        "--value-stdin",
        stdin=b"two-newlines\n\n",
    )
    assert await read_value(cli, "acme", "prod/raw") == b"two-newlines\n"


async def test_secret_add_with_config_file(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    (cli.cwd / "redis.json").write_text(json.dumps(REDIS_CONFIG))
    cli.ok(
        "secret",
        "add",
        "prod/redis",
        "--tenant",
        "acme",
        "--provider",
        "redis_acl",
        "--environment",
        "prod",
        "--config",
        "@redis.json",
        "--value-stdin",
        "--no-validate",
        stdin=b"pw-from-file-test",
    )
    engine = await cli.engine()
    try:
        keys = await engine.tenant_keys("acme")
        ref = config_ref("prod/redis")
        ((blob,),) = query(cli.url, f"SELECT ciphertext FROM lz_sealed WHERE ref = '{ref}'")
        assert b"admin-pw-canary" not in bytes(blob)
        assert msgspec.json.decode(keys.open(bytes(blob), ref=ref, version=0, purpose="config")) == REDIS_CONFIG
    finally:
        await engine.close()
    r = cli(
        "secret",
        "add",
        "prod/x",
        "--tenant",
        "acme",
        "--provider",
        "generated",
        "--environment",
        "prod",
        "--config",
        "@missing.json",
    )
    assert_one_error_line(r, 2, "missing.json")


async def test_secret_add_generated_creates_v1(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    add = ("secret", "add", "--tenant", "acme", "--provider", "generated", "--environment", "prod")
    assert cli.json(*add, "svc/token")["current_version"] == "v1"
    cli.json(*add, "svc/hook", "--config", '{"length": 24, "prefix": "whk_"}')
    token = await read_value(cli, "acme", "svc/token")
    assert token is not None and len(token) == 40 and token.isalnum()
    hook = await read_value(cli, "acme", "svc/hook")
    assert hook is not None and hook.startswith(b"whk_") and len(hook) == 28
    text = cli.ok(*add, "svc/third")
    assert text.out.strip() == "registered svc/third (generated, prod) at v1"
    assert token.decode() not in text.out + text.err


def test_secret_add_provider_that_cannot_issue(cli: Cli) -> None:
    # `http` imports the credential its service already uses: without --value-stdin there is nothing to register.
    cli.ok("tenant", "create", "acme")
    hooks = {"create_url": "https://hooks.example/create", "validate_url": "https://hooks.example/validate",
             "signing_secret": "admin-pw-canary"}  # fmt: skip
    r = cli(
        "secret",
        "add",
        "prod/hooked",
        "--tenant",
        "acme",
        "--provider",
        "http",
        "--environment",
        "prod",
        "--config",
        json.dumps(hooks),
    )
    assert_one_error_line(r, 2, "--value-stdin")
    assert "admin-pw-canary" not in r.err
    assert cli.json("secret", "list", "--tenant", "acme")["secrets"] == []


ADD = ("secret", "add", "--tenant", "acme", "--environment", "prod")
USAGE_ERRORS: list[tuple[tuple[str, ...], bytes | None, str]] = [
    (("prod/x", "--provider", "nope"), None, "invalid choice: 'nope' (choose from 'redis_acl', "),
    (("prod/x", "--provider", "redis_acl", "--config", '{"url": "redis://h"}', "--value-stdin"), b"v" * 12, "username"),
    (("prod/x", "--provider", "generated", "--config", '{"colour": "red"}'), None, "colour"),
    (("bad id!", "--provider", "generated"), None, "secret_id"),
    (("prod/x", "--provider", "generated", "--max-age", "soon"), None, "--max-age"),
    (("prod/x", "--provider", "generated", "--max-age", "30s"), None, "max age"),
    (("prod/x", "--provider", "generated", "--config", "{not json"), None, "JSON"),
    (("prod/x", "--provider", "generated", "--config", "[1, 2]"), None, "JSON object"),
    (("prod/x", "--provider", "generated", "--label", "nolabel"), None, "key=value"),
    (("prod/x", "--provider", "generated", "--label", "bad key!=v"), None, "label key"),
    (("prod/x", "--provider", "generated", "--approvals", "11"), None, "approvals"),
    (("prod/x", "--provider", "generated", "--value-stdin"), None, "value"),  # nothing piped in
]


def test_secret_add_usage_errors(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    for args, stdin, needle in USAGE_ERRORS:
        r = cli(*ADD, *args, stdin=stdin)
        assert_one_error_line(r, 2, needle)
    assert cli.json("secret", "list", "--tenant", "acme")["secrets"] == []
    assert query(cli.url, "SELECT COUNT(*) FROM lz_secret_versions") == [(0,)]


def test_secret_add_failures(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    cli.ok(*ADD, "prod/x", "--provider", "generated")
    assert_one_error_line(cli(*ADD, "prod/x", "--provider", "generated"), 1, "already exists")
    r = cli("secret", "add", "prod/y", "--tenant", "ghost", "--provider", "generated", "--environment", "prod")
    assert_one_error_line(r, 1, "ghost")
    # Both failures of an existing tenant are in its audit trail.
    outcomes = query(cli.url, "SELECT method, outcome FROM rm_audit WHERE method = 'secret.add' ORDER BY position")
    assert outcomes == [("secret.add", "ok"), ("secret.add", "error")]


def test_secret_add_absurd_max_age_is_a_usage_error(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    assert_one_error_line(cli(*ADD, "prod/x", "--provider", "generated", "--max-age", "999999999d"), 2, "max")


def test_wrong_master_key_fails_without_writing(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    cli.ok(*ADD, "prod/a", "--provider", "generated")
    intruder = Cli(cli.cwd, cli.url, new_key_b64())
    r = intruder(*ADD, "prod/b", "--provider", "generated")
    assert_one_error_line(r, 1)
    r = intruder("dependent", "add", "prod/a", "--tenant", "acme", "--service", "h", "--environment", "prod",
                 "--delivery", "webhook:https://h.example/x")  # fmt: skip
    assert_one_error_line(r, 1)
    assert listed(cli) == ["prod/a"]
    assert query(cli.url, "SELECT COUNT(*) FROM rm_dependents") == [(0,)]


# --- secrets: list -------------------------------------------------------------------------------

SEEDED = {
    "dev/token": ("generated", "dev", {"tier": "3"}),
    "prod/cache": ("redis_acl", "prod", {"team": "web"}),
    "prod/db": ("generated", "prod", {"team": "core", "tier": "1"}),
    "staging/cache": ("redis_acl", "staging", {}),
    "staging/db": ("generated", "staging", {"team": "core"}),
}


def seed_secrets(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    for secret_id, (provider, env, labels) in SEEDED.items():
        args = ["secret", "add", secret_id, "--tenant", "acme", "--provider", provider, "--environment", env]
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        stdin = None
        if provider == "redis_acl":
            # Made-up values on one shared Redis user: storage and listing, not the registration checks.
            args += ["--config", json.dumps(REDIS_CONFIG), "--value-stdin", "--no-validate", "--allow-shared"]
            stdin = b"redis-password-" + secret_id.encode()
        cli.ok(*args, stdin=stdin)


def listed(cli: Cli, *filters: str) -> list[str]:
    return [s["secret_id"] for s in cli.json("secret", "list", "--tenant", "acme", *filters)["secrets"]]


def test_secret_list_filters(cli: Cli) -> None:
    seed_secrets(cli)
    assert listed(cli) == sorted(SEEDED)
    assert listed(cli, "--environment", "prod") == ["prod/cache", "prod/db"]
    assert listed(cli, "--provider", "redis_acl") == ["prod/cache", "staging/cache"]
    assert listed(cli, "--label", "team") == ["prod/cache", "prod/db", "staging/db"]
    assert listed(cli, "--label", "team=core") == ["prod/db", "staging/db"]
    assert listed(cli, "--label", "team=core", "--environment", "staging") == ["staging/db"]
    assert listed(cli, "--status", "active", "--provider", "generated") == ["dev/token", "prod/db", "staging/db"]
    assert listed(cli, "--overdue-only") == []
    assert listed(cli, "--environment", "nowhere") == []
    page = cli.json("secret", "list", "--tenant", "acme", "--label", "tier=1")
    assert page["next_cursor"] is None
    (row,) = page["secrets"]
    assert (row["provider"], row["environment"], row["labels"], row["current_version"], row["overdue"]) == (
        "generated",
        "prod",
        {"team": "core", "tier": "1"},
        "v1",
        False,
    )
    text = cli.ok("secret", "list", "--tenant", "acme", "--environment", "prod").out.splitlines()
    assert text[0].split()[:3] == ["SECRET", "PROVIDER", "ENV"]
    assert [line.split()[0] for line in text[1:]] == ["prod/cache", "prod/db"]
    assert "team=core,tier=1" in text[2]
    assert_one_error_line(cli("secret", "list", "--tenant", "ghost"), 1, "ghost")


def test_secret_list_pagination_walks_every_secret_once(cli: Cli) -> None:
    seed_secrets(cli)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["--limit", "2"] + (["--cursor", cursor] if cursor else [])
        page = cli.json("secret", "list", "--tenant", "acme", *args)
        assert len(page["secrets"]) <= 2
        seen += [s["secret_id"] for s in page["secrets"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert seen == sorted(SEEDED)
    assert pages == 3
    # The text form tells how to get the next page.
    text = cli.ok("secret", "list", "--tenant", "acme", "--limit", "4").out
    more = text.splitlines()[-1]
    assert more.startswith("more: --cursor ")
    rest = listed(cli, "--cursor", more.removeprefix("more: --cursor ").strip())
    assert rest == ["staging/db"]
    # Filters and pages combine.
    first = cli.json("secret", "list", "--tenant", "acme", "--provider", "generated", "--limit", "1")
    assert [s["secret_id"] for s in first["secrets"]] == ["dev/token"]
    assert listed(cli, "--provider", "generated", "--cursor", first["next_cursor"]) == ["prod/db", "staging/db"]

    assert_one_error_line(cli("secret", "list", "--tenant", "acme", "--cursor", "!!!notacursor"), 2, "cursor")
    assert_one_error_line(cli("secret", "list", "--tenant", "acme", "--cursor", "é"), 2, "cursor")
    assert_one_error_line(cli("secret", "list", "--tenant", "acme", "--limit", "0"), 2, "limit")
    assert_one_error_line(cli("secret", "list", "--tenant", "acme", "--limit", "201"), 2, "limit")


# --- secrets: policy -----------------------------------------------------------------------------


def test_secret_policy(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    cli.ok(*ADD, "prod/db", "--provider", "generated", "--max-age", "30d", "--approvals", "1")
    changed = cli.json(
        "secret",
        "policy",
        "prod/db",
        "--tenant",
        "acme",
        "--max-age",
        "7d",
        "--approvals",
        "2",
        "--grace",
        "1d",
        "--adoption-deadline",
        "90",
        "--notify",
        "https://n.example/a",
        "--notify",
        "https://n.example/b",
        "--no-agent-rotation",
    )
    assert changed["secret_id"] == "prod/db"
    expected = {
        "max_age_s": 7 * 86400,
        "required_approvals": 2,
        "allow_agent_rotation": False,
        "auto_rotate": False,
        "grace_s": 86400,
        "adoption_deadline_s": 90,
        # Shown redacted: notify URLs often carry a token (stored sealed).
        "notify": [redact_url("https://n.example/a"), redact_url("https://n.example/b")],
    }
    assert {k: changed["policy"].get(k, "missing") for k in expected} == expected
    assert "notify_sealed" not in changed["policy"]  # the sealed form is nobody's business
    # Only the given fields change.
    again = cli.json("secret", "policy", "prod/db", "--tenant", "acme", "--agent-rotation", "--adoption-deadline", "5m")
    assert again["policy"]["allow_agent_rotation"] is True  # every field, defaults too
    assert again["policy"]["adoption_deadline_s"] == 300
    assert again["policy"]["required_approvals"] == 2 and again["policy"]["max_age_s"] == 7 * 86400
    stored = msgspec.json.decode(query(cli.url, "SELECT policy FROM rm_secrets")[0][0])
    assert stored["adoption_deadline_s"] == 300 and len(stored["notify_sealed"]) == 2
    assert stored["notify"] == [redact_url("https://n.example/a"), redact_url("https://n.example/b")]
    ((max_age,),) = query(cli.url, "SELECT max_age_s FROM rm_secrets")
    assert max_age == 7 * 86400

    text = cli.ok("secret", "policy", "prod/db", "--tenant", "acme", "--approvals", "3")
    assert text.out.startswith("policy of prod/db:\n")
    shown = settings_of(text.out)
    readable = {
        "max age": "7d",
        "auto-rotate": "off (overdue opens an incident)",
        "approvals": "3",
        "agent rotation": "allowed",
        "grace": "1d",
        "adoption deadline": "5m",
        "notify": f"{redact_url('https://n.example/a')}, {redact_url('https://n.example/b')}",
    }
    assert {k: shown.get(k) for k in readable} == readable
    # No Python reprs, no sealed URLs, no URL in clear.
    for fragment in ("max_age_s=", "notify=(", "('", "notify_sealed", "n.example/a", "n.example/b"):
        assert fragment not in text.out, fragment

    policy = ("secret", "policy", "prod/db", "--tenant", "acme")
    assert_one_error_line(cli(*policy, "--grace", "a week"), 2, "--grace")
    assert_one_error_line(cli(*policy, "--max-age", "10s"), 2, "max age")
    assert_one_error_line(cli(*policy, "--notify", "ftp://n.example"), 2, "notify")
    assert_one_error_line(cli(*policy, "--approvals", "-1"), 2, "approvals")
    assert_one_error_line(cli("secret", "policy", "prod/missing", "--tenant", "acme", "--approvals", "1"), 1)
    assert cli.json(*policy)["policy"]["required_approvals"] == 3  # failures changed nothing


def settings_of(out: str) -> dict[str, str]:
    """The SETTING/VALUE table of `secret policy` as a dict."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SETTING"))
    width = lines[header].index("VALUE")
    return {line[:width].strip(): line[width:].strip() for line in lines[header + 1 :] if line.strip()}


def test_secret_policy_turns_auto_rotate_on_and_off(cli: Cli) -> None:
    """The README's `secret policy … --auto-rotate` works (it was refused as an unrecognized argument)."""
    cli.ok("tenant", "create", "acme")
    cli.ok(*ADD, "prod/db", "--provider", "generated")
    policy = ("secret", "policy", "prod/db", "--tenant", "acme")
    assert cli.json(*policy)["policy"]["auto_rotate"] is False
    assert cli.json(*policy, "--auto-rotate", "--max-age", "30d")["policy"]["auto_rotate"] is True
    stored = msgspec.json.decode(query(cli.url, "SELECT policy FROM rm_secrets")[0][0])
    assert stored["auto_rotate"] is True
    assert settings_of(cli.ok(*policy).out)["auto-rotate"] == "on (rotates when due)"
    assert cli.json(*policy, "--no-auto-rotate")["policy"]["auto_rotate"] is False
    r = cli(*policy, "--auto-rotate", "--no-auto-rotate")
    assert r.rc == 2 and "not allowed with argument" in r.err, r.err
    assert cli.json(*policy)["policy"]["auto_rotate"] is False  # the refused call changed nothing
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "lockzero secret policy" in readme and "--auto-rotate" in readme


# --- dependents ----------------------------------------------------------------------------------


def test_dependent_add(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    cli.ok(*ADD, "prod/db", "--provider", "generated")
    dep = ("dependent", "add", "prod/db", "--tenant", "acme", "--environment", "prod")

    pull = cli.json(*dep, "--service", "api", "--delivery", "pull")
    assert pull["token"].startswith("lz_svc_") and pull["delivery"] == "pull"
    assert pull["dependent_id"].startswith("dep_") and "signing_secret" not in pull

    hook = cli.json(*dep, "--service", "hooks", "--delivery", "webhook:https://hooks.example/lockzero")
    assert hook["signing_secret"].startswith("whsec_") and "token" not in hook
    assert (hook["delivery"], hook["target"]) == ("webhook", redact_url("https://hooks.example/lockzero"))

    filedep = cli.json(*dep, "--service", "batch", "--delivery", "file:/etc/app/db-password")
    assert (filedep["delivery"], filedep["target"]) == ("file", "/etc/app/db-password")
    assert "token" not in filedep and "signing_secret" not in filedep

    text = cli.ok(*dep, "--service", "worker", "--delivery", "pull")
    token_line = next(line for line in text.out.splitlines() if line.startswith("token:"))
    token = token_line.split(":", 1)[1].strip()
    assert token.startswith("lz_svc_") and text.out.count(token) == 1
    assert token not in text.err and "shown once" in text.err

    rows = query(cli.url, "SELECT service, delivery, target, token_hash FROM rm_dependents ORDER BY service")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("api", "pull", None),
        ("batch", "file", "/etc/app/db-password"),
        ("hooks", "webhook", redact_url("https://hooks.example/lockzero")),
        ("worker", "pull", None),
    ]
    assert all(pull["token"] not in str(r) and token not in str(r) for r in rows)
    assert query(cli.url, "SELECT dependents_count FROM rm_secrets") == [(4,)]

    for delivery in ("file:relative/path", "webhook:ftp://h.example/x", "webhook:", "push", "pull:x"):
        assert_one_error_line(cli(*dep, "--service", "other", "--delivery", delivery), 2, "deliver")
    assert_one_error_line(cli(*dep, "--service", "api", "--delivery", "pull"), 1, "already depends")
    r = cli("dependent", "add", "prod/missing", "--tenant", "acme", "--service", "x", "--environment", "prod",
            "--delivery", "pull")  # fmt: skip
    assert_one_error_line(r, 1, "prod/missing")
    assert query(cli.url, "SELECT dependents_count FROM rm_secrets") == [(4,)]


# --- replay --------------------------------------------------------------------------------------


def test_replay(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    cli.ok("key", "create", "--tenant", "acme")
    cli.ok(*ADD, "prod/db", "--provider", "generated", "--label", "team=core")
    cli.ok("dependent", "add", "prod/db", "--tenant", "acme", "--service", "api", "--environment", "prod",
           "--delivery", "pull")  # fmt: skip
    before = {t: sorted(map(repr, query(cli.url, f"SELECT * FROM {t}"))) for t in ("rm_secrets", "rm_api_keys")}
    query_url = cli.url
    ((events,),) = query(query_url, "SELECT COUNT(*) FROM lz_events")
    assert cli.json("replay") == {"events_replayed": events}
    after = {t: sorted(map(repr, query(cli.url, f"SELECT * FROM {t}"))) for t in ("rm_secrets", "rm_api_keys")}
    assert after == before
    assert cli.ok("replay").out.strip() == f"rebuilt read models from {events} events"
    assert listed(cli, "--label", "team=core") == ["prod/db"]


# --- help and usage ------------------------------------------------------------------------------

SUBCOMMANDS = [
    (),
    ("serve",),
    ("migrate",),
    ("replay",),
    ("tenant",),
    ("tenant", "create"),
    ("tenant", "list"),
    ("key",),
    ("key", "create"),
    ("key", "list"),
    ("key", "revoke"),
    ("secret",),
    ("secret", "add"),
    ("secret", "list"),
    ("secret", "policy"),
    ("dependent",),
    ("dependent", "add"),
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(c) or "lockzero")
def test_help(command: tuple[str, ...], tmp_path: Path) -> None:
    r = run([*command, "--help"], base_env(), tmp_path)
    assert r.rc == 0, r.err
    assert r.out.startswith("usage: lockzero" + "".join(f" {c}" for c in command))
    assert r.err == ""
    assert not (tmp_path / ".lockzero").exists()  # help touches no state


def test_help_documents_the_options(tmp_path: Path) -> None:
    out = run(["secret", "add", "--help"], base_env(), tmp_path).out
    for option in ("--provider", "--environment", "--config", "--value-stdin", "--label", "--max-age", "--json"):
        assert option in out
    out = run(["dependent", "add", "--help"], base_env(), tmp_path).out
    assert "pull|file:PATH|webhook:URL" in out


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("nope",),
        ("tenant",),
        ("tenant", "nope"),
        ("key", "create"),
        ("secret", "list", "--tenant", "acme", "--limit", "many"),
        ("secret", "policy", "x", "--tenant", "acme", "--agent-rotation", "--no-agent-rotation"),
        ("dependent", "add", "x", "--tenant", "acme"),
        ("tenant", "list", "--bogus-flag"),
    ],
    ids=lambda a: " ".join(a) or "nothing",
)
def test_usage_errors_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    r = run(args, base_env(LOCKZERO_MASTER_KEY=new_key_b64()), tmp_path)
    assert r.rc == 2, (r.out, r.err)
    assert "Traceback" not in r.err
    assert "error:" in r.err_lines[0]
    assert r.out == ""
    assert not (tmp_path / ".lockzero").exists()


# --- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql://x", "mysql://u:canarypw@127.0.0.1/db", "sqlite://relative.db"])
def test_bad_database_url(url: str, tmp_path: Path) -> None:
    r = run(["tenant", "list"], base_env(LOCKZERO_DATABASE_URL=url, LOCKZERO_MASTER_KEY=new_key_b64()), tmp_path)
    assert_one_error_line(r, 1, "LOCKZERO_DATABASE_URL")
    assert "canarypw" not in r.err + r.out
    assert not (tmp_path / ".lockzero").exists()


@pytest.mark.parametrize(
    "key",
    ["not base64 at all!!", base64.b64encode(b"k" * 16).decode(), base64.b64encode(b"k" * 33).decode()],
    ids=["not-base64", "16-bytes", "33-bytes"],
)
def test_bad_master_key(key: str, tmp_path: Path) -> None:
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY=key)
    r = run(["tenant", "list"], env, tmp_path)
    assert_one_error_line(r, 1, "LOCKZERO_MASTER_KEY")
    assert key not in r.err + r.out
    assert not (tmp_path / "lz.db").exists()


def test_bad_master_key_file(tmp_path: Path) -> None:
    (tmp_path / "kek").write_text("garbage-key-material")
    (tmp_path / "kek").chmod(0o600)
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY_FILE="kek")
    r = run(["tenant", "list"], env, tmp_path)
    assert_one_error_line(r, 1, "LOCKZERO_MASTER_KEY_FILE")
    assert "garbage-key-material" not in r.err
    env["LOCKZERO_MASTER_KEY_FILE"] = str(tmp_path / "missing")
    assert_one_error_line(run(["tenant", "list"], env, tmp_path), 1, "LOCKZERO_MASTER_KEY_FILE")


def test_master_key_file_works(tmp_path: Path) -> None:
    key = new_key_b64()
    (tmp_path / "kek").write_text(key + "\n")
    (tmp_path / "kek").chmod(0o600)
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY_FILE="kek")
    r = run(["tenant", "create", "acme"], env, tmp_path)
    assert r.rc == 0 and r.err == ""


def test_postgresql_mode_requires_a_master_key(tmp_path: Path) -> None:
    r = run(["tenant", "list"], base_env(LOCKZERO_DATABASE_URL="postgresql://u:canarypw@127.0.0.1:1/x"), tmp_path)
    assert_one_error_line(r, 1, "LOCKZERO_MASTER_KEY")
    assert "canarypw" not in r.err
    assert not (tmp_path / ".lockzero").exists()


@pytest.fixture(scope="module")
def dead_port(tmp_path_factory: pytest.TempPathFactory) -> Result:
    env = base_env(LOCKZERO_DATABASE_URL="postgresql://u:canarypw@127.0.0.1:1/x", LOCKZERO_MASTER_KEY=new_key_b64())
    return run(["tenant", "list"], env, tmp_path_factory.mktemp("dead-port"))


def test_dead_postgresql_fails_cleanly(dead_port: Result) -> None:
    assert dead_port.rc == 1
    assert "canarypw" not in dead_port.out + dead_port.err
    assert "Traceback" not in dead_port.err
    assert dead_port.err_lines[-1].startswith("lockzero: error: ")
    assert "LOCKZERO_DATABASE_URL" in dead_port.err_lines[-1]


def test_dead_postgresql_prints_one_line(dead_port: Result) -> None:
    assert len(dead_port.err_lines) == 1, dead_port.err


# --- configuration bugs (contract: one clear line naming the variable) ---------------------------


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notadb").write_text("this is not a database\n" * 10)
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'notadb'}", LOCKZERO_MASTER_KEY=new_key_b64())
    proc = subprocess.Popen(
        [*LOCKZERO, "tenant", "list"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("lockzero did not exit after reporting the error (hung)")
    r = Result(("tenant", "list"), proc.returncode, "", err.decode())
    assert_one_error_line(r, 1, "LOCKZERO_DATABASE_URL")


def test_binary_master_key_file(tmp_path: Path) -> None:
    (tmp_path / "kek").write_bytes(b"\xff" + os.urandom(31))
    (tmp_path / "kek").chmod(0o600)
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY_FILE="kek")
    assert_one_error_line(run(["tenant", "list"], env, tmp_path), 1, "LOCKZERO_MASTER_KEY_FILE")


def test_unicode_digit_port(tmp_path: Path) -> None:
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY=new_key_b64())
    env["LOCKZERO_PORT"] = "²"
    assert_one_error_line(run(["tenant", "list"], env, tmp_path), 1, "LOCKZERO_PORT")


def test_sqlite_url_without_a_path(tmp_path: Path) -> None:
    r = run(["tenant", "list"], base_env(LOCKZERO_DATABASE_URL="sqlite:///"), tmp_path)
    stray_key = (tmp_path / "master.key").exists()
    assert_one_error_line(r, 1, "LOCKZERO_DATABASE_URL")
    assert not stray_key


def test_sqlite_path_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'afile' / 'lz.db'}", LOCKZERO_MASTER_KEY=new_key_b64())
    assert_one_error_line(run(["tenant", "list"], env, tmp_path), 1, "LOCKZERO_DATABASE_URL")


# --- embedded default ----------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_embedded_default_creates_and_reuses_its_master_key(tmp_path: Path) -> None:
    env = base_env()
    first = run(["tenant", "create", "acme"], env, tmp_path)
    assert first.rc == 0, first.err
    state = tmp_path / ".lockzero"
    key_file, db_file = state / "master.key", state / "lockzero.db"
    assert len(first.err_lines) == 1
    warning = first.err_lines[0]
    assert "warning" in warning and "master.key" in warning and "LOCKZERO_MASTER_KEY" in warning
    key_text = key_file.read_text()
    assert key_text.strip() not in first.err + first.out
    master = MasterKey.from_base64(key_text)
    assert mode(key_file) == 0o600
    assert mode(db_file) == 0o600
    assert mode(state) & 0o077 == 0
    for f in state.iterdir():
        assert mode(f) & 0o077 == 0, f

    second = run(["secret", "add", "svc/token", "--tenant", "acme", "--provider", "generated", "--environment",
                  "dev", "--json"], env, tmp_path)  # fmt: skip
    assert second.rc == 0 and second.err == "", second.err
    third = run(["tenant", "list", "--json"], env, tmp_path)
    assert third.rc == 0 and third.err == ""
    assert [t["tenant"] for t in json.loads(third.out)["tenants"]] == ["acme"]
    assert key_file.read_text() == key_text
    assert sorted(p.name for p in state.iterdir() if not p.name.startswith("lockzero.db")) == ["master.key"]

    # The key file is the key that encrypts the state.
    engine = Engine(await open_store(f"sqlite:///{db_file}"), master)
    try:
        value = await engine_secrets.read_version_value(engine, "acme", "svc/token", 1)
        assert value is not None and len(value) == 40
    finally:
        await engine.close()


def test_embedded_default_refuses_a_new_key_for_existing_state(tmp_path: Path) -> None:
    env = base_env()
    assert run(["secret", "add", "x"], env, tmp_path).rc == 2  # parser only: creates nothing
    assert run(["tenant", "create", "acme"], env, tmp_path).rc == 0
    (tmp_path / ".lockzero" / "master.key").unlink()
    r = run(["tenant", "list"], env, tmp_path)
    assert not (tmp_path / ".lockzero" / "master.key").exists()
    assert_one_error_line(r, 1, "master.key")


# --- leak canary ---------------------------------------------------------------------------------


async def test_no_secret_leaks_into_events_read_models_or_stderr(cli: Cli) -> None:
    canary = "leak-canary-" + secrets.token_hex(12)
    admin_pw = "admin-canary-" + secrets.token_hex(8)
    config = json.dumps({"url": f"redis://default:{admin_pw}@127.0.0.1:6379/0", "username": "app"})
    add = ("secret", "add", "prod/redis", "--tenant", "acme", "--provider", "redis_acl", "--environment", "prod")

    def last() -> int:
        return len(cli.history) - 1

    cli.ok("tenant", "create", "acme", "--json")
    mcp = cli.json("key", "create", "--tenant", "acme", "--name", "agent")
    printed_once = {mcp["key"]: last()}
    mcp_text = cli.ok("key", "create", "--tenant", "acme", "--read-only")
    mcp2 = next(ln.split(":", 1)[1].strip() for ln in mcp_text.out.splitlines() if ln.startswith("key:"))
    printed_once[mcp2] = last()
    cli.json(*add, "--config", config, "--value-stdin", "--no-validate", "--label", "team=core", stdin=canary.encode())
    # Failing paths see the canary too: a duplicate, a config error and a value the provider cannot check.
    assert cli(*add, "--config", config, "--value-stdin", "--no-validate", stdin=canary.encode()).rc == 1
    checked = cli(
        "secret",
        "add",
        "prod/checked",
        *add[3:],
        "--config",
        config,
        "--value-stdin",
        "--allow-shared",
        stdin=canary.encode(),
    )
    assert checked.rc == 2 and "nothing was registered" in checked.err, checked
    bad_config = json.dumps({"url": f"redis://default:{admin_pw}@h", "username": "app", "bogus": admin_pw})
    r = cli("secret", "add", "prod/bad", *add[3:], "--config", bad_config, "--value-stdin", stdin=canary.encode())
    assert r.rc == 2
    dep = ("dependent", "add", "prod/redis", "--tenant", "acme", "--environment", "prod")
    hook = cli.json(*dep, "--service", "hooks", "--delivery", "webhook:https://hooks.example/lockzero")
    printed_once[hook["signing_secret"]] = last()
    pull = cli.json(*dep, "--service", "api", "--delivery", "pull")
    printed_once[pull["token"]] = last()
    pull_text = cli.ok(*dep, "--service", "worker", "--delivery", "pull")
    token2 = next(ln.split(":", 1)[1].strip() for ln in pull_text.out.splitlines() if ln.startswith("token:"))
    printed_once[token2] = last()
    for args in (
        ("key", "list", "--tenant", "acme", "--json"),
        ("key", "list", "--tenant", "acme"),
        ("secret", "list", "--tenant", "acme", "--json"),
        ("secret", "list", "--tenant", "acme"),
        ("secret", "policy", "prod/redis", "--tenant", "acme", "--max-age", "7d", "--json"),
        ("tenant", "list"),
        ("replay", "--json"),
        ("migrate", "--json"),
        ("key", "revoke", mcp["key_id"], "--json"),
    ):
        cli.ok(*args)

    master = MasterKey.from_base64(cli.master_key)
    never_printed = [canary, admin_pw, cli.master_key, base64.b64encode(canary.encode()).decode()]
    assert len(printed_once) == 5

    # stderr never carries any of them; stdout only the one that the contract prints, once, where it prints it.
    for i, r in enumerate(cli.history):
        for s in [*never_printed, *printed_once]:
            assert s not in r.err, (r.args, s)
        for s in never_printed:
            assert s not in r.out, (r.args, s)
        for s, where in printed_once.items():
            if i != where:
                assert s not in r.out, (r.args, s)
    assert all(cli.history[where].out.count(s) == 1 for s, where in printed_once.items())

    # No stored byte anywhere (events, read models, side tables) is any of them.
    needles = [s.encode() for s in [*never_printed, *printed_once]] + [master.raw]
    tables = table_names(cli.url)
    assert {"lz_events", "rm_secrets", "rm_api_keys", "rm_dependents", "rm_audit"} <= set(tables)
    ((events,),) = query(cli.url, "SELECT COUNT(*) FROM lz_events")
    assert events > 10
    for table in tables:
        for row in query(cli.url, f"SELECT * FROM {table}"):
            for cell in row:
                data = cell_bytes(cell)
                for needle in needles:
                    assert needle not in data, (table, needle)
    for data, metadata in query(cli.url, "SELECT data, metadata FROM lz_events"):
        assert canary.encode() not in bytes(data) + bytes(metadata)

    # The value is there as ciphertext only, and it is the ciphertext of the canary.
    ((ciphertext,),) = query(cli.url, "SELECT ciphertext FROM lz_secret_versions WHERE secret_id = 'prod/redis'")
    assert len(bytes(ciphertext)) == len(canary) + 28
    assert await read_value(cli, "acme", "prod/redis") == canary.encode()

    if cli.url.startswith("sqlite"):
        db = Path(cli.url.removeprefix("sqlite:///"))
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        assert db in files
        for path in files:
            raw = path.read_bytes()
            for needle in needles:
                assert needle not in raw, (path.name, needle)


async def test_secret_delete_is_a_tombstone_and_the_id_can_be_registered_again(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    add = ("secret", "add", "prod/token", "--tenant", "acme", "--provider", "generated", "--environment", "prod")
    cli.json(*add)
    gone = cli.json("secret", "delete", "prod/token", "--tenant", "acme", "--reason", "service retired")
    assert gone == {"secret_id": "prod/token", "status": "deleted", "shredded_versions": ["v1"]}
    assert query(cli.url, "SELECT count(*) FROM lz_secret_versions WHERE secret_id = 'prod/token'") == [(0,)]
    assert cli.json("secret", "list", "--tenant", "acme")["secrets"] == []
    assert_one_error_line(cli("secret", "delete", "prod/token", "--tenant", "acme"), 1, "prod/token")
    again = cli.json(*add)
    assert again["current_version"] == "v1" and again["status"] == "active"
    # A rollback with nothing to roll back to is a clear failure, and the secret is untouched.
    r = cli("secret", "rollback", "prod/token", "--tenant", "acme", "--reason", "try")
    assert_one_error_line(r, 1, "not restorable")
    assert_one_error_line(cli("secret", "rollback", "prod/token", "--tenant", "acme", "--reason", "x", "--to", "3"), 2)


# --- enum-like options and provider documentation (issue 18) -------------------------------------


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("secret", "list", "--tenant", "acme", "--status", "bogus"), ("active", "rotating", "revoked", "archived")),
        (("secret", "list", "--tenant", "acme", "--provider", "bogus"), ("redis_acl", "generated", "http")),
        (("secret", "add", "x", "--tenant", "acme", "--environment", "e", "--provider", "bogus"), ("redis_acl",)),
        (("incident", "timeline", "i", "--tenant", "acme", "--format", "yaml"), ("text", "json")),
        (("provider", "show", "bogus"), ("postgres_role", "mysql_user", "aws_iam_access_key")),
    ],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, tuple) and len(v) > 2 else None,
)
def test_unknown_enum_values_are_usage_errors(args: tuple[str, ...], allowed: tuple[str, ...], tmp_path: Path) -> None:
    r = run(args, base_env(LOCKZERO_MASTER_KEY=new_key_b64()), tmp_path)
    assert r.rc == 2, (r.out, r.err)
    assert_one_error_line(r, 2)
    assert r.out == ""
    assert "invalid choice: 'bogus'" in r.err_lines[0] or "invalid choice: 'yaml'" in r.err_lines[0]
    for value in allowed:
        assert repr(value) in r.err_lines[0], (value, r.err_lines[0])
    assert not (tmp_path / ".lockzero").exists()  # refused before anything was opened


def test_status_filter_still_filters(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    cli.ok(*ADD, "prod/db", "--provider", "generated")
    listed = cli.json("secret", "list", "--tenant", "acme", "--status", "active")
    assert [s["secret_id"] for s in listed["secrets"]] == ["prod/db"]
    assert cli.json("secret", "list", "--tenant", "acme", "--status", "revoked")["secrets"] == []
    dependent = ("dependent", "add", "prod/db", "--tenant", "acme", "--service", "s", "--environment", "e")
    r = cli(*dependent, "--delivery", "x")
    assert_one_error_line(r, 2, "pull, file:PATH or webhook:URL")


PROVIDER_KEYS = {
    "redis_acl": ({"url", "username"}, {"kill_clients", "acl_rules"}),
    "postgres_role": ({"dsn", "role"}, {"strategy", "clone_role", "terminate_sessions"}),
    "mysql_user": ({"dsn", "user"}, {"host", "strategy", "clone_user"}),
    "aws_iam_access_key": ({"user_name"}, {"region", "endpoint_url", "admin_access_key_id", "admin_secret_access_key"}),
    "generated": (set(), {"length", "prefix"}),
    "http": ({"create_url", "validate_url"}, {"retire_url", "revoke_url", "signing_secret"}),
}


@pytest.mark.parametrize("provider", sorted(PROVIDER_KEYS))
def test_provider_config_keys_are_documented(provider: str, tmp_path: Path) -> None:
    """`provider show`, `secret add --provider P --help` and the README name every key and the admin permissions."""
    required, optional = PROVIDER_KEYS[provider]
    shown = run(["provider", "show", provider, "--json"], base_env(), tmp_path)
    assert shown.rc == 0, shown.err
    doc = shown.json()
    assert {k["key"] for k in doc["config"] if k["required"]} == required
    assert {k["key"] for k in doc["config"] if not k["required"]} == optional
    assert all(len(k["description"]) > 10 for k in doc["config"])
    assert len(doc["admin_permissions"]) > 10

    text = run(["provider", "show", provider], base_env(), tmp_path).out
    helped = run(["secret", "add", "--provider", provider, "--help"], base_env(), tmp_path)
    assert helped.rc == 0 and helped.out.startswith("usage: lockzero secret add"), helped.err
    assert helped.out.endswith(text)  # the usual help, then the provider's page
    for key in required | optional:
        assert f"  {key} " in text, key
    assert "admin permissions: " + doc["admin_permissions"] in text
    # Without --provider the help says where to look, and nothing provider-specific.
    plain = run(["secret", "add", "--help"], base_env(), tmp_path).out
    assert "provider show P" in plain and "--config keys:" not in plain

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Provider config keys") :]
    section = section[: section.index("\n## ") if "\n## " in section else len(section)]
    block = section[section.index(f"`{provider}`") :]
    block = block[: (block + "\n\n").index("\n\n")]
    for key in required | optional:
        assert f"`{key}`" in block, (provider, key)
    assert "admin" in block.lower()
    assert not (tmp_path / ".lockzero").exists()
