"""`aws_iam_access_key` against a real moto server process that checks request signatures.

What moto shows: keys created, listed with their status, deactivated, deleted; GetCallerIdentity answers only for
an existing key signed with its own secret (the server enforces signatures after its bootstrap); GetAccessKeyLastUsed;
the session-revoking user policy is stored. What it cannot: moto's STS still accepts an *inactive* key (AWS refuses
it), so a retired key reads as refused here only because validate also asks IAM for the key's status; AWS's
propagation delay (a new or changed key takes seconds to reach STS) does not exist in moto; and moto refuses every
session token once it checks signatures, so that revoke cuts live sessions shows only as the stored deny policy.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator

import pytest

from lockzero.providers import aws_iam
from lockzero.providers.aws_iam import AwsIamKeyProvider
from lockzero.providers.base import Credential, ProviderError
from tests.providers_ext.support import MotoServer, accepts


@pytest.fixture
def user(moto: MotoServer) -> tuple[str, Credential]:
    """A fresh IAM user and its key in use today, imported as v1 (so without a recorded key id)."""
    name, _key_id, secret = moto.new_user()
    return name, Credential(secret, None)


@pytest.fixture
async def provider(moto: MotoServer, user: tuple[str, Credential]) -> AsyncIterator[AwsIamKeyProvider]:
    p = AwsIamKeyProvider(moto.config(user[0]))
    yield p
    await p.close()


def only_key(moto: MotoServer, name: str) -> str:
    (key_id,) = moto.keys(name)
    return key_id


async def test_conformance(moto: MotoServer, user: tuple[str, Credential], provider: AwsIamKeyProvider) -> None:
    name, v1 = user
    v1_id = only_key(moto, name)
    assert await accepts(provider, v1)
    assert not await accepts(provider, Credential("not-the-secret", None))
    assert not await accepts(provider, Credential(v1.value, "AKIAXXXXXXXXXXXXXXXX"))

    # create: AWS chooses the secret; the key id becomes the version's username.
    minted = Credential("value-lockzero-minted", v1.username)
    attempt = await provider.create(minted, v1)
    assert attempt.value != minted.value and attempt.username == attempt.handle and attempt.username != v1_id
    # The saga resumes after a crash and calls create again: the first key (its secret lost) is an orphan.
    v2 = await provider.create(minted, v1)
    assert moto.keys(name) == {v1_id: "Active", v2.username: "Active"}
    assert not await accepts(provider, attempt)  # deleted keys are refused
    assert await accepts(provider, v2) and await accepts(provider, v1)

    # retire / restore the imported key (found by signing with its secret); both idempotent.
    for _ in range(2):
        await provider.retire(v1)
        assert moto.keys(name)[v1_id] == "Inactive" and not await accepts(provider, v1)
    for _ in range(2):
        await provider.restore(v1)
        assert moto.keys(name)[v1_id] == "Active" and await accepts(provider, v1)

    usage = {u.detail.split()[0]: u for u in await provider.observed_usage()}
    assert set(usage) == {v1_id, v2.username}
    assert usage[v2.username].at is not None and "sts" in usage[v2.username].detail

    # grace period over: the scheduler discards the retired key, which deletes it.
    await provider.retire(v1)
    await provider.discard(v1)
    await provider.discard(v1)
    assert moto.keys(name) == {v2.username: "Active"}
    assert not await accepts(provider, v1)

    # the next rotation starts from a recorded key id
    v3 = await provider.create(Credential("another-minted", v2.username), v2)
    assert set(moto.keys(name)) == {v2.username, v3.username}

    await provider.revoke([v3, v2])
    await provider.revoke([v3, v2])
    assert moto.keys(name) == {}
    policy = moto.client("iam").get_user_policy(UserName=name, PolicyName=aws_iam.REVOKE_SESSIONS_POLICY)
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and "aws:TokenIssueTime" in deny["Condition"]["DateLessThan"]
    assert not await accepts(provider, v3) and not await accepts(provider, v2)


async def test_discard_compensates_create(
    moto: MotoServer, user: tuple[str, Credential], provider: AwsIamKeyProvider
) -> None:
    name, v1 = user
    v2 = await provider.create(Credential("minted", None), v1)
    await provider.discard(v2)
    await provider.discard(v2)
    assert moto.keys(name) == {only_key(moto, name): "Active"} and await accepts(provider, v1)
    # create failed before reporting a key: the minted value matches no key, and nothing is guessed away.
    await provider.discard(Credential("minted", None))
    assert len(moto.keys(name)) == 1


async def test_create_refuses_when_the_current_key_is_unknown(
    moto: MotoServer, user: tuple[str, Credential], provider: AwsIamKeyProvider
) -> None:
    name, v1 = user
    await provider.create(Credential("minted", None), v1)
    before = moto.keys(name)
    with pytest.raises(ProviderError) as info:
        await provider.create(Credential("minted-2", None), Credential("not-any-secret", None))
    assert not info.value.retryable
    assert moto.keys(name) == before


async def test_create_without_a_previous_key_deletes_nothing(
    moto: MotoServer, user: tuple[str, Credential], provider: AwsIamKeyProvider
) -> None:
    name, v1 = user
    v1_id = only_key(moto, name)
    first = await provider.create(Credential("minted", None), None)
    assert set(moto.keys(name)) == {v1_id, first.username}
    assert await accepts(provider, v1) and await accepts(provider, first)
    with pytest.raises(ProviderError):
        await provider.create(Credential("minted", None), None)  # two keys, neither known to be current
    assert set(moto.keys(name)) == {v1_id, first.username}


async def test_restore_of_an_unrecorded_inactive_key(
    moto: MotoServer, user: tuple[str, Credential], provider: AwsIamKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_iam, "PROPAGATION_POLLS", 2)
    name, v1 = user
    v1_id = only_key(moto, name)
    v2 = await provider.create(Credential("minted", None), v1)
    await provider.retire(v1)
    # A secret that matches no key: the only inactive key is tried, found wrong, and put back.
    with pytest.raises(ProviderError) as info:
        await provider.restore(Credential("some-other-secret", None))
    assert not info.value.retryable
    assert moto.keys(name) == {v1_id: "Inactive", v2.username: "Active"}
    # A deleted key cannot come back.
    await provider.discard(v1)
    with pytest.raises(ProviderError) as info:
        await provider.restore(Credential(v1.value, v1_id))
    assert not info.value.retryable and "NoSuchEntity" in str(info.value)


async def test_admin_secret_never_in_errors_or_logs(
    moto: MotoServer, user: tuple[str, Credential], caplog: pytest.LogCaptureFixture
) -> None:
    name, v1 = user
    caplog.set_level(logging.DEBUG)
    canary = "CANARYadminSECRETxxxxxxxxxxxxxxxxxxxxxx"
    wrong = AwsIamKeyProvider(moto.config(name, admin_secret_access_key=canary))
    errors: list[ProviderError] = []
    for call in (
        lambda: wrong.create(Credential("minted", None), v1),
        lambda: wrong.retire(Credential(v1.value, "AKIAXXXXXXXXXXXXXXXX")),
        lambda: wrong.observed_usage(),
        lambda: wrong.revoke([Credential(v1.value, "AKIAXXXXXXXXXXXXXXXX")]),
    ):
        with pytest.raises(ProviderError) as info:
            await call()
        errors.append(info.value)
    await wrong.close()
    assert all("SignatureDoesNotMatch" in str(e) and not e.retryable for e in errors)

    right = AwsIamKeyProvider(moto.config(name))
    v2 = await right.create(Credential("minted", None), v1)
    await right.retire(v1)
    await right.discard(v1)
    await right.observed_usage()
    await right.close()
    unreachable = AwsIamKeyProvider(moto.config(name, endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(ProviderError) as info:
        await unreachable.observed_usage()
    assert info.value.retryable
    errors.append(info.value)

    texts = [caplog.text, repr(right), repr(wrong)]
    texts += ["".join(traceback.format_exception(e)) for e in errors]
    for secret in (canary, moto.admin_secret, v1.value, v2.value):
        assert not any(secret in text for text in texts)
    assert "CreateAccessKey" in caplog.text or "create_access_key" in caplog.text.lower()  # logging was on


async def test_without_admin_keys_each_instance_reads_the_default_chain(
    moto: MotoServer, user: tuple[str, Credential], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No admin keys in the config: boto3's default credential chain (here its environment variables) is looked up
    by each provider instance, so a key rotated in the environment is used by the next saga step, not a cached one.
    The instances share only botocore's model loader."""
    name, _v1 = user
    config = {k: v for k, v in moto.config(name).items() if not k.startswith("admin_")}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.admin_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.admin_secret)
    first = AwsIamKeyProvider(config)
    try:
        await first.observed_usage()  # signed with the environment's admin key: raises if refused
    finally:
        await first.close()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-admin-secret")
    second = AwsIamKeyProvider(config)
    try:
        with pytest.raises(ProviderError) as info:
            await second.observed_usage()
        assert "SignatureDoesNotMatch" in str(info.value)
    finally:
        await second.close()
