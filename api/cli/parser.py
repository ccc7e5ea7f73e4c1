"""Argument parsing for every subcommand (SPEC §5)."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from lockzero.api.cli import audit_cmds, backup_cmds, intake_cmds, report_cmds
from lockzero.api.cli.operator_cmds import add_parsers as add_operator_parsers
from lockzero.engine.domain.events import SecretStatus
from lockzero.providers.catalog import PROVIDERS, describe_provider

PROVIDER_NAMES = tuple(PROVIDERS)


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
        if provider in PROVIDERS:
            print("\n" + describe_provider(provider))
        parser.exit()


def build_parser() -> UsageParser:
    common = UsageParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    tenant_opt = UsageParser(add_help=False)
    tenant_opt.add_argument("--tenant", required=True, help="tenant name")

    p = UsageParser(
        prog="lockzero",
        description="Lockzero: rotate leaked credentials for real, with an audit trail. "
        "Configured by LOCKZERO_* environment variables (see README).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=UsageParser)

    serve = sub.add_parser("serve", parents=[common], help="run the API (and the in-process worker in embedded mode)")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain (LOCKZERO_TLS_CERT)")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (LOCKZERO_TLS_KEY)")
    sub.add_parser("worker", parents=[common], help="run the arq saga worker (needs LOCKZERO_REDIS_URL)")
    sub.add_parser("demo", parents=[common], help="the whole incident story on the embedded default, with timings")
    sub.add_parser("migrate", parents=[common], help="create or upgrade the schema (idempotent)")
    sub.add_parser("replay", parents=[common], help="rebuild every read model from the events")

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )
    t_create = tenant.add_parser("create", parents=[common], help="create a tenant")
    t_create.add_argument("name")
    tenant.add_parser("list", parents=[common], help="list tenants")

    key = sub.add_parser("key", help="manage MCP API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )
    k_create = key.add_parser("create", parents=[common, tenant_opt], help="create a key (printed once)")
    k_create.add_argument("--name", default="", help="a label for the key")
    k_create.add_argument("--read-only", action="store_true", help="may call the read tools only")
    k_create.add_argument(
        "--scope", action="append", default=[], metavar="GLOB", help="limit to secret ids matching GLOB (repeatable)"
    )
    key.add_parser("list", parents=[common, tenant_opt], help="list keys (never their tokens)")
    k_revoke = key.add_parser("revoke", parents=[common], help="revoke a key now")
    k_revoke.add_argument("key_id")

    secret = sub.add_parser("secret", help="manage secrets").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )
    s_add = secret.add_parser(
        "add",
        parents=[common, tenant_opt],
        help="register a secret",
        add_help=False,
        epilog="`lockzero secret add --provider P --help` (or `lockzero provider show P`) lists the --config keys"
        " of provider P and the permissions its admin credential needs.",
    )
    s_add.add_argument("-h", "--help", action=_HelpWithProvider, help="show this help (and provider P's config)")
    s_add.add_argument("secret_id")
    s_add.add_argument(
        "--provider", required=True, choices=PROVIDER_NAMES, metavar="P", help=f"one of: {', '.join(PROVIDER_NAMES)}"
    )
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
    s_delete = secret.add_parser(
        "delete",
        parents=[common, tenant_opt],
        help="delete a secret: values crypto-shredded, history kept, the id can be registered again",
    )
    s_delete.add_argument("secret_id")
    s_delete.add_argument("--reason", default="deleted by an operator", help="recorded with the tombstone")
    s_rollback = secret.add_parser(
        "rollback", parents=[common, tenant_opt], help="make a previous version current again (waits for the end)"
    )
    s_rollback.add_argument("secret_id")
    s_rollback.add_argument("--reason", required=True, help="why (history, audit)")
    s_rollback.add_argument("--to", dest="to_version", metavar="vN", help="the version to restore (default: previous)")
    s_rollback.add_argument(
        "--force", action="store_true", help="restore it even though it is compromised (seen in a leak)"
    )
    s_add.add_argument("--config", default=None, metavar="JSON|@FILE", help="provider config (encrypted at rest)")
    s_add.add_argument("--value-stdin", action="store_true", help="import the credential in use today as v1")
    s_add.add_argument("--label", action="append", default=[], metavar="K=V", help="label (repeatable)")
    _policy_options(s_add)
    s_add.add_argument("--no-agent-rotation", action="store_true", help="agents may not rotate this secret")
    s_add.add_argument("--auto-rotate", action="store_true", help="rotate automatically when due")
    s_list = secret.add_parser("list", parents=[common, tenant_opt], help="list secrets")
    s_list.add_argument("--environment")
    s_list.add_argument("--provider", choices=PROVIDER_NAMES, metavar="P", help=f"one of: {', '.join(PROVIDER_NAMES)}")
    statuses = get_args(SecretStatus)
    s_list.add_argument("--status", choices=statuses, metavar="S", help=f"one of: {', '.join(statuses)}")
    s_list.add_argument("--label", metavar="K[=V]")
    s_list.add_argument("--overdue-only", action="store_true")
    s_list.add_argument("--limit", type=int, default=50)
    s_list.add_argument("--cursor")
    s_policy = secret.add_parser("policy", parents=[common, tenant_opt], help="change a secret's rotation policy")
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

    provider = sub.add_parser("provider", help="what each provider needs").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )
    provider.add_parser("list", parents=[common], help="the providers and what they rotate")
    p_show = provider.add_parser(
        "show", parents=[common], help="a provider's --config keys and the permissions its admin credential needs"
    )
    p_show.add_argument("name", choices=PROVIDER_NAMES, metavar="P", help=f"one of: {', '.join(PROVIDER_NAMES)}")

    incident = sub.add_parser("incident", help="incidents").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )
    timeline = incident.add_parser(
        "timeline", parents=[common, tenant_opt], help="every event tied to an incident, in order, with actors"
    )
    timeline.add_argument("incident_id")
    timeline.add_argument("--format", choices=("text", "json"), default="text")

    approve = sub.add_parser(
        "approve", parents=[common, tenant_opt], help="approve a rotation that policy holds for human approval"
    )
    approve.add_argument("rotation_id")
    approve.add_argument("--as", dest="person", required=True, metavar="PERSON", help="who approves (recorded)")

    dependent = sub.add_parser("dependent", help="manage a secret's dependents").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=UsageParser
    )
    d_add = dependent.add_parser(
        "add", parents=[common, tenant_opt], help="attach a service (prints its token or signing secret once)"
    )
    d_add.add_argument("secret_id")
    d_add.add_argument("--service", required=True)
    d_add.add_argument("--environment", required=True)
    d_add.add_argument("--delivery", required=True, metavar="pull|file:PATH|webhook:URL")
    audit_cmds.add_parsers(sub, common, UsageParser)
    backup_cmds.add_parsers(sub, common, UsageParser)
    report_cmds.add_parsers(sub, common, UsageParser)
    intake_cmds.add_parsers(sub, common, tenant_opt, UsageParser)
    add_operator_parsers(sub, common, tenant_opt, UsageParser)
    return p


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-age", metavar="DURATION", help="rotate at least this often, e.g. 30d")
    parser.add_argument("--approvals", type=int, metavar="N", help="human approvals needed before a rotation")
