"""Outbound targets (issue 11, items 8 and 9): webhook, notify and http-hook URLs are http(s) only, never
link-local or cloud metadata, loopback/private only when LOCKZERO_OUTBOUND_ALLOW names them, checked at
registration and again at every connection (resolve once, connect to the checked address); and the URLs are
stored sealed and shown redacted. Real HTTP(S) servers on loopback, both backends."""

from __future__ import annotations

import datetime
import http.server
import secrets
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lockzero.engine.app import Engine
from lockzero.engine.commands import dependents, policies
from lockzero.engine.commands import secrets as engine_secrets
from lockzero.engine.config import ConfigError, load_settings
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.queries.metadata import policy_view
from lockzero.engine.saga import delivery, notify
from lockzero.engine.security.outbound import OutboundPolicy, redact_url
from lockzero.providers.base import Credential, ProviderError
from lockzero.providers.deliveries import DeliveryError, post_webhook
from lockzero.providers.http_hooks import HttpHooksProvider
from tests.engine.support import OPERATOR, all_events

STRICT = OutboundPolicy()
EVERYTHING = OutboundPolicy.allowing("0.0.0.0/0", "::/0", "localhost")


class Receiver:
    """A local HTTP(S) server that records each request's path and Host header; paths under /fail answer 500."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                received.append((self.path, self.headers.get("host", "")))
                self.send_response(500 if self.path.startswith("/fail") else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def add_webhook(engine: Engine, service: str, url: str) -> dependents.CreatedDependent:
    return await dependents.add_dependent(
        engine, "acme", OPERATOR, secret_id="prod/db", service=service, environment="prod", delivery=f"webhook:{url}"
    )


async def secret_now(engine: Engine) -> Any:
    events, _ = await engine.load(naming.secret_stream("acme", "prod/db"))
    secret = fold_secret(events)
    assert secret is not None
    return secret


# --- the policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.0.1", "fe80::1", "100.100.100.200", "fd00:ec2::254", "::ffff:169.254.169.254",
     "64:ff9b::a9fe:a9fe", "0.0.0.0", "::", "224.0.0.1", "255.255.255.255"],
)  # fmt: skip
def test_link_local_and_metadata_are_never_reachable(address: str) -> None:
    why = EVERYTHING.refusal("h", address)
    assert why is not None and "never" in why


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "fd12::1"])
def test_loopback_and_private_need_the_allow_list(address: str) -> None:
    assert "LOCKZERO_OUTBOUND_ALLOW" in (STRICT.refusal("h", address) or "")
    network = "::/0" if ":" in address else "0.0.0.0/0"
    assert OutboundPolicy.allowing(network).refusal("h", address) is None
    assert OutboundPolicy.allowing("h").refusal("H.", address) is None  # by name (case and root dot ignored)
    assert OutboundPolicy.allowing("other").refusal("h", address) is not None


def test_public_addresses_need_nothing() -> None:
    assert STRICT.refusal("h", "93.184.216.34") is None and STRICT.refusal("h", "2606:4700::1111") is None


def test_the_setting() -> None:
    env = {"LOCKZERO_DATABASE_URL": "postgresql://db/x"}
    s = load_settings({**env, "LOCKZERO_OUTBOUND_ALLOW": " 10.0.0.0/8, hooks.internal ,::1,"})
    assert s.outbound.refusal("x", "10.9.9.9") is None and s.outbound.refusal("hooks.internal", "192.168.0.1") is None
    assert s.outbound.refusal("x", "::1") is None and s.outbound.refusal("x", "127.0.0.1") is not None
    assert load_settings(env).outbound == STRICT
    for bad in ("10.0.0.0/33", "http://x", "a b", "-"):
        with pytest.raises(ConfigError, match="LOCKZERO_OUTBOUND_ALLOW"):
            load_settings({**env, "LOCKZERO_OUTBOUND_ALLOW": bad})


def test_redaction() -> None:
    a, b = "https://u:pw@h.example:8443/hooks/tok1?k=tok2", "https://h.example:8443/hooks/tok3"
    assert redact_url(a).startswith("https://h.example:8443/…#") and redact_url(a) != redact_url(b)
    assert all(s not in redact_url(a) for s in ("tok1", "tok2", "pw", "u:"))
    assert redact_url(redact_url(a)) == redact_url(a)
    assert redact_url("https://h.example/") == "https://h.example/"
    sneaky = "https://h.example/…#abcdef/tok4"
    assert "tok4" not in redact_url(sneaky)


# --- at registration -----------------------------------------------------------------------------


async def test_registration_refuses_and_stores_nothing(engine: Engine, acme: str, receiver: Receiver) -> None:
    engine.outbound = EVERYTHING
    before = len(await all_events(engine))
    refused = {
        "http://169.254.169.254/latest/meta-data/": "never",
        "http://[fd00:ec2::254]/": "never",
        "http://100.100.100.200/": "never",
        "file:///etc/passwd": "http",
        "gopher://127.0.0.1:70/_x": "http",
    }
    for url, why in refused.items():
        with pytest.raises(InvalidInput, match=why):
            await add_webhook(engine, "svc", url)
        with pytest.raises(InvalidInput, match=why):
            await policies.update_policy(engine, acme, "prod/db", OPERATOR, notify=(url,))
        hooks = {"create_url": url, "validate_url": "https://hooks.example/v"}
        with pytest.raises(InvalidInput, match=why):
            await engine_secrets.register_secret(
                engine, acme, OPERATOR, secret_id="prod/h", provider="http", environment="prod", config=hooks,
                value=b"in-use-value-1234",
            )  # fmt: skip

    engine.outbound = STRICT  # loopback by name or address: refused unless allowed
    local = f"http://localhost:{receiver.port}/hook"
    for url in (local, f"http://127.0.0.1:{receiver.port}/hook", f"http://2130706433:{receiver.port}/hook"):
        with pytest.raises(InvalidInput, match="LOCKZERO_OUTBOUND_ALLOW"):
            await add_webhook(engine, "svc", url)
    with pytest.raises(InvalidInput, match="LOCKZERO_OUTBOUND_ALLOW"):
        await policies.update_policy(engine, acme, "prod/db", OPERATOR, notify=(local,))
    assert len(await all_events(engine)) == before  # nothing stored
    assert receiver.requests == []

    engine.outbound = OutboundPolicy.allowing("localhost", "127.0.0.1", "::1")
    assert (await add_webhook(engine, "svc", local)).target == redact_url(local)


# --- at connection -------------------------------------------------------------------------------


async def test_every_connection_is_checked_again(engine: Engine, acme: str, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    dep = await add_webhook(engine, "svc", url)  # allowed when registered (the fixture allows 127.0.0.1)
    engine.outbound = STRICT  # then the allow-list narrows
    report = await delivery.deliver(engine, await secret_now(engine), 1, "secret.rotated")
    assert (report.delivered, report.failed) == (0, 1)
    assert receiver.requests == []
    events, _ = await engine.load(naming.adoption_stream(acme, "prod/db"))
    (failure,) = [e for e in events if isinstance(e, ev.DeliveryFailed)]
    assert failure.dependent_id == dep.dependent_id and "loopback" in failure.error and "/hook" not in failure.error

    engine.outbound = OutboundPolicy.allowing("127.0.0.1")
    report = await delivery.deliver(engine, await secret_now(engine), 1, "secret.rotated")
    assert (report.delivered, report.failed) == (1, 0) and receiver.paths() == ["/hook"]


async def test_the_name_is_resolved_and_checked_at_connect_time(receiver: Receiver) -> None:
    """`localhost` resolves to loopback: refused without an allow-list entry, reached with one; no retries."""
    url = f"http://localhost:{receiver.port}/by-name"
    with pytest.raises(DeliveryError, match="loopback") as err:
        await post_webhook(url, "whsec_x", b"{}", outbound=STRICT)
    assert "by-name" not in str(err.value)
    assert receiver.requests == []
    assert await post_webhook(url, "whsec_x", b"{}", outbound=OutboundPolicy.allowing("localhost")) == 204
    assert receiver.paths() == ["/by-name"] and receiver.requests[0][1] == f"localhost:{receiver.port}"


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/iam", "http://[::ffff:169.254.169.254]/", "file:///etc/passwd",
            "gopher://127.0.0.1:70/_x"],
)  # fmt: skip
async def test_deliveries_never_reach_metadata_or_other_schemes(url: str) -> None:
    with pytest.raises(DeliveryError, match=r"never|http"):
        await post_webhook(url, "whsec_x", b"{}", outbound=EVERYTHING, attempts=3)


async def test_http_provider_hooks_are_checked_at_connect_time(receiver: Receiver) -> None:
    config = {"create_url": f"http://localhost:{receiver.port}/create", "validate_url": "http://169.254.169.254/v"}
    provider = HttpHooksProvider(config, outbound=STRICT)
    try:
        with pytest.raises(ProviderError, match="loopback") as err:
            await provider.create(Credential("new-value-123456", None), None)
        assert err.value.retryable is False
        auth = await provider.authenticate(Credential("v", None))
        assert auth.verdict == "unknown" and "never" in auth.reason
    finally:
        await provider.close()
    gopher = HttpHooksProvider({**config, "create_url": "gopher://127.0.0.1:70/_x"}, outbound=EVERYTHING)
    with pytest.raises(ProviderError, match="http"):
        await gopher.create(Credential("new-value-123456", None), None)
    assert receiver.requests == []


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_verifies_the_host_name_although_the_connection_goes_to_the_checked_address(tmp_path: Path) -> None:
    """The certificate names only `localhost` (no IP): the handshake succeeds only if SNI and verification use
    the URL's host, not the address connected to."""
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver(server_tls)
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        async with OutboundPolicy.allowing("localhost").client(timeout=5, verify=trust) as client:
            r = await client.post(f"https://localhost:{receiver.port}/tls", content=b"{}")
        assert r.status_code == 204 and receiver.requests == [("/tls", f"localhost:{receiver.port}")]
    finally:
        receiver.close()


