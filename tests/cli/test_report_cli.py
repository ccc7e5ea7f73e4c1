"""`lockzero report compliance` as a subprocess (issue 16): JSON on stdout, HTML to a file, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.test_cli import LOCKZERO, TIMEOUT, base_env, new_key_b64


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOCKZERO, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_report_compliance_json_and_html(tmp_path: Path) -> None:
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY=new_key_b64())
    assert _run(env, tmp_path, "tenant", "create", "acme").returncode == 0
    for secret_id, extra in (("prod/db", ("--max-age", "30d")), ("dev/x", ())):
        add = _run(
            env, tmp_path, "secret", "add", secret_id, "--tenant", "acme", "--provider", "generated",
            "--environment", "prod", "--label", "team=<i>ops</i>", *extra,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr

    out = _run(env, tmp_path, "report", "compliance", "--tenant", "acme", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [s["secret_id"] for s in report["secrets"]] == ["dev/x", "prod/db"]
    assert report["coverage"]["with_max_age"] == 1 and report["coverage"]["percent_with_max_age"] == 50.0
    assert report["overdue"] == [] and report["rotations"]["total"] == 0

    page = tmp_path / "report.html"
    html = _run(env, tmp_path, "report", "compliance", "--tenant", "acme", "--format", "html", "--out", str(page))
    assert html.returncode == 0 and html.stdout == "" and "report.html" in html.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "prod/db" in text and "<script" not in text

    for args, code, needle in (
        (("--tenant", "nobody"), 1, "no tenant"),
        (("--tenant", "acme", "--days", "0"), 2, "--days"),
        (("--tenant", "acme", "--out", str(tmp_path / "missing" / "r.html")), 2, "does not exist"),
        (("--tenant", "acme", "--format", "pdf"), 2, "invalid choice"),
    ):
        r = _run(env, tmp_path, "report", "compliance", *args)
        assert r.returncode == code and r.stderr.count("\n") == 1 and needle in r.stderr, (args, r.stderr)
