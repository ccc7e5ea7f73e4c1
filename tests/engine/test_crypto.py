"""Envelope encryption, fingerprints and token hashing (engine/security/crypto.py). No database."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockzero.engine.security.crypto import (
    KEY_BYTES,
    MCP_KEY_PREFIX,
    SERVICE_TOKEN_PREFIX,
    CryptoError,
    MasterKey,
    TenantKeys,
    new_id,
    new_token,
    random_secret,
)

PLAINTEXT = b"hunter2-canary-\x00\xff-value"


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def acme(master: MasterKey) -> TenantKeys:
    return master.new_tenant_key("acme")[0]


def seal(keys: TenantKeys, value: bytes = PLAINTEXT) -> bytes:
    return keys.seal(value, ref="prod/db", version=3, purpose="value")


# --- seal / open ---------------------------------------------------------------------------------


def test_seal_open_round_trip(acme: TenantKeys) -> None:
    blob = seal(acme)
    assert PLAINTEXT not in blob
    assert len(blob) == 12 + len(PLAINTEXT) + 16  # nonce + ciphertext + GCM tag
    assert acme.open(blob, ref="prod/db", version=3, purpose="value") == PLAINTEXT


def test_seal_is_randomised(acme: TenantKeys) -> None:
    a, b = seal(acme), seal(acme)
    assert a != b
    assert acme.open(a, ref="prod/db", version=3, purpose="value") == acme.open(
        b, ref="prod/db", version=3, purpose="value"
    )


def test_empty_plaintext_round_trips(acme: TenantKeys) -> None:
    blob = acme.seal(b"", ref="r", version=0, purpose="p")
    assert acme.open(blob, ref="r", version=0, purpose="p") == b""


def test_open_fails_for_another_tenant_name_with_the_same_root(acme: TenantKeys) -> None:
    """The tenant is bound into the associated data, not only into the key."""
    blob = seal(acme)
    impostor = TenantKeys("beta", acme._root)
    with pytest.raises(CryptoError):
        impostor.open(blob, ref="prod/db", version=3, purpose="value")


def test_open_fails_with_another_tenants_key(master: MasterKey, acme: TenantKeys) -> None:
    other, _ = master.new_tenant_key("acme")  # same name, different root key
    with pytest.raises(CryptoError):
        other.open(seal(acme), ref="prod/db", version=3, purpose="value")


@pytest.mark.parametrize(
    ("ref", "version", "purpose"),
    [
        ("prod/db2", 3, "value"),  # wrong ref
        ("prod/db", 2, "value"),  # wrong version
        ("prod/db", 4, "value"),
        ("prod/db", 3, "config"),  # wrong purpose
        ("prod/db", 3, "signing"),
    ],
)
def test_open_fails_on_any_other_binding(acme: TenantKeys, ref: str, version: int, purpose: str) -> None:
    with pytest.raises(CryptoError) as err:
        acme.open(seal(acme), ref=ref, version=version, purpose=purpose)
    assert PLAINTEXT.decode("latin-1") not in str(err.value)


def test_associated_data_is_unambiguous(acme: TenantKeys) -> None:
    """A separator inside an id must not let ("a", "b:c") collide with ("a:b", "c")-style bindings."""
    blob = acme.seal(b"x" * 20, ref="a/1", version=1, purpose="value")
    with pytest.raises(CryptoError):
        acme.open(blob, ref="a", version=1, purpose="value")
    blob = acme.seal(b"x" * 20, ref='a","b', version=1, purpose="c")
    with pytest.raises(CryptoError):
        acme.open(blob, ref="a", version=1, purpose='b","c')


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1])  # nonce, first ciphertext byte, middle, tag
def test_open_fails_on_a_tampered_byte(acme: TenantKeys, index: int) -> None:
    blob = bytearray(seal(acme))
    blob[index] ^= 0x01
    with pytest.raises(CryptoError):
        acme.open(bytes(blob), ref="prod/db", version=3, purpose="value")


@pytest.mark.parametrize("keep", [0, 5, 27, -1])
def test_open_fails_on_truncated_ciphertext(acme: TenantKeys, keep: int) -> None:
    blob = seal(acme)
    with pytest.raises(CryptoError):
        acme.open(blob[:keep], ref="prod/db", version=3, purpose="value")


def test_open_fails_on_appended_bytes(acme: TenantKeys) -> None:
    with pytest.raises(CryptoError):
        acme.open(seal(acme) + b"\x00", ref="prod/db", version=3, purpose="value")


# --- tenant key wrapping -------------------------------------------------------------------------


def test_tenant_key_wraps_and_unwraps(master: MasterKey) -> None:
    keys, wrapped = master.new_tenant_key("acme")
    assert keys._root not in wrapped
    again = master.unwrap_tenant_key("acme", wrapped)
    blob = seal(keys)
    assert again.open(blob, ref="prod/db", version=3, purpose="value") == PLAINTEXT
    assert again.fingerprint(b"v") == keys.fingerprint(b"v")


def test_unwrap_fails_for_another_tenant_or_master_key(master: MasterKey) -> None:
    _, wrapped = master.new_tenant_key("acme")
    with pytest.raises(CryptoError):
        master.unwrap_tenant_key("beta", wrapped)
    with pytest.raises(CryptoError):
        MasterKey.generate().unwrap_tenant_key("acme", wrapped)
    with pytest.raises(CryptoError):
        master.unwrap_tenant_key("acme", wrapped[:-1])


# --- fingerprints --------------------------------------------------------------------------------


def test_fingerprints_equal_within_a_tenant_and_differ_across_tenants(master: MasterKey) -> None:
    acme, _ = master.new_tenant_key("acme")
    beta, _ = master.new_tenant_key("beta")
    value = b"sk-live-0123456789"
    assert acme.fingerprint(value) == acme.fingerprint(bytes(value))
    assert len(acme.fingerprint(value)) == 32
    assert acme.fingerprint(value) != acme.fingerprint(value + b"x")
    assert acme.fingerprint(value) != beta.fingerprint(value)
    assert value not in acme.fingerprint(value)


def test_fingerprint_is_keyed_not_a_plain_hash(acme: TenantKeys) -> None:
    import hashlib

    value = b"sk-live-0123456789"
    assert acme.fingerprint(value) != hashlib.sha256(value).digest()


# --- token hashing -------------------------------------------------------------------------------


def test_token_hasher_matches_only_the_same_token(master: MasterKey) -> None:
    hasher = master.token_hasher()
    token = new_token(MCP_KEY_PREFIX)
    digest = hasher.hash(token)
    assert token not in digest
    assert hasher.matches(token, digest)
    assert master.token_hasher().matches(token, digest)  # deterministic per master key
    assert not hasher.matches(token + "x", digest)
    assert not hasher.matches(token[:-1], digest)
    assert not hasher.matches(new_token(MCP_KEY_PREFIX), digest)
    assert not hasher.matches(token, "")
    assert not MasterKey.generate().token_hasher().matches(token, digest)


def test_new_token_and_ids() -> None:
    a, b = new_token(SERVICE_TOKEN_PREFIX), new_token(SERVICE_TOKEN_PREFIX)
    assert a.startswith("lz_svc_") and a != b and len(a) > 40
    assert new_id("key").startswith("key_") and new_id("key") != new_id("key")
    s = random_secret(24, prefix="whk_")
    assert s.startswith("whk_") and len(s) == 28 and s[4:].isalnum()


# --- master key ----------------------------------------------------------------------------------


def test_master_key_repr_never_shows_the_key() -> None:
    key = MasterKey.generate()
    keys, _ = key.new_tenant_key("acme")
    for text in (repr(key), str(key), f"{key!r}", repr(keys), repr(key.token_hasher())):
        assert key.to_base64() not in text
        assert repr(key.raw) not in text
        assert key.raw.hex() not in text
        assert repr(keys._root) not in text
    assert repr(key) == "MasterKey(<redacted>)"


def test_master_key_base64_round_trip() -> None:
    key = MasterKey.generate()
    assert MasterKey.from_base64(key.to_base64()) == key
    assert MasterKey.from_base64("  " + key.to_base64() + "\n") == key  # a key file's newline is fine
    assert len(key.raw) == KEY_BYTES
    assert MasterKey.generate() != key


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!!",
        "",
        base64.b64encode(b"k" * 31).decode(),
        base64.b64encode(b"k" * 33).decode(),
        base64.b64encode(b"k" * 16).decode(),
        "é" * 44,
        base64.b64encode(b"k" * 32).decode()[:-2] + "*=",
    ],
)
def test_from_base64_rejects_bad_input_without_echoing_it(text: str) -> None:
    with pytest.raises(CryptoError) as err:
        MasterKey.from_base64(text)
    message = str(err.value)
    assert message
    if text.strip():
        assert text not in message


def test_master_key_must_be_32_bytes() -> None:
    with pytest.raises(CryptoError):
        MasterKey(b"k" * 31)
    with pytest.raises(CryptoError):
        MasterKey(os.urandom(64))


# --- property ------------------------------------------------------------------------------------

ids = st.text(min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=2048),
    tenant=ids,
    ref=ids,
    version=st.integers(min_value=0, max_value=2**31),
    purpose=ids,
)
def test_seal_open_property(plaintext: bytes, tenant: str, ref: str, version: int, purpose: str) -> None:
    keys = TenantKeys(tenant, os.urandom(KEY_BYTES))
    blob = keys.seal(plaintext, ref=ref, version=version, purpose=purpose)
    assert keys.open(blob, ref=ref, version=version, purpose=purpose) == plaintext
    assert len(blob) == len(plaintext) + 28
    if len(plaintext) >= 8:
        assert plaintext not in blob
    with pytest.raises(CryptoError):
        keys.open(blob, ref=ref + "x", version=version, purpose=purpose)
