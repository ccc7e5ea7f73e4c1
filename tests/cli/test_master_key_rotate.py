"""`lockzero master-key rotate` (issue 14), on both backends: after it, a `lockzero serve` started with only the new
key hands every dependent its value and accepts every MCP key issued before; the previous key alone opens
nothing; a rerun changes nothing; a missing or wrong previous key stops with one line, nothing changed."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.api.support import REPO, Key, Server
from tests.cli.test_cli import Cli, assert_one_error_line, is_pg, new_key_b64, run

CONFIG = '{"url": "redis://default:pw@127.0.0.1:6379/0", "username": "app"}'
TENANTS = ("acme", "beta")


def _fill(cli: Cli) -> tuple[dict[str, str], dict[str, str], dict[str, Key]]:
    if is_pg(cli.url):
        cli.ok("migrate")
    values, pull_tokens, mcp_keys = {}, {}, {}
    for tenant in TENANTS:
        values[tenant] = f"canary-{tenant}-{secrets.token_hex(8)}"
        cli.ok("tenant", "create", tenant)
        cli.ok(
            "secret", "add", "prod/db", "--tenant", tenant, "--provider", "redis_acl", "--environment", "prod",
            "--config", CONFIG, "--value-stdin", "--no-validate", stdin=values[tenant].encode(),
        )  # fmt: skip
        dep = cli.json("dependent", "add", "prod/db", "--tenant", tenant, "--service", "api", "--environment",
                       "prod", "--delivery", "pull")  # fmt: skip
        pull_tokens[tenant] = dep["token"]
        created = cli.json("key", "create", "--tenant", tenant)
        mcp_keys[tenant] = Key(tenant, created["key_id"], created["key"])
    return values, pull_tokens, mcp_keys


def _rotate(store_url: str, tmp_path: Path, new: str, **previous: str) -> tuple[int, str, str]:
    env = {**Cli(tmp_path, store_url, new).env, **previous}
    r = run(["master-key", "rotate", "--json"], env, tmp_path)
    return r.rc, r.out, r.err


def test_after_rotation_only_the_new_key_serves_every_secret(store_url: str, tmp_path: Path) -> None:
    old, new = new_key_b64(), new_key_b64()
    owner = Cli(tmp_path, store_url, old)
    values, pull_tokens, mcp_keys = _fill(owner)

    missing = run(["master-key", "rotate"], Cli(tmp_path, store_url, new).env, tmp_path)
    assert "LOCKZERO_MASTER_KEY_PREVIOUS" in assert_one_error_line(missing, 1)
    wrong = run(["master-key", "rotate"], {**Cli(tmp_path, store_url, new).env,
                "LOCKZERO_MASTER_KEY_PREVIOUS": new_key_b64()}, tmp_path)  # fmt: skip
    assert_one_error_line(wrong, 1, "open under neither")
    assert owner.json("tenant", "list")["tenants"]  # the refused rotations changed nothing

    previous_file = tmp_path / "previous.key"
    previous_file.write_text(old + "\n")
    rc, out, err = _rotate(store_url, tmp_path, new, LOCKZERO_MASTER_KEY_PREVIOUS_FILE=str(previous_file))
    assert rc == 0, err
    assert '"rewrapped": [\n    "acme",\n    "beta"\n  ]' in out and '"token_key": "stored"' in out
    rc, out, err = _rotate(store_url, tmp_path, new, LOCKZERO_MASTER_KEY_PREVIOUS=old)
    assert rc == 0 and '"rewrapped": []' in out and '"token_key": "already"' in out, (out, err)

    # The previous key alone no longer opens the store.
    assert_one_error_line(owner("tenant", "list"), 1, "does not open")
    # Each tenant's audit trail records the rotation, and the chains still verify.
    rotated = Cli(tmp_path, store_url, new)
    assert "verified" in rotated.ok("audit", "verify").out
    for tenant in TENANTS:
        exported = rotated.ok("audit", "export", "--tenant", tenant).out
        assert exported.count('"master-key.rotate"') == 1, exported

    server = Server(
        "rotated",
        store_url,
        tmp_path,
        {
            **Cli(tmp_path, store_url, new).env,
            "LOCKZERO_RATE_LIMIT": "0",
            "PYTHONPATH": str(REPO),
            "PYTHONWARNINGS": "ignore::RuntimeWarning",
        },
    )
    server.start()
    try:
        for tenant in TENANTS:
            r = httpx.get(
                f"{server.base}/api/v1/secrets/prod/db/current",
                headers={"Authorization": f"Bearer {pull_tokens[tenant]}"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            assert r.json()["value"] == values[tenant]
            listed = server.result(mcp_keys[tenant], "list_secrets", {})
            assert [s["secret_id"] for s in listed["secrets"]] == ["prod/db"]
    finally:
        server.stop()
    logs = server.logs()
    for value in values.values():
        assert value not in logs and value not in out and value not in err
