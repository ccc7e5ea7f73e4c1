"""Fixtures of the saga tests: the running product per queue mode, Redis ACL users, webhook receivers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.saga.support import ARQ, EMBEDDED, Stack, WebhookReceiver, running_stack

#: Redis database of arq's keys in the shared-stack tests (the fault tests use their own).
ARQ_DB = 5

MODES = [
    pytest.param(EMBEDDED, id="embedded"),
    pytest.param(ARQ, id="arq", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="module", params=MODES)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running product per module and queue mode; each test makes its own tenant, secret and ACL user."""
    with running_stack(request.param, tmp_path_factory.mktemp(f"saga-{request.param}"), ARQ_DB) as s:
        yield s


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver
