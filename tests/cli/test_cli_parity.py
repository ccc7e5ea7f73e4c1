"""CLI parity (issue 13): `secret show|rotate|revoke|history`, `incident list|show|resolve`, `dependent
list|remove`, `rotation list|show`, `audit list`, `--version`, LOCKZERO_TENANT and shell completion.

The real console script as a subprocess on both backends; results are checked through the output contract
(tables, --json, one error line, exit codes 0/1/2) and, for what a command changes, in the database itself.
"""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli.test_cli import Cli, assert_one_error_line, base_env, is_pg, new_key_b64, query, run

ACTOR = f"cli:{getpass.getuser()}"


@dataclass
class TenantCli(Cli):
    """A CLI whose environment names the tenant (LOCKZERO_TENANT), so no command passes --tenant."""

    tenant: str = "acme"

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "LOCKZERO_TENANT": self.tenant}


@pytest.fixture
def tcli(store_url: str, tmp_path: Path) -> TenantCli:
    c = TenantCli(tmp_path, store_url, new_key_b64())
    if is_pg(store_url):
        c.ok("migrate")
    c.ok("tenant", "create", "acme")
    return c


def add_generated(c: Cli, secret_id: str = "prod/token") -> None:
    c.ok("secret", "add", secret_id, "--provider", "generated", "--environment", "prod")


# --- secrets: show, rotate (waiting, with steps), history, rotations --------------------------------


def test_show_rotate_history_and_rotations(tcli: TenantCli) -> None:
    add_generated(tcli)
    shown = tcli.json("secret", "show", "prod/token")
    assert (shown["current_version"], shown["status"], shown["in_flight_rotation_id"]) == ("v1", "active", None)
    lines = tcli.ok("secret", "show", "prod/token").out.splitlines()
    assert lines[0].split() == ["FIELD", "VALUE"] and ["provider", "generated"] in [line.split() for line in lines]

    text = tcli.ok("secret", "rotate", "prod/token", "--reason", "quarterly", "--wait")
    lines = text.out.splitlines()
    assert lines[0].endswith("rotating prod/token v1 -> v2")
    assert [line.split()[:2] for line in lines[1:-1]] == [
        ["create", "completed"],
        ["validate", "completed"],
        ["shift", "completed"],
        ["retire", "completed"],
        ["verify", "completed"],
    ]
    assert "completed; verified: yes" in lines[-1]
    first = lines[0].split(":")[0]

    # --json: one document, the verification (as rollback prints); the same key answers with the same rotation.
    done = tcli.json("secret", "rotate", "prod/token", "--reason", "again", "--idempotency-key", "k-1")
    assert done["verified"] is True and done["status"] == "completed"
    again = tcli.json("secret", "rotate", "prod/token", "--reason", "again", "--idempotency-key", "k-1")
    assert again["rotation_id"] == done["rotation_id"]

    hist = tcli.json("secret", "history", "prod/token")
    assert [r["rotation_id"] for r in hist["rotations"]] == [done["rotation_id"], first]
    assert [(v["version"], v["state"]) for v in hist["versions"]] == [
        ("v1", "retired"),
        ("v2", "retired"),
        ("v3", "current"),
    ]
    page = tcli.json("secret", "history", "prod/token", "--limit", "1")
    assert len(page["rotations"]) == 1 and page["next_cursor"]
    rest = tcli.json("secret", "history", "prod/token", "--limit", "1", "--cursor", page["next_cursor"])
    assert [r["rotation_id"] for r in rest["rotations"]] == [first]
    assert (
        tcli.ok("secret", "history", "prod/token").out.splitlines()[0] == "versions: v1 retired, v2 retired, v3 current"
    )

    listed = tcli.json("rotation", "list")
    assert [r["rotation_id"] for r in listed["rotations"]] == [done["rotation_id"], first]
    assert tcli.json("rotation", "list", "--status", "in_flight")["rotations"] == []
    assert len(tcli.json("rotation", "list", "--secret", "prod/token", "--status", "completed")["rotations"]) == 2
    assert tcli.json("rotation", "list", "--secret", "prod/other")["rotations"] == []
    table = tcli.ok("rotation", "list").out.splitlines()
    assert table[0].split()[:4] == ["ROTATION", "SECRET", "KIND", "STATUS"] and first in table[2]

    detail = tcli.json("rotation", "show", first)
    assert (detail["secret_id"], detail["status"], detail["reason"], detail["actor_id"]) == (
        "prod/token",
        "completed",
        "quarterly",
        ACTOR,
    )
    assert [s["step"] for s in detail["steps"]] == ["create", "validate", "shift", "retire", "verify"]
    assert all(s["duration_ms"] is not None and s["duration_ms"] >= 0 for s in detail["steps"])
    assert tcli.ok("rotation", "show", first).out.splitlines()[2].split()[:2] == ["STEP", "STATUS"]
    assert_one_error_line(tcli("rotation", "show", "rot_nope"), 1, "no rotation")

    # Every one of those commands is in the audit trail with the CLI's actor, like an MCP call.
    methods = [e["method"] for e in tcli.json("audit", "list", "--limit", "200")["events"]]
    for method in ("secret.add", "secret.show", "secret.rotate", "secret.history", "rotation.list", "rotation.show"):
        assert method in methods, method
    rotates = tcli.json("audit", "list", "--method", "secret.rotate", "--secret", "prod/token")["events"]
    assert len(rotates) == 3 and {(e["actor_id"], e["outcome"]) for e in rotates} == {(ACTOR, "ok")}
    failed = tcli.json("audit", "list", "--outcome", "invalid")["events"]
    assert [e["method"] for e in failed] == ["rotation.show"]
    audit_table = tcli.ok("audit", "list", "--method", "secret.rotate").out.splitlines()
    assert audit_table[0].split() == ["AT", "ACTOR", "METHOD", "SECRET", "OUTCOME", "DETAIL"] and len(audit_table) == 4


