"""One declaration per provider (issue 12): registry.py lists the modules, each module's SPEC says the rest,
and validation, `lockzero provider`, registration, the saga's provider access and the README all read it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockzero.engine.commands.registration import account_of
from lockzero.engine.security.crypto import MasterKey
from lockzero.providers import reference
from lockzero.providers.base import SignalSource
from lockzero.providers.catalog import ProviderConfigError, issue_initial_value, username_of, validate_config
from lockzero.providers.registry import MODULES, PROVIDERS, ProviderNotAvailable, build_provider, mint_value, spec_of

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: A valid config for every provider (a new provider adds its own: test_every_provider_has_a_sample checks).
SAMPLES: dict[str, dict[str, Any]] = {
    "redis_acl": {"url": "redis://default:PW@127.0.0.1:6379/0", "username": "app"},
    "postgres_role": {"dsn": "postgresql://admin:PW@127.0.0.1:5432/app", "role": "app", "strategy": "single"},
    "mysql_user": {"dsn": "mysql://root:PW@127.0.0.1:3306/test", "user": "app", "host": "%"},
    "aws_iam_access_key": {"user_name": "app", "endpoint_url": "http://127.0.0.1:5000"},
    "generated": {"length": 24, "prefix": "whsec_"},
    "http": {"create_url": "https://hooks.example.com/create", "validate_url": "https://hooks.example.com/v"},
}
#: The key holding the admin connection URL (its password must never reach an account string).
URL_KEYS = {"redis_acl": "url", "postgres_role": "dsn", "mysql_user": "dsn"}


def test_every_provider_has_a_sample_and_every_declaring_module_is_listed() -> None:
    assert set(SAMPLES) == set(MODULES)
    declaring = set()
    for path in (ROOT / "providers").glob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "SPEC" for t in n.targets) for n in tree.body):
            declaring.add(f"lockzero.providers.{path.stem}")
    assert declaring == set(MODULES.values())  # a module with a SPEC but no registry line would be silently unused


@pytest.mark.parametrize("name", list(MODULES))
def test_declarations_are_consistent(name: str) -> None:
    spec = spec_of(name)
    assert spec.name == name
    assert not spec.required.keys() & spec.optional.keys()
    assert all(len(meaning) > 10 for meaning in spec.keys.values())
    assert len(spec.summary) > 20 and len(spec.permissions) > 10
    assert bool(spec.strategies) == ("strategy" in spec.keys)
    assert spec.username_key is None or spec.username_key in spec.required
    assert set(spec.outbound_url_keys) <= spec.keys.keys()
    assert spec.first_credential != "minted" or spec.mint is not None
    # The sample validates, builds a provider of that name, and says who the user is.
    cfg = validate_config(name, SAMPLES[name])
    provider = build_provider(name, cfg)
    assert provider.name == name
    # The watcher polls exactly the providers that can answer it.
    assert spec.usage_signals == isinstance(provider, SignalSource)
    assert username_of(name, cfg) == (str(cfg[spec.username_key]) if spec.username_key else None)
    first = issue_initial_value(name, cfg)
    assert (first is not None) == (spec.first_credential == "minted")


def test_unknown_names() -> None:
    with pytest.raises(ProviderConfigError, match=r"unknown provider 'nope'; one of: aws_iam_access_key, generated"):
        validate_config("nope", {})
    with pytest.raises(ProviderNotAvailable, match="provider nope cannot rotate in this build yet"):
        build_provider("nope", {})
    assert account_of("nope", {}) is None
    assert len(mint_value("nope", {})) == 40
    assert "nope" not in PROVIDERS and list(PROVIDERS) == list(MODULES)


def test_generated_mints_from_its_declaration_and_keeps_the_live_set() -> None:
    cfg = validate_config("generated", SAMPLES["generated"])
    value = mint_value("generated", cfg)
    assert value.startswith("whsec_") and len(value) == len("whsec_") + 24
    live = {value}
    provider = build_provider("generated", cfg, live)
    assert provider.live is live  # type: ignore[attr-defined]
    with pytest.raises(ProviderConfigError, match="'length' must be an integer from 16 to 512"):
        validate_config("generated", {"length": 8})


@given(
    name=st.sampled_from(sorted(MODULES)),
    drop=st.sets(st.integers(0, 5)),
    extra=st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
)
def test_missing_and_undeclared_keys_are_named(name: str, drop: set[int], extra: str) -> None:
    spec = spec_of(name)
    required = list(spec.required)
    missing = sorted(required[i] for i in drop if i < len(required))
    cfg = {k: v for k, v in SAMPLES[name].items() if k not in missing}
    if missing:
        with pytest.raises(ProviderConfigError) as exc:
            validate_config(name, cfg)
        assert str(exc.value) == f"provider {name} needs config key(s): {', '.join(missing)}"
    elif extra not in spec.keys:
        with pytest.raises(ProviderConfigError) as exc:
            validate_config(name, {**cfg, extra: "x"})
        assert str(exc.value) == f"provider {name} does not take config key(s): {extra}"
    else:
        assert validate_config(name, cfg) == cfg


@given(
    name=st.sampled_from(sorted(n for n in MODULES if spec_of(n).account is not None)),
    password=st.from_regex(r"canary[A-Za-z0-9]{8,20}", fullmatch=True),
    other_user=st.from_regex(r"[a-z]{1,10}", fullmatch=True),
)
def test_accounts_compare_servers_and_users_never_passwords(name: str, password: str, other_user: str) -> None:
    cfg = dict(SAMPLES[name])
    if name in URL_KEYS:
        cfg[URL_KEYS[name]] = str(cfg[URL_KEYS[name]]).replace("PW", password)
    account = account_of(name, cfg)
    assert account is not None and password not in account
    assert account == account_of(name, SAMPLES[name])  # another admin password: the same account
    user_key = spec_of(name).username_key or "user_name"
    renamed = {**cfg, user_key: other_user}
    assert (account_of(name, renamed) == account) == (other_user == cfg[user_key])


def test_naming_and_validating_providers_imports_no_provider_module() -> None:
    """The CLI and validation read declarations lazily: boto3 (~0.2 s) loads only when AWS is used or described."""
    script = textwrap.dedent(
        """
        import json
        import sys
        import lockzero.api.cli.main
        from lockzero.providers.catalog import validate_config
        validate_config("generated", {"length": 20})
        loaded = sorted(m for m in sys.modules if m.startswith("lockzero.providers.") or m == "boto3")
        print(json.dumps(loaded))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout))
    assert "boto3" not in loaded and "lockzero.providers.aws_iam" not in loaded, loaded
    assert "lockzero.providers.generated" in loaded


