"""Provider-test fixtures: one password-checking PostgreSQL cluster per session, one account per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers.support import Account, PgCluster, new_account

KINDS = ["postgres", "mysql"]
STRATEGIES = ["alternating", "single"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=[(k, s) for k in KINDS for s in STRATEGIES], ids=lambda p: f"{p[0]}-{p[1]}")
def account(request: pytest.FixtureRequest) -> Iterator[Account]:
    """A real account for every provider × strategy; the PostgreSQL ones live in the throwaway cluster."""
    kind, strategy = request.param
    cluster = request.getfixturevalue("pg_cluster") if kind == "postgres" else None
    acc = new_account(kind, strategy, cluster)
    try:
        yield acc
    finally:
        acc.drop()
