"""Shared fixtures: throwaway PostgreSQL databases and SQLite files, created per test and dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import psycopg
import pytest

if TYPE_CHECKING:
    from tests.providers_ext.support import MotoServer
    from tests.saga.support import AclUser

T = TypeVar("T")

ADMIN_DSN = os.environ.get("LOCKZERO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_db(dsn: str, dbname: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{dbname}"


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    name = f"lz_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(ADMIN_DSN, name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lockzero.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lockzero.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[object]:
    from lockzero.eventstore import open_store

    s = await open_store(store_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


def _until_teardown(resource: T, release: Callable[[], object]) -> Iterator[T]:
    """A fixture's body for a resource made outside it: yield it, release it however the test ended."""
    try:
        yield resource
    finally:
        release()


@pytest.fixture
def acl_user() -> Iterator[AclUser]:
    """A real Redis ACL user with one password (+@all), deleted afterwards."""
    from tests.saga.support import AclUser  # that module imports this one

    user = AclUser.create()
    yield from _until_teardown(user, user.delete)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """A moto server process (AWS IAM, STS, S3) per test module, stopped afterwards."""
    from tests.providers_ext.support import MotoServer

    server = MotoServer.start()
    yield from _until_teardown(server, server.stop)