def test_rotate_failure_exits_1_and_changes_nothing(tcli: TenantCli) -> None:
    add_generated(tcli)
    tcli.ok("secret", "revoke", "prod/token", "--reason", "leaked in a paste")
    r = tcli("secret", "rotate", "prod/token", "--reason", "after the revoke", "--wait")
    assert_one_error_line(r, 1, "revoked")
    assert tcli.json("rotation", "list", "--status", "in_flight")["rotations"] == []
    assert_one_error_line(tcli("secret", "rotate", "prod/missing", "--reason", "x"), 1, "prod/missing")
    assert_one_error_line(tcli("secret", "show", "bad id!"), 2, "secret_id")


# --- revoke and incidents ------------------------------------------------------------------------


def test_revoke_then_incident_list_show_resolve(tcli: TenantCli) -> None:
    add_generated(tcli)
    add_generated(tcli, "prod/other")
    revoked = tcli.json("secret", "revoke", "prod/token", "--reason", "abused right now")
    assert revoked["status"] == "revoked" and revoked["revoked_versions"] == ["v1"]
    incident = revoked["incident_id"]
    assert tcli.json("secret", "show", "prod/token")["status"] == "revoked"

    active = tcli.json("incident", "list")["incidents"]
    assert [(i["incident_id"], i["kind"], i["secret_id"]) for i in active] == [
        (incident, "leaked_credential", "prod/token")
    ]
    assert tcli.json("incident", "list", "--secret", "prod/other")["incidents"] == []
    assert tcli.json("incident", "list", "--kind", "usage_anomaly")["incidents"] == []
    table = tcli.ok("incident", "list").out.splitlines()
    assert table[0].split()[:4] == ["INCIDENT", "KIND", "SEVERITY", "SECRET"] and table[1].startswith(incident)

    shown = tcli.json("incident", "show", incident)
    assert shown["status"] != "resolved" and shown["resolved_by"] is None and shown["resolved_at"] is None

    assert_one_error_line(tcli("incident", "resolve", incident, "--note", "   "), 2, "why")
    resolved = tcli.json("incident", "resolve", incident, "--note", "credential replaced by prod/token-2")
    assert resolved["status"] == "resolved" and resolved["resolution"] == "credential replaced by prod/token-2"
    assert resolved["resolved_by"] == f"operator:{ACTOR}"
    assert_one_error_line(tcli("incident", "resolve", incident, "--note", "twice"), 1, "already resolved")
    assert tcli.json("incident", "show", incident)["resolution"] == "credential replaced by prod/token-2"
    assert_one_error_line(tcli("incident", "show", "inc_nope"), 1, "no incident")

    assert tcli.json("incident", "list")["incidents"] == []
    everything = tcli.json("incident", "list", "--all")["incidents"]
    assert [(i["incident_id"], i["status"]) for i in everything] == [(incident, "resolved")]
    timeline = tcli.ok("incident", "timeline", incident).out
    assert "resolved: credential replaced by prod/token-2" in timeline and f"operator:{ACTOR}" in timeline
    human = tcli.ok("incident", "show", incident).out
    assert "credential replaced by prod/token-2" in human and f"by operator:{ACTOR}" in human

    # The resolution is an event of the incident's stream, with its actor: replay gives the same read model.
    before = query(tcli.url, "SELECT incident_id, status FROM rm_incidents")
    tcli.ok("replay")
    assert query(tcli.url, "SELECT incident_id, status FROM rm_incidents") == before == [(incident, "resolved")]
    methods = [e["method"] for e in tcli.json("audit", "list", "--limit", "200")["events"]]
    assert methods.count("incident.resolve") == 3 and "secret.revoke" in methods
    outcomes = [e["outcome"] for e in tcli.json("audit", "list", "--method", "incident.resolve")["events"]]
    assert outcomes == ["error", "ok", "invalid"]


