"""`lockzero serve` on a busy port: one line naming the port and LOCKZERO_PORT, exit 1, and nothing before it
claims to listen (or prints the first start's key)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.cli.test_cli import assert_one_error_line, base_env, new_key_b64, run


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = base_env(
            LOCKZERO_PORT=str(port),
            LOCKZERO_MASTER_KEY=new_key_b64(),
            LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}",
        )
        r = run(["serve"], env, tmp_path)
    line = assert_one_error_line(r, 1, str(port), "LOCKZERO_PORT", "already in use")
    assert "listening" not in r.out and "lz_mcp_" not in r.out, r.out
    assert r.out == "", r.out
    # Refused before the store was opened: the first start did not happen half-way.
    assert not (tmp_path / "lz.db").exists(), line


def test_serve_on_a_host_it_cannot_bind_names_the_settings(tmp_path: Path) -> None:
    env = base_env(
        LOCKZERO_HOST="192.0.2.1",  # TEST-NET-1: not an address of this machine
        LOCKZERO_MASTER_KEY=new_key_b64(),
        LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}",
    )
    r = run(["serve"], env, tmp_path)
    assert_one_error_line(r, 1, "192.0.2.1", "LOCKZERO_HOST", "LOCKZERO_PORT")
    assert r.out == ""
