"""The Provider contract, against real servers, for postgres_role and mysql_user × alternating and single.

Every "works"/"refused" below is a real login attempt with the driver, not the provider's own answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lockzero.providers.base import Credential
from tests.providers.support import Account, secret_value


@pytest.fixture
async def provider(account: Account) -> AsyncIterator[Any]:
    p = account.build()
    try:
        yield p
    finally:
        await p.close()


async def rotate_create(provider: Any, account: Account) -> tuple[Credential, Credential]:
    """create() as the saga calls it: the pending value, with the username in use today."""
    old = account.current
    new = await provider.create(Credential(secret_value(), old.username), old)
    return old, new


async def test_create_is_idempotent_and_names_the_account(provider: Any, account: Account) -> None:
    old = account.current
    wanted = Credential(secret_value(), old.username)
    first = await provider.create(wanted, old)
    state = account.state()
    again = await provider.create(wanted, old)

    assert again == first
    assert account.state() == state
    assert first.value == wanted.value
    assert provider.overlapping is account.alternating
    if account.alternating:
        assert first.username == account.clone  # the other account of the pair
        assert account.works(old), "alternating: the old credential keeps working until retire"
    else:
        assert first.username == account.name
        assert account.refused(old), "single: create replaces the password, the old one stops at once"
    assert account.works(first)

    # The next rotation goes back to the first account, and is idempotent too.
    wanted2 = Credential(secret_value(), first.username)
    second = await provider.create(wanted2, first)
    state2 = account.state()
    assert await provider.create(wanted2, first) == second
    assert account.state() == state2
    assert second.username == account.name
    assert account.works(second)


async def test_authenticate_is_a_real_login(provider: Any, account: Account) -> None:
    old, new = await rotate_create(provider, account)
    assert (await provider.authenticate(new)).verdict == "accepted"
    wrong = await provider.authenticate(Credential(secret_value(), new.username))
    assert wrong.verdict == "refused", wrong
    assert (await provider.authenticate(old)).verdict == ("accepted" if account.alternating else "refused")


async def test_retire_refuses_old_and_restore_brings_it_back(provider: Any, account: Account) -> None:
    old, new = await rotate_create(provider, account)
    await provider.retire(old)
    assert account.refused(old)
    assert account.works(new)
    assert (await provider.authenticate(old)).verdict == "refused"
    await provider.retire(old)  # idempotent
    assert account.refused(old)
    assert account.works(new)

    await provider.restore(old)
    assert account.works(old)
    # alternating: both live again; single: one password per account, restoring the old replaces the new.
    assert account.works(new) is account.alternating
    await provider.restore(old)  # idempotent
    assert account.works(old)


async def test_discard_undoes_create(provider: Any, account: Account) -> None:
    old, new = await rotate_create(provider, account)
    await provider.discard(new)
    assert account.refused(new)
    if account.alternating:
        assert account.works(old), "discarding the pending credential leaves the current one alone"
    await provider.discard(new)  # idempotent
    assert account.refused(new)

    if account.alternating:
        # A create whose outcome was never recorded: the saga knows the value but not the account.
        again = await provider.create(Credential(secret_value(), old.username), old)
        await provider.discard(Credential(again.value))
        assert account.refused(again)
        assert account.works(old)


async def test_revoke_refuses_everything_and_cuts_sessions(provider: Any, account: Account) -> None:
    leaked_session = account.hold_session(account.current)
    old, new = await rotate_create(provider, account)
    new_session = account.hold_session(new)

    await provider.revoke([old, new])

    assert account.refused(old)
    assert account.refused(new)
    assert not account.alive(leaked_session)
    assert not account.alive(new_session)
    assert (await provider.authenticate(new)).verdict == "refused"
    await provider.revoke([old, new])  # idempotent


async def test_observed_usage_sees_a_held_session(provider: Any, account: Account) -> None:
    assert await provider.observed_usage() == []
    account.hold_session(account.current)
    account.hold_session(account.current)
    usage = await provider.observed_usage()
    assert len(usage) == 1
    assert f"2 session(s) as {'role' if account.kind == 'postgres' else 'user'} {account.name}" in usage[0].detail
    assert "127.0.0.1" in usage[0].detail

    if account.alternating:
        _, new = await rotate_create(provider, account)
        account.hold_session(new)
        details = [u.detail for u in await provider.observed_usage()]
        assert any(f" {account.clone} " in d for d in details), details


async def test_close_is_idempotent_and_the_provider_reopens(account: Account) -> None:
    provider = account.build()
    await provider.close()  # never opened
    assert await provider.observed_usage() == []
    await provider.close()
    await provider.close()
    assert await provider.observed_usage() == []  # a closed provider opens a new admin connection
    await provider.close()
