"""`http` against a real HTTP service (tests/providers_ext/support.py: HookService) that implements the hook
contract, keeps credentials in memory and refuses any request whose signature does not verify."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Iterator

import pytest

from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.providers.base import Credential, ProviderError
from lockzero.providers.http_hooks import HttpHooksProvider
from tests.providers_ext.support import HookService, accepts, free_port

#: The test's hook service listens on loopback, which outbound targets may not reach by default.
LOOPBACK = OutboundPolicy.allowing("127.0.0.1")

SIGNING = "hook-signing-secret-0123456789abcdef"


@pytest.fixture
def service() -> Iterator[HookService]:
    with HookService(SIGNING) as s:
        yield s


@pytest.fixture
async def provider(service: HookService) -> AsyncIterator[HttpHooksProvider]:
    p = HttpHooksProvider(service.config(), outbound=LOOPBACK)
    yield p
    await p.close()


async def test_conformance(service: HookService, provider: HttpHooksProvider) -> None:
    v1 = Credential("value-in-use-today", "svc")
    service.seed(v1.value, "svc")
    assert await accepts(provider, v1)
    assert not await accepts(provider, Credential("never-issued", "svc"))

    new = Credential("value-lockzero-minted", "svc")
    v2 = await provider.create(new, v1)
    assert v2 == new
    assert await provider.create(new, v1) == v2  # a resumed saga repeats create: the service replays
    assert [a for _, a in service.calls].count("create") == 2 and len(service.creds) == 2
    assert await accepts(provider, v2) and await accepts(provider, v1)

    for _ in range(2):
        await provider.retire(v1)
        assert service.status(v1.value) == "retired" and not await accepts(provider, v1)
    for _ in range(2):
        await provider.restore(v1)
        assert await accepts(provider, v1)

    assert await provider.observed_usage() == []  # the contract has no usage hook

    await provider.retire(v1)
    await provider.discard(v1)  # grace over
    await provider.discard(v1)
    assert service.status(v1.value) is None and not await accepts(provider, v1)
    with pytest.raises(ProviderError) as info:
        await provider.restore(v1)  # gone: the service answers 409
    assert not info.value.retryable

    await provider.revoke([v2, v1])
    await provider.revoke([v2, v1])
    assert not await accepts(provider, v2) and service.creds == {}
    assert service.bad_signatures == 0


async def test_service_issued_values() -> None:
    with HookService(SIGNING, issue_values=True) as service:
        provider = HttpHooksProvider(service.config(), outbound=LOOPBACK)
        minted = Credential("value-lockzero-minted", None)
        issued = await provider.create(minted, None)
        assert issued.value != minted.value and issued.username and issued.username.startswith("svc-")
        assert await provider.create(minted, None) == issued  # same idempotency key, same answer
        assert len(service.creds) == 1 and await accepts(provider, issued)
        await provider.discard(issued)
        assert service.creds == {}
        await provider.close()


async def test_status_mapping(service: HookService, provider: HttpHooksProvider) -> None:
    cred = Credential("some-value", None)
    service.fail_next = [503]
    with pytest.raises(ProviderError) as info:
        await provider.retire(cred)
    assert info.value.retryable and "503" in str(info.value)
    service.fail_next = [429]
    with pytest.raises(ProviderError) as info:
        await provider.create(cred, None)
    assert info.value.retryable
    # A validate hook that gives no clear answer is "unknown", never a refusal and never success.
    service.fail_next = [400]
    assert (await provider.authenticate(cred)).verdict == "unknown"
    service.fail_next = [200]  # {"error": ...}: no boolean "valid"
    answer = await provider.authenticate(cred)
    assert answer.verdict == "unknown" and "valid" in answer.reason, answer

    gone = HttpHooksProvider(service.config(validate_url=f"http://127.0.0.1:{free_port()}/validate"), outbound=LOOPBACK)
    answer = await gone.authenticate(cred)
    assert answer.verdict == "unknown" and "unreachable" in answer.reason, answer
    await gone.close()

    no_retire = HttpHooksProvider(service.config(retire_url=None, revoke_url=None), outbound=LOOPBACK)
    with pytest.raises(ProviderError) as info:
        await no_retire.retire(cred)
    assert not info.value.retryable
    await no_retire.close()


async def test_signing_secret_and_values_never_in_errors_or_logs(
    service: HookService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "CANARY-signing-secret-zzzzzzzzzzzzzzzz"
    url_token = "CANARY-url-token"
    value = "CANARY-credential-value"
    wrong = HttpHooksProvider(
        service.config(signing_secret=canary, create_url=f"{service.url}/create?t={url_token}"), outbound=LOOPBACK
    )
    errors: list[ProviderError] = []
    for call in (
        lambda: wrong.create(Credential(value, None), None),
        lambda: wrong.retire(Credential(value, None)),
        lambda: wrong.revoke([Credential(value, None)]),
    ):
        with pytest.raises(ProviderError) as info:
            await call()
        assert "401" in str(info.value) and not info.value.retryable
        errors.append(info.value)
    refused_signature = await wrong.authenticate(Credential(value, None))
    assert refused_signature.verdict == "unknown" and "401" in refused_signature.reason, refused_signature
    await wrong.close()
    assert service.bad_signatures == 4 and service.creds == {}

    right = HttpHooksProvider(service.config(create_url=f"{service.url}/create?t={url_token}"), outbound=LOOPBACK)
    service.fail_next = [500]
    with pytest.raises(ProviderError) as info:
        await right.create(Credential(value, None), None)
    errors.append(info.value)
    await right.create(Credential(value, None), None)
    await right.close()

    messages = [repr(wrong), refused_signature.reason] + ["".join(traceback.format_exception(e)) for e in errors]
    for secret in (canary, SIGNING, url_token, value):
        assert not any(secret in t for t in messages), secret
    # httpx itself logs each request's full URL at INFO (hence no token in a hook URL's query), never a body.
    for secret in (canary, SIGNING, value):
        assert secret not in caplog.text, secret
    assert "HTTP Request: POST" in caplog.text  # logging was on
