"""A rotation in flight, live: its page names the dependents the shift step waits for, and its event stream
sends each change until the rotation finishes. Against a real `lockzero serve`, with a real pull dependent."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import running_server
from tests.api.support import Server
from tests.console.support import Browserless, signed_in

XSS_IMG = '"><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-live")) as s:
        yield s


def events_of(client: Browserless, rotation_id: str, into: list[tuple[str, str]]) -> None:
    """Read the stream until it ends, keeping (event, data) pairs."""
    url = f"{client.server.base}/rotation/events"
    with client.http.stream("GET", url, params={"id": rotation_id}, headers=client._headers(), timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name, data = "message", []
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line == "" and data:
                into.append((name, "\n".join(data)))
                name, data = "message", []


def pull(server: Server, secret_id: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{server.base}/api/v1/secrets/{secret_id}/current", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_a_rotation_waits_for_its_dependent_live(server: Server) -> None:
    tenant = server.tenant("live")
    server.secret(tenant, "prod/db")
    dep: dict[str, Any] = server.dependent(tenant, "prod/db", "billing")
    assert pull(server, "prod/db", dep["token"]).status_code == 200  # holds v1
    op = signed_in(server, tenant, "lena", "operator")
    op.get("/secret", id="prod/db")
    r = op.post("/secret/rotate", {"secret_id": "prod/db", "reason": XSS_IMG, "confirm": "yes"})
    rotation_id = r.text.split("rotation ", 1)[1].split(" ", 1)[0]
    assert rotation_id.startswith("rot_")

    # The shift step waits for billing: the page says so, and works as a plain page (no script needed).
    deadline = time.monotonic() + 20
    while "Waiting for dependents" not in (page := op.get("/rotation", id=rotation_id).text):
        assert time.monotonic() < deadline, page
        time.sleep(0.2)
    assert "billing (prod) via pull: holds v1" in page and 'id="refresh"' in page
    assert 'data-live="/rotation/events?id=' in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert rotation_id in op.get("/rotations").text

    seen: list[tuple[str, str]] = []
    reader = threading.Thread(target=events_of, args=(op, rotation_id, seen))
    reader.start()
    time.sleep(1.0)
    assert seen and seen[0][0] == "progress" and "billing (prod)" in seen[0][1]
    assert pull(server, "prod/db", dep["token"]).status_code == 200  # billing takes v2: the saga moves on
    reader.join(30)
    assert not reader.is_alive(), "the stream ends when the rotation finishes"
    assert seen[-1] == ("done", "completed")
    last = seen[-2][1]
    assert 'id="rotation-status" class="status completed"' in last and "billing" not in last
    # Each change was sent once, in order: the retire and verify steps appear after the wait.
    assert [n for n, _ in seen[:-1]] == ["progress"] * (len(seen) - 1) and len(seen) >= 3
    assert all(a != b for a, b in itertools.pairwise(seen))
    finished = op.get("/rotation", id=rotation_id).text
    assert "data-live" not in finished and 'id="refresh"' not in finished


def test_the_stream_needs_a_session_and_the_tenant(server: Server) -> None:
    a, b = server.tenant("la"), server.tenant("lb")
    server.secret(b, "prod/b")
    server.cli("secret", "policy", "prod/b", "--tenant", b, "--approvals", "1", check=False)
    b_key = server.key(b)
    asked = server.result(
        b_key, "tools/call", {"name": "rotate_secret", "arguments": {"secret_id": "prod/b", "reason": "b"}}
    )
    rotation_id = asked["structuredContent"]["rotation_id"]
    anonymous = Browserless(server)
    assert anonymous.get("/rotation/events", id=rotation_id).status_code == 303
    assert anonymous.get("/rotation", id=rotation_id).status_code == 303
    alice = signed_in(server, a, "alice", "viewer")
    assert alice.get("/rotation/events", id=rotation_id).status_code == 404
    assert alice.get("/rotation", id=rotation_id).status_code == 404
    assert rotation_id not in alice.get("/rotations").text
