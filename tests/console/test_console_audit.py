"""The audit page against a real `lockzero serve`: search by actor, method, outcome, secret and time, paged;
exports (JSON lines, CSV) hold exactly what the search selects, escaped where people read them, and only the
operator's own tenant."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator

import pytest

from tests.api.conftest import running_server
from tests.api.support import Server
from tests.console.support import Browserless, signed_in

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-audit")) as s:
        yield s


def shown(page: str) -> list[list[str]]:
    """The audit table's rows as cell texts."""
    body = page.split('<table id="audit">', 1)[1].split("</table>", 1)[0]
    out = []
    for row in re.findall(r"<tr class=\"outcome-[a-z]+\">(.*?)</tr>", body, re.S):
        out.append([re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)])
    return out


def test_search_page_and_export(server: Server) -> None:
    tenant, other = server.tenant("aud"), server.tenant("aud-other")
    server.secret(tenant, "prod/a")
    server.secret(tenant, "prod/b")
    server.secret(other, "prod/secret-of-b")
    key, other_key = server.key(tenant), server.key(other)
    for _ in range(57):
        server.result(key, "tools/call", {"name": "get_secret_metadata", "arguments": {"secret_id": "prod/a"}})
    server.result(key, "tools/call", {"name": "get_secret_metadata", "arguments": {"secret_id": "prod/b"}})
    server.result(key, "tools/call", {"name": "get_secret_metadata", "arguments": {"secret_id": XSS}})
    server.result(other_key, "tools/call", {"name": "get_secret_metadata", "arguments": {"secret_id": "prod/a"}})
    # A failed sign-in is audited with the name as typed: markup there must stay text.
    assert Browserless(server).sign_in(tenant, XSS).status_code == 401
    viewer = signed_in(server, tenant, "vera", "viewer")  # reading the audit log needs no more than viewer

    first = viewer.get("/audit")
    assert first.status_code == 200
    rows = shown(first.text)
    assert len(rows) == 50 and 'id="older"' in first.text
    assert "<script>alert" not in first.text and "person:&lt;script&gt;alert(1)&lt;/script&gt;" in first.text
    older = viewer.get(
        "/audit?" + re.search(r'href="/audit\?([^"]+)" id="older"', first.text).group(1).replace("&amp;", "&")
    )
    everything = rows + shown(older.text)
    assert 'id="older"' not in older.text
    methods = [r[2] for r in everything]
    assert methods.count("get_secret_metadata") == 59 and "console.sign_in" in methods
    assert all("aud-other" not in " ".join(r) and "secret-of-b" not in " ".join(r) for r in everything)

    # Filters: secret, outcome, actor, method; a time range that ends before anything happened.
    by_secret = shown(viewer.get("/audit", secret="prod/b").text)
    assert [(r[2], r[3], r[4]) for r in by_secret] == [
        ("get_secret_metadata", "prod/b", "ok"),
        ("secret.add", "prod/b", "ok"),
    ]
    failures = shown(viewer.get("/audit", outcome="invalid").text)
    assert len(failures) == 1 and failures[0][2] == "get_secret_metadata"
    assert [r[2] for r in shown(viewer.get("/audit", outcome="denied").text)] == ["console.sign_in"]
    mine = shown(viewer.get("/audit", actor="vera").text)
    assert {r[2] for r in mine} == {"console.sign_in", "operator.setup"}
    assert len(shown(viewer.get("/audit", method="get_secret_metadata", secret="prod/a").text)) == 50
    assert shown(viewer.get("/audit", until="2000-01-01T00:00").text) == []
    assert len(shown(viewer.get("/audit", since="2000-01-01T00:00", secret="prod/b").text)) == 2
    bad = viewer.get("/audit", outcome="maybe")
    assert bad.status_code == 400 and "outcome must be one of" in bad.text
    assert viewer.get("/audit", since="yesterday").status_code == 400

    # Exports: every matching record (not just a page), newest first, as JSON lines and as CSV.
    jsonl = viewer.get("/audit/export.jsonl", method="get_secret_metadata")
    assert jsonl.status_code == 200 and "attachment" in jsonl.headers["content-disposition"]
    records = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(records) == 59 and {r["method"] for r in records} == {"get_secret_metadata"}
    assert {r["actor_id"] for r in records} == {key.key_id}
    assert json.loads(viewer.get("/audit/export.jsonl", outcome="denied").text)["actor_id"] == XSS  # data stays data
    table = list(csv.reader(io.StringIO(viewer.get("/audit/export.csv", secret="prod/a").text)))
    assert table[0] == ["at", "actor_id", "actor_type", "method", "secret_id", "outcome", "detail", "event_id"]
    assert len(table) == 1 + 57 + 1 and {r[4] for r in table[1:]} == {"prod/a"}  # 57 reads and its secret.add
    assert viewer.get("/audit/export.csv", outcome="maybe").status_code == 400
    # A cell a spreadsheet would run as a formula is exported as text.
    assert Browserless(server).sign_in(tenant, "=HYPERLINK(1)").status_code == 401
    denied = list(csv.reader(io.StringIO(viewer.get("/audit/export.csv", outcome="denied").text)))
    assert [r[1] for r in denied[1:]] == ["'=HYPERLINK(1)", XSS]
    # Exports are audited, with the search they ran.
    exports = shown(viewer.get("/audit", actor="vera", method="audit.export_csv").text)
    assert [(r[1], r[4], r[5]) for r in exports] == [
        ("person:vera", "ok", "outcome=denied"),
        ("person:vera", "ok", "secret=prod/a"),
    ]