# --- dependents ----------------------------------------------------------------------------------


def test_dependent_list_and_remove(tcli: TenantCli) -> None:
    add_generated(tcli)
    dep = ("dependent", "add", "prod/token", "--environment", "prod")
    pull = tcli.json(*dep, "--service", "api", "--delivery", "pull")
    hook = tcli.json(*dep, "--service", "hooks", "--delivery", "webhook:https://hooks.example/lockzero?token=canary")
    tcli.json(*dep, "--service", "batch", "--delivery", "file:/etc/app/token")

    listed = tcli.json("dependent", "list", "prod/token")["dependents"]
    assert [(d["service"], d["delivery"]) for d in listed] == [("api", "pull"), ("batch", "file"), ("hooks", "webhook")]
    assert "canary" not in str(listed) and pull["token"] not in str(listed)
    text = tcli.ok("dependent", "list", "prod/token").out
    assert text.splitlines()[0].split()[:3] == ["DEPENDENT", "SERVICE", "ENV"] and pull["dependent_id"] in text
    signing_ref = f"dependent/{hook['dependent_id']}/signing"
    assert query(tcli.url, f"SELECT count(*) FROM lz_sealed WHERE ref = '{signing_ref}'") == [(1,)]

    gone = tcli.json("dependent", "remove", "prod/token", "hooks@prod")
    assert (gone["dependent_id"], gone["service"]) == (hook["dependent_id"], "hooks")
    assert query(tcli.url, f"SELECT count(*) FROM lz_sealed WHERE ref = '{signing_ref}'") == [(0,)]
    out = tcli.ok("dependent", "remove", "prod/token", pull["dependent_id"]).out
    assert out.startswith(f"removed {pull['dependent_id']}: api (prod, pull)")
    # The pull token is known again as a removed one (a later pull with it is an anomaly), not as a dependent.
    assert query(tcli.url, "SELECT count(*) FROM rm_dependents WHERE token_hash IS NOT NULL") == [(0,)]
    assert query(tcli.url, "SELECT count(*) FROM rm_removed_tokens") == [(1,)]
    assert [d["service"] for d in tcli.json("dependent", "list", "prod/token")["dependents"]] == ["batch"]
    assert tcli.json("secret", "show", "prod/token")["dependents_count"] == 1

    assert_one_error_line(tcli("dependent", "remove", "prod/token", "api@prod"), 1, "no dependent")
    assert_one_error_line(tcli("dependent", "list", "prod/missing"), 1, "prod/missing")
    removes = tcli.json("audit", "list", "--method", "dependent.remove")["events"]
    assert [e["outcome"] for e in removes] == ["invalid", "ok", "ok"]


# --- LOCKZERO_TENANT, --version, bad input -------------------------------------------------------


def test_lockzero_tenant_is_the_default_and_flag_wins(tcli: TenantCli) -> None:
    add_generated(tcli)
    assert [s["secret_id"] for s in tcli.json("secret", "list")["secrets"]] == ["prod/token"]
    tcli.ok("tenant", "create", "beta")
    assert tcli.json("secret", "list", "--tenant", "beta")["secrets"] == []
    ghost = TenantCli(tcli.cwd, tcli.url, tcli.master_key, tenant="ghost")
    assert_one_error_line(ghost("secret", "list"), 1, "ghost")
    assert [s["secret_id"] for s in ghost.json("secret", "list", "--tenant", "acme")["secrets"]] == ["prod/token"]
    assert_one_error_line(ghost("incident", "list", "--json"), 1, "ghost")