def test_readme_reference_is_rendered_from_the_declarations(tmp_path: Path) -> None:
    text = README.read_text()
    assert reference.splice(text) == text, "run: python -m lockzero.providers.reference README.md"
    for name, spec in PROVIDERS.items():
        assert f"`{name}`: {spec.summary}" in text
    # The script finds a stale copy, and rewrites it to the current rendering.
    stale = tmp_path / "README.md"
    stale.write_text(text.replace(spec_of("http").summary, "an old summary"))
    assert reference.main([str(stale), "--check"]) == 1
    assert reference.main([str(stale)]) == 0
    assert stale.read_text() == text
    assert reference.main([str(tmp_path / "missing.md")]) == 2


TOKEN_SUMMARY = "An internal token per issuer, minted and delivered by Lockzero."
TOKEN_MODULE = '''
"""A provider added by a test: one module, one registry line, nothing else touched."""
from lockzero.providers.generated import GeneratedProvider
from lockzero.providers.spec import ProviderSpec


class TokenProvider(GeneratedProvider):
    name = "token"


SPEC = ProviderSpec(
    name="token",
    summary="An internal token per issuer, minted and delivered by Lockzero.",
    required={"issuer": "the service that accepts these tokens"},
    optional={"strategy": "fresh (the only one; shown to test strategies)"},
    permissions="none: there is no admin credential",
    factory=lambda config, ctx: TokenProvider({"prefix": "tok_"}, ctx.live),
    first_credential="minted",
    strategies=frozenset({"fresh"}),
    account=lambda cfg: f"token issuer {cfg['issuer']}",
    mint=lambda cfg: TokenProvider({"prefix": "tok_"}).mint(),
    lockzero_is_authority=True,
)
'''

RUNNER = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from lockzero.providers import registry
registry.MODULES["token"] = "token_provider"  # the one registry line
from lockzero.api.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_new_provider_is_one_module_and_one_registry_line(tmp_path: Path) -> None:
    """Through the real CLI: documented, validated, registered with its account check, and rotated."""
    assert TOKEN_SUMMARY in TOKEN_MODULE
    (tmp_path / "token_provider.py").write_text(TOKEN_MODULE)
    env = {
        "PATH": "/usr/bin:/bin",
        "LOCKZERO_MASTER_KEY": MasterKey.generate().to_base64(),
        "LOCKZERO_DATABASE_URL": f"sqlite:///{tmp_path / 'lz.db'}",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-W", "ignore", "-c", RUNNER, str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )

    listed = cli("provider", "list", "--json")
    assert {"provider": "token", "summary": TOKEN_SUMMARY} in json.loads(listed.stdout), listed.stderr
    shown = cli("provider", "show", "token").stdout
    assert "  issuer    required  the service that accepts these tokens" in shown
    assert cli("secret", "add", "x/y", "--tenant", "t", "--provider", "token", "--help").stdout.endswith(shown)

    assert cli("tenant", "create", "acme").returncode == 0
    add = ("secret", "add", "--tenant", "acme", "--environment", "prod", "--provider", "token", "--json")
    bad = cli(*add, "svc/a", "--config", '{"issuer": "billing", "strategy": "stale"}')
    assert (bad.returncode, bad.stderr.strip()) == (2, "lockzero: error: strategy must be one of: fresh")
    first = cli(*add, "svc/a", "--config", '{"issuer": "billing"}')
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["current_version"] == "v1"
    shared = cli(*add, "svc/b", "--config", '{"issuer": "billing"}')
    assert shared.returncode == 1 and "already manages this token account (token issuer billing)" in shared.stderr
    assert cli(*add, "svc/b", "--config", '{"issuer": "search"}').returncode == 0

    rotated = cli("secret", "rotate", "svc/a", "--tenant", "acme", "--reason", "test", "--json")
    assert rotated.returncode == 0, rotated.stderr
    shown_secret = json.loads(cli("secret", "show", "svc/a", "--tenant", "acme", "--json").stdout)
    assert shown_secret["current_version"] == "v2", shown_secret
