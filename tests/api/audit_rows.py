"""Reading rm_audit straight from the server's database (SQLite file or PostgreSQL): the refusals
with no tenant are in no tenant's get_audit_log, so the tests look where the server wrote them."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import psycopg

from tests.api.support import Server

SYSTEM_TENANT = "_system"
_SUMMARY = re.compile(r"summary: count=(\d+) ")


@dataclass(frozen=True)
class AuditRow:
    tenant: str
    at: str
    actor_id: str
    actor_type: str
    method: str
    secret_id: str | None
    outcome: str
    detail: str

    @property
    def count(self) -> int:
        """How many calls the row stands for: a summary's count, else one."""
        m = _SUMMARY.match(self.detail)
        return int(m.group(1)) if m else 1

    @property
    def is_summary(self) -> bool:
        return _SUMMARY.match(self.detail) is not None


def audit_rows(server: Server, tenant: str) -> list[AuditRow]:
    sql = (
        "SELECT tenant, at, actor_id, actor_type, method, secret_id, outcome, detail FROM rm_audit"
        " WHERE tenant = {p} ORDER BY position"
    )
    if server.backend == "sqlite":
        path = server.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path, timeout=10) as conn:
            rows = conn.execute(sql.format(p="?"), (tenant,)).fetchall()
    else:
        with psycopg.connect(server.database_url) as conn:
            rows = conn.execute(sql.format(p="%s"), (tenant,)).fetchall()
    return [AuditRow(*r) for r in rows]