def test_version(tmp_path: Path) -> None:
    r = run(["--version"], base_env(), tmp_path)
    assert (r.rc, r.out, r.err) == (0, f"lockzero {version('lockzero')}\n", "")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("secret", "show", "x"), "--tenant"),
        (("incident", "list"), "--tenant"),
        (("secret", "rotate", "x", "--tenant", "acme"), "--reason"),
        (("secret", "revoke", "x", "--tenant", "acme"), "--reason"),
        (("incident", "resolve", "inc_1", "--tenant", "acme"), "--note"),
        (("incident", "list", "--tenant", "acme", "--kind", "bogus"), "leaked_credential"),
        (("rotation", "list", "--tenant", "acme", "--status", "bogus"), "in_flight"),
        (("audit", "list", "--tenant", "acme", "--outcome", "bogus"), "denied"),
        (("dependent", "remove", "x", "--tenant", "acme"), "DEPENDENT"),
        (("secret", "history", "x", "--tenant", "acme", "--limit", "many"), "--limit"),
        (("completion", "fish"), "bash"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else None,
)
def test_usage_errors_exit_2(args: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    r = run(args, base_env(LOCKZERO_MASTER_KEY=new_key_b64()), tmp_path)
    assert r.rc == 2 and r.out == "" and "Traceback" not in r.err
    assert len(r.err_lines) == 1 and needle in r.err_lines[0], r.err
    assert not (tmp_path / ".lockzero").exists()


def test_every_command_has_json_and_a_handler() -> None:
    from lockzero.api.cli.completion import table
    from lockzero.api.cli.handlers import HANDLERS
    from lockzero.api.cli.parser import build_parser

    rows = dict(table(build_parser()))
    commands = {path: [w for w in words if not w.startswith("-")] for path, words in rows.items() if " -" not in path}
    leaves = [path for path, words in commands.items() if not any(f"{path} {w}" in rows for w in words)]
    assert len(leaves) >= 45
    for path in leaves:
        assert "--json" in rows[path], path
        command, *action = path.split()[1:]
        assert (command, action[0] if action else None) in HANDLERS, path


# --- completion ----------------------------------------------------------------------------------


def _complete(script: str, words: list[str]) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), with the generated script loaded."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f'{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _lockzero; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    out = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return [w for w in out.stdout.splitlines() if w]


def test_bash_completion_script_parses_and_completes(tmp_path: Path) -> None:
    r = run(["completion", "bash"], base_env(), tmp_path)
    assert r.rc == 0 and r.err == ""
    syntax = subprocess.run(["bash", "-n"], input=r.out, capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, syntax.stderr
    assert _complete(r.out, ["lockzero", "sec"]) == ["secret"]
    assert _complete(r.out, ["lockzero", "secret", "ro"]) == ["rotate", "rollback"]
    assert _complete(r.out, ["lockzero", "secret", "add", "--provider", "re"]) == ["redis_acl"]
    assert _complete(r.out, ["lockzero", "--json", "incident", "list", "--kind", "le"]) == ["leaked_credential"]
    assert "--wait" in _complete(r.out, ["lockzero", "secret", "rotate", "prod/x", "--"])
    offered = _complete(r.out, ["lockzero", "completion", ""])
    assert [w for w in offered if not w.startswith("-")] == ["bash", "zsh"]


def _pairs() -> list[tuple[list[str], str]]:
    from lockzero.api.cli.completion import table
    from lockzero.api.cli.parser import build_parser

    rows = dict(table(build_parser()))
    return [
        (path.split(), w)
        for path, words in rows.items()
        if " -" not in path
        for w in words
        if not w.startswith("-") and f"{path} {w}" in rows
    ]


PAIRS = _pairs()


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(PAIRS), cut=st.integers(min_value=0, max_value=20), noise=st.sampled_from(["", "--json"]))
def test_bash_completes_every_subcommand_from_any_prefix(pair: tuple[list[str], str], cut: int, noise: str) -> None:
    """Whatever the command path and however much of the next word is typed, bash offers that word."""
    from lockzero.api.cli.completion import script
    from lockzero.api.cli.parser import build_parser

    path, word = pair
    typed = word[: min(cut, len(word))]
    offered = _complete(script("bash", build_parser()), [*path, *([noise] if noise else []), typed])
    assert word in offered and all(w.startswith(typed) for w in offered)


def test_zsh_completion_script_names_every_command(tmp_path: Path) -> None:
    r = run(["completion", "zsh"], base_env(), tmp_path)
    assert r.rc == 0 and r.out.startswith("#compdef lockzero\n") and "compdef _lockzero lockzero" in r.out
    for path in ("'lockzero secret'", "'lockzero incident'", "'lockzero dependent remove'", "'lockzero rotation show'"):
        assert f"\n    {path} " in r.out, path
