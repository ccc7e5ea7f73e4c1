"""Argument parsing for every subcommand (SPEC §5).

Building the parser imports no engine module: value sets come from api/cli/choices.py (read when a value is
checked or help is printed) and handlers are imported per command (handlers.py). A command module of its own
registers with one line below (``x_cmds.add_parsers(...)``) and one in handlers.py; keep its engine imports
inside its handlers so `lockzero --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from lockzero.api.cli import audit_cmds, backup_cmds, completion, intake_cmds, report_cmds
from lockzero.api.cli.choices import INCIDENT_KINDS, PROVIDERS, ROTATION_STATUSES, SECRET_STATUSES, SEVERITIES
from lockzero.api.cli.operator_cmds import add_parsers as add_operator_parsers

TENANT_ENV = "LOCKZERO_TENANT"


class UsageParser(argparse.ArgumentParser):
    """argparse, with the one-line error and exit code 2 the contract promises."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, as every other failure: scripts and people read the first line of stderr.
        self.exit(2, f"lockzero: error: {message} (`{self.prog} --help` shows the usage)\n")


class _HelpWithProvider(argparse.Action):
    """`secret add --provider P --help`: the usual help, then P's --config keys and admin permissions."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: object) -> None:
        parser.print_help()
        provider = getattr(namespace, "provider", None)
        if isinstance(provider, str) and provider in PROVIDERS:
            from lockzero.providers.catalog import describe_provider

            print("\n" + describe_provider(provider))
        parser.exit()


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("lockzero")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        print(f"lockzero {found}")
        parser.exit()


def tenant_parent() -> UsageParser:
    """`--tenant`, defaulting to $LOCKZERO_TENANT (required when that is unset)."""
    default = os.environ.get(TENANT_ENV) or None
    parent = UsageParser(add_help=False)
    parent.add_argument(
        "--tenant", default=default, required=default is None, help=f"tenant name (default: ${TENANT_ENV})"
    )
    return parent


def _actions(sub: Any, name: str, help: str) -> Any:
    return sub.add_parser(name, help=help).add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=50, help="page size (at most 200)")
    parser.add_argument("--cursor", help="next page: the cursor the previous page printed")


def build_parser() -> UsageParser:
    common = UsageParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    tenant_opt = tenant_parent()

    p = UsageParser(
        prog="lockzero",
        description="Lockzero: rotate leaked credentials for real, with an audit trail. "
        "Configured by LOCKZERO_* environment variables (see README).",
    )
    p.add_argument("--version", action=_Version, help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=UsageParser)

    serve = sub.add_parser("serve", parents=[common], help="run the API (and the in-process worker in embedded mode)")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain (LOCKZERO_TLS_CERT)")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (LOCKZERO_TLS_KEY)")
    sub.add_parser("worker", parents=[common], help="run the arq saga worker (needs LOCKZERO_REDIS_URL)")
    sub.add_parser("demo", parents=[common], help="the whole incident story on the embedded default, with timings")
    sub.add_parser("migrate", parents=[common], help="create or upgrade the schema (idempotent)")
    sub.add_parser("replay", parents=[common], help="rebuild every read model from the events")

    tenant = _actions(sub, "tenant", "manage tenants")
    t_create = tenant.add_parser("create", parents=[common], help="create a tenant")
    t_create.add_argument("name")
    tenant.add_parser("list", parents=[common], help="list tenants")

    key = _actions(sub, "key", "manage MCP API keys")
    k_create = key.add_parser("create", parents=[common, tenant_opt], help="create a key (printed once)")
    k_create.add_argument("--name", default="", help="a label for the key")
    k_create.add_argument("--read-only", action="store_true", help="may call the read tools only")
    k_create.add_argument(
        "--scope", action="append", default=[], metavar="GLOB", help="limit to secret ids matching GLOB (repeatable)"
    )
    key.add_parser("list", parents=[common, tenant_opt], help="list keys (never their tokens)")
    k_revoke = key.add_parser("revoke", parents=[common], help="revoke a key now")
    k_revoke.add_argument("key_id")

    _secret_parsers(_actions(sub, "secret", "manage secrets"), common, tenant_opt)

    provider = _actions(sub, "provider", "what each provider needs")
    provider.add_parser("list", parents=[common], help="the providers and what they rotate")
    p_show = provider.add_parser(
        "show", parents=[common], help="a provider's --config keys and the permissions its admin credential needs"
    )
    p_show.add_argument("name", choices=PROVIDERS, metavar="P", help="one of: %(choices)s")

    _incident_parsers(_actions(sub, "incident", "incidents: list, show, resolve, replay"), common, tenant_opt)

    approve = sub.add_parser(
        "approve", parents=[common, tenant_opt], help="approve a rotation that policy holds for human approval"
    )
    approve.add_argument("rotation_id")
    approve.add_argument(
        "--as",
        dest="person",
        required=True,
        metavar="OPERATOR",
        help="the operator who approves (`lockzero operator add`; role operator or admin); asks for their password",
    )
    approve.add_argument(
        "--password-stdin", action="store_true", help="read the operator's password from stdin instead of a prompt"
    )
    approve.add_argument("--totp", default="", metavar="CODE", help="the operator's current TOTP code, if enrolled")

    rotation = _actions(sub, "rotation", "rotations, rollbacks and revocations across the tenant")
    r_list = rotation.add_parser("list", parents=[common, tenant_opt], help="rotations, newest first")
    r_list.add_argument("--secret", dest="secret_id", metavar="SECRET_ID", help="of one secret")
    r_list.add_argument(
        "--status", choices=ROTATION_STATUSES, metavar="S", help="one of: %(choices)s (in_flight: not finished)"
    )
    _page_options(r_list)
    r_show = rotation.add_parser("show", parents=[common, tenant_opt], help="one rotation, each step with its time")
    r_show.add_argument("rotation_id")

    dependent = _actions(sub, "dependent", "manage a secret's dependents")
    d_add = dependent.add_parser(
        "add", parents=[common, tenant_opt], help="attach a service (prints its token or signing secret once)"
    )
    d_add.add_argument("secret_id")
    d_add.add_argument("--service", required=True)
    d_add.add_argument("--environment", required=True)
    d_add.add_argument("--delivery", required=True, metavar="pull|file:PATH|webhook:URL")
    d_list = dependent.add_parser(
        "list", parents=[common, tenant_opt], help="a secret's dependents and the version each holds"
    )
    d_list.add_argument("secret_id")
    d_remove = dependent.add_parser(
        "remove", parents=[common, tenant_opt], help="detach a service: its pull token and signing secret stop working"
    )
    d_remove.add_argument("secret_id")
    d_remove.add_argument("dependent", metavar="DEPENDENT", help="its dependent id (dep_…) or SERVICE@ENVIRONMENT")

    audit_cmds.add_parsers(sub, common, UsageParser)
    report_cmds.add_parsers(sub, common, UsageParser)
    backup_cmds.add_parsers(sub, common, UsageParser)
    intake_cmds.add_parsers(sub, common, tenant_opt, UsageParser)
    add_operator_parsers(sub, common, tenant_opt, UsageParser)
    completion.add_parsers(sub, UsageParser)
    return p


def _secret_parsers(secret: Any, common: UsageParser, tenant_opt: UsageParser) -> None:
    parents = [common, tenant_opt]
    s_add = secret.add_parser(
        "add",
        parents=parents,
        help="register a secret",
        add_help=False,
        epilog="`lockzero secret add --provider P --help` (or `lockzero provider show P`) lists the --config keys"
        " of provider P and the permissions its admin credential needs.",
    )
    s_add.add_argument("-h", "--help", action=_HelpWithProvider, help="show this help (and provider P's config)")
    s_add.add_argument("secret_id")
    s_add.add_argument("--provider", required=True, choices=PROVIDERS, metavar="P", help="one of: %(choices)s")
    s_add.add_argument("--environment", required=True, help="e.g. prod, staging")
    s_add.add_argument(
        "--no-validate",
        action="store_true",
        help="register a --value-stdin value without checking that it authenticates (recorded)",
    )
    s_add.add_argument(
        "--allow-shared",
        action="store_true",
        help="allow a second secret on a provider account another secret already manages",
    )
    s_add.add_argument("--config", default=None, metavar="JSON|@FILE", help="provider config (encrypted at rest)")
    s_add.add_argument("--value-stdin", action="store_true", help="import the credential in use today as v1")
    s_add.add_argument("--label", action="append", default=[], metavar="K=V", help="label (repeatable)")
    _policy_options(s_add)
    s_add.add_argument("--no-agent-rotation", action="store_true", help="agents may not rotate this secret")
    s_add.add_argument("--auto-rotate", action="store_true", help="rotate automatically when due")

    s_show = secret.add_parser(
        "show", parents=parents, help="a secret's state: versions, policy, dependents, incidents, rotation in flight"
    )
    s_show.add_argument("secret_id")

    s_list = secret.add_parser("list", parents=parents, help="list secrets")
    s_list.add_argument("--environment")
    s_list.add_argument("--provider", choices=PROVIDERS, metavar="P", help="one of: %(choices)s")
    s_list.add_argument("--status", choices=SECRET_STATUSES, metavar="S", help="one of: %(choices)s")
    s_list.add_argument("--label", metavar="K[=V]")
    s_list.add_argument("--overdue-only", action="store_true")
    _page_options(s_list)

    s_rotate = secret.add_parser(
        "rotate", parents=parents, help="rotate now: new credential, dependents moved, old one retired and checked"
    )
    s_rotate.add_argument("secret_id")
    s_rotate.add_argument("--reason", required=True, help="why (history, audit, incidents)")
    s_rotate.add_argument(
        "--wait",
        action="store_true",
        help="print each step and wait for the end (always so without LOCKZERO_REDIS_URL: the CLI runs the saga)",
    )
    s_rotate.add_argument("--idempotency-key", metavar="KEY", help="the same key returns the same rotation (retries)")

    s_rollback = secret.add_parser(
        "rollback", parents=parents, help="make a previous version current again (waits for the end)"
    )
    s_rollback.add_argument("secret_id")
    s_rollback.add_argument("--reason", required=True, help="why (history, audit)")
    s_rollback.add_argument("--to", dest="to_version", metavar="vN", help="the version to restore (default: previous)")
    s_rollback.add_argument(
        "--force", action="store_true", help="restore it even though it is compromised (seen in a leak)"
    )

    s_revoke = secret.add_parser(
        "revoke",
        parents=parents,
        help="emergency stop: every version stops working at the provider now; final, dependents break",
    )
    s_revoke.add_argument("secret_id")
    s_revoke.add_argument("--reason", required=True, help="why (history, audit, the incident it opens)")
    s_revoke.add_argument("--idempotency-key", metavar="KEY", help="a retry with the same key changes nothing more")

    s_history = secret.add_parser("history", parents=parents, help="versions and past rotations, newest first")
    s_history.add_argument("secret_id")
    _page_options(s_history)

    s_delete = secret.add_parser(
        "delete",
        parents=parents,
        help="delete a secret: values crypto-shredded, history kept, the id can be registered again",
    )
    s_delete.add_argument("secret_id")
    s_delete.add_argument("--reason", default="deleted by an operator", help="recorded with the tombstone")

    s_policy = secret.add_parser("policy", parents=parents, help="change a secret's rotation policy")
    s_policy.add_argument("secret_id")
    _policy_options(s_policy)
    s_policy.add_argument("--grace", metavar="DURATION", help="how long retired versions stay restorable (7d)")
    s_policy.add_argument("--adoption-deadline", metavar="DURATION", help="how long shift waits for dependents (5m)")
    s_policy.add_argument("--notify", action="append", metavar="URL", help="notification webhook (repeatable)")
    agent = s_policy.add_mutually_exclusive_group()
    agent.add_argument("--no-agent-rotation", dest="agent_rotation", action="store_false", default=None)
    agent.add_argument("--agent-rotation", dest="agent_rotation", action="store_true")
    auto = s_policy.add_mutually_exclusive_group()
    auto.add_argument(
        "--auto-rotate", dest="auto_rotate", action="store_true", default=None, help="rotate automatically when due"
    )
    auto.add_argument("--no-auto-rotate", dest="auto_rotate", action="store_false", help="only report overdue")
    s_policy.add_argument(
        "--on-anomaly",
        choices=("notify", "rotate"),
        help="what a usage anomaly does besides notifying: rotate starts a rotation (approvals apply)",
    )


def _incident_parsers(incident: Any, common: UsageParser, tenant_opt: UsageParser) -> None:
    parents = [common, tenant_opt]
    i_list = incident.add_parser("list", parents=parents, help="unresolved incidents, newest first")
    i_list.add_argument("--kind", choices=INCIDENT_KINDS, metavar="K", help="one of: %(choices)s")
    i_list.add_argument("--severity", choices=SEVERITIES, metavar="S", help="one of: %(choices)s")
    i_list.add_argument("--secret", dest="secret_id", metavar="SECRET_ID", help="of one secret")
    i_list.add_argument("--all", action="store_true", help="resolved ones too (the newest 200, not paged)")
    _page_options(i_list)
    i_show = incident.add_parser("show", parents=parents, help="one incident: what, state, links, who resolved it")
    i_show.add_argument("incident_id")
    i_resolve = incident.add_parser("resolve", parents=parents, help="resolve by hand, saying why (recorded with you)")
    i_resolve.add_argument("incident_id")
    i_resolve.add_argument("--note", required=True, help="why it is resolved (timeline, audit)")
    timeline = incident.add_parser(
        "timeline", parents=parents, help="every event tied to an incident, in order, with actors"
    )
    timeline.add_argument("incident_id")
    timeline.add_argument("--format", choices=("text", "json"), default="text")


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-age", metavar="DURATION", help="rotate at least this often, e.g. 30d")
    parser.add_argument("--approvals", type=int, metavar="N", help="human approvals needed before a rotation")
