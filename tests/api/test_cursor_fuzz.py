"""Forged pagination cursors: every tool that takes one answers -32602 (or a page), never -32603."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Tenant
from tests.api.strategies import json_scalars

PAGED = {
    "list_secrets": {},
    "get_rotation_history": {"secret_id": "prod/db/password"},
    "get_active_incidents": {},
    "get_audit_log": {},
}


def _b64(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _check(shared: Tenant, tool: str, cursor: Any) -> None:
    r = shared.server.call(shared.key, tool, {**PAGED[tool], "cursor": cursor})
    assert r.status_code == 200, r.text
    body = r.json()
    if "error" in body:
        assert body["error"]["code"] == -32602, (tool, cursor, body)


# The cursors that reached the database as the wrong type or with a NUL (ProgrammingError, -32603).
KNOWN_BAD = [_b64(["a\u0000b"]), _b64([1, 2]), _b64(["2026-01-01", 5]), _b64([1.5]), _b64([2**70]), _b64([[1]])]


@pytest.mark.parametrize("tool", PAGED)
@pytest.mark.parametrize("cursor", KNOWN_BAD)
def test_known_bad_cursors_are_invalid_params(shared: Tenant, tool: str, cursor: str) -> None:
    _check(shared, tool, cursor)


scalars = json_scalars(30)
cursor_values = st.lists(st.recursive(scalars, lambda c: st.lists(c, max_size=3), max_leaves=5), max_size=3)
cursors = st.text(max_size=80) | cursor_values.map(_b64) | scalars | st.lists(scalars, max_size=2)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(tool=st.sampled_from(sorted(PAGED)), cursor=cursors)
def test_fuzzed_cursors_are_invalid_params(shared: Tenant, tool: str, cursor: Any) -> None:
    _check(shared, tool, cursor)
