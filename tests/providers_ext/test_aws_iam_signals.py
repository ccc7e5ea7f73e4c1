"""IAM usage signals against a real moto server: a deactivated access key used after its retirement is a signal
naming the key id (never its secret); a use before the retirement (the shift's overlap) is not.

What moto cannot show: AWS refuses an inactive key, and whether AWS records such a refused call in
GetAccessKeyLastUsed is not documented (CloudTrail is where AWS shows refused calls); moto accepts the call and
records it, which is what this test drives. AWS also updates LastUsedDate late (hours, per its documentation)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from lockzero.providers.aws_iam import AwsIamKeyProvider
from lockzero.providers.base import Credential, SignalSource
from tests.providers_ext.support import MotoServer, accepts


@pytest.fixture
async def provider(moto: MotoServer) -> AsyncIterator[tuple[AwsIamKeyProvider, str, Credential]]:
    name, _key_id, secret = moto.new_user()
    p = AwsIamKeyProvider(moto.config(name))
    yield p, name, Credential(secret, None)
    await p.close()


async def test_a_deactivated_key_used_after_its_retirement_is_a_signal(
    moto: MotoServer, provider: tuple[AwsIamKeyProvider, str, Credential]
) -> None:
    iam, name, v1 = provider
    assert isinstance(iam, SignalSource)
    (v1_id,) = moto.keys(name)
    v2 = await iam.create(Credential("minted", None), v1)
    assert await accepts(iam, v1)  # the shift: dependents still on v1 use it, legitimately
    await asyncio.sleep(1.1)  # LastUsedDate has one-second precision
    await iam.retire(v1)
    retired_at = datetime.now(UTC)
    assert moto.keys(name)[v1_id] == "Inactive"
    assert await iam.usage_signals([], retired_at) == []  # the overlap's use is not an anomaly

    await asyncio.sleep(1.1)
    await accepts(iam, v1)  # somebody still presents the retired key
    (signal,) = await iam.usage_signals([], retired_at)
    assert signal.kind == "auth_failure" and signal.principal == v1_id
    assert v1_id in signal.detail and name in signal.detail
    assert v1.value not in repr(signal) and v2.value not in repr(signal)
    assert await iam.usage_signals([], retired_at) == [signal]  # the same observation, the same key
    assert await iam.usage_signals([], None) == []  # never rotated: nothing is old