# --- sealed and redacted -------------------------------------------------------------------------


async def _dump(engine: Engine, store_url: str) -> str:
    """Every row of every table, as text (bytes as latin-1, so any ASCII canary inside a blob shows)."""
    list_tables = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if store_url.startswith("sqlite")
        else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    out: list[str] = []
    async with engine.store.reader() as tx:
        tables = [r[0] for r in await tx.fetchall(list_tables)]
        assert "lz_events" in tables and "rm_dependents" in tables
        for table in tables:
            for row in await tx.fetchall(f'SELECT * FROM "{table}"'):
                out.append(
                    table + repr([bytes(c).decode("latin-1") if isinstance(c, bytes | memoryview) else c for c in row])
                )
    return "\n".join(out)


async def test_urls_are_stored_sealed_shown_redacted_and_still_delivered(
    engine: Engine, acme: str, receiver: Receiver, store_url: str
) -> None:
    canaries = [f"canary{i}{secrets.token_hex(6)}" for i in range(5)]
    base = f"http://127.0.0.1:{receiver.port}"
    hook = f"{base}/hooks/{canaries[0]}?sig={canaries[1]}"
    failing_hook = f"{base}/fail/{canaries[4]}"
    notify_ok = f"{base}/notify?token={canaries[2]}"
    notify_failing = f"{base}/fail/notify?token={canaries[3]}"

    created = await add_webhook(engine, "billing", hook)
    await add_webhook(engine, "broken", failing_hook)
    policy = await policies.update_policy(engine, acme, "prod/db", OPERATOR, notify=(notify_ok, notify_failing))
    keys = await engine.tenant_keys(acme)
    shown = await notify.ensure_signing_secrets(engine, acme, "prod/db", policies.notify_urls(keys, "prod/db", policy))
    assert set(shown) == {redact_url(notify_ok), redact_url(notify_failing)}
    assert created.target == redact_url(hook) and policy.notify == (redact_url(notify_ok), redact_url(notify_failing))

    report = await delivery.deliver(engine, await secret_now(engine), 1, "secret.rotated")
    await notify.notify(engine, acme, "prod/db", "test.topic", "a test", {})
    await notify.drain()
    assert (report.delivered, report.failed) == (1, 1)
    paths = receiver.paths()
    assert f"/hooks/{canaries[0]}?sig={canaries[1]}" in paths and f"/notify?token={canaries[2]}" in paths
    assert f"/fail/notify?token={canaries[3]}" in paths and f"/fail/{canaries[4]}" in paths

    adoption, _ = await engine.load(naming.adoption_stream(acme, "prod/db"))
    assert {type(e).__name__ for e in adoption} >= {"DeliveryFailed", "NotificationSent", "NotificationFailed"}
    dumped = await _dump(engine, store_url)
    assert "prod/db" in dumped and redact_url(hook) in dumped  # the dump does see the rows
    for canary in canaries:
        assert canary not in dumped
    assert not any(c in repr(policy_view(policy)) for c in canaries)


