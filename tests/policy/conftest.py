"""Fixtures: the engine with a controllable clock (both backends), and a real `lockzero serve`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import BACKENDS, running_server
from tests.api.support import Server
from tests.engine.conftest import clock, engine, queue  # noqa: F401  (re-exported fixtures)


@pytest.fixture(scope="package", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded `lockzero serve` (in-process worker) per backend, shared by this package's API tests;
    each test makes its own tenant."""
    with running_server(request.param, tmp_path_factory.mktemp(f"serve-policy-{request.param}")) as s:
        yield s
