"""Fixtures: the real `lockzero serve` in a subprocess, once per backend, and tenants made with the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.support import Key, Server, start_server
from tests.conftest import fresh_pg_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@contextmanager
def running_server(backend: str, workdir: Path, **env: str) -> Iterator[Server]:
    """Start `lockzero serve` on a fresh store of ``backend``; stop it (and drop the store) afterwards."""
    if backend == "sqlite":
        server = start_server(backend, workdir, f"sqlite:///{workdir / 'lockzero.db'}", **env)
        try:
            yield server
        finally:
            server.stop()
        return
    with fresh_pg_database() as url:
        server = start_server(backend, workdir, url, **env)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server of one backend (rate limit off). Tests make their own tenants on it."""
    with running_server(request.param, tmp_path_factory.mktemp(f"serve-{request.param}")) as s:
        yield s


@dataclass
class Tenant:
    server: Server
    name: str
    key: Key
    secrets: list[str]


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A fresh tenant with one read-write key and two secrets (prod/db/password, staging/api-token)."""
    name = server.tenant()
    key = server.key(name)
    server.secret(name, "prod/db/password", labels={"team": "payments"})
    server.secret(name, "staging/api-token", environment="staging")
    return Tenant(server, name, key, ["prod/db/password", "staging/api-token"])


@pytest.fixture(scope="module")
def shared(server: Server) -> Tenant:
    """One tenant per module and backend for tests that only read (protocol and transport checks)."""
    name = server.tenant("shared")
    key = server.key(name)
    server.secret(name, "prod/db/password", labels={"team": "payments"})
    server.secret(name, "staging/api-token", environment="staging")
    return Tenant(server, name, key, ["prod/db/password", "staging/api-token"])