async def test_urls_in_events_from_before_sealing_still_work(engine: Engine, acme: str, receiver: Receiver) -> None:
    """Events are immutable: a DependentAdded / policy written with the plain URL keeps delivering."""
    hook, notify_url = f"http://127.0.0.1:{receiver.port}/old-hook", f"http://127.0.0.1:{receiver.port}/old-notify"
    stream = naming.secret_stream(acme, "prod/db")
    old_dep = ev.DependentAdded(
        at=engine.clock.now(), tenant=acme, secret_id="prod/db", dependent_id="dep_old", service="legacy",
        environment="prod", delivery="webhook", target=hook,
    )  # fmt: skip
    old_policy = ev.SecretPolicyChanged(
        at=engine.clock.now(), tenant=acme, secret_id="prod/db", policy=ev.Policy(notify=(notify_url,))
    )
    await engine.append(stream, [old_dep, old_policy], OPERATOR)
    async with engine.store.transaction() as tx:  # the signing secret, as add_dependent stored it then
        keys = await engine.tenant_keys(acme)
        sealed = keys.seal(b"whsec_old", ref=dependents.signing_ref("dep_old"), version=0, purpose="signing")
        await tx.execute(
            "INSERT INTO lz_sealed (tenant, ref, ciphertext, created_at) VALUES (?, ?, ?, ?)",
            (acme, dependents.signing_ref("dep_old"), sealed, "2030-01-01T00:00:00+00:00"),
        )
    await notify.ensure_signing_secrets(engine, acme, "prod/db", (notify_url,))

    report = await delivery.deliver(engine, await secret_now(engine), 1, "secret.rotated")
    await notify.notify(engine, acme, "prod/db", "test.topic", "a test", {})
    await notify.drain()
    assert report.delivered == 1 and sorted(receiver.paths()) == ["/old-hook", "/old-notify"]
    async with engine.store.reader() as tx:
        (target,) = await tx.fetchone("SELECT target FROM rm_dependents WHERE dependent_id = 'dep_old'")
    assert target == redact_url(hook)  # the read model shows it redacted all the same
    secret = await secret_now(engine)
    assert policy_view(secret.policy).notification_rules == [redact_url(notify_url)]

    # The next policy change seals what was stored in clear.
    changed = await policies.update_policy(engine, acme, "prod/db", OPERATOR, required_approvals=1)
    assert changed.notify == (redact_url(notify_url),) and len(changed.notify_sealed) == 1
    assert msgspec.json.encode(changed).find(b"old-notify") == -1
