"""Envelope encryption, value fingerprints and token hashing.

Master key (KEK) -> per-tenant root key (random, stored wrapped) -> derived data key (AES-256-GCM)
and fingerprint key (HMAC-SHA256). Associated data binds each ciphertext to (tenant, ref, version,
purpose), so a row copied to another secret or version fails to decrypt instead of leaking.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
_NONCE_BYTES = 12


class CryptoError(Exception):
    """Decryption or key failure; never carries key material or plaintext."""


def _hkdf(key: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info.encode()).derive(key)


def _aad(*parts: str | int) -> bytes:
    # JSON array: unambiguous, unlike joining with a separator that may appear in an id.
    return msgspec.json.encode(["lockzero", *parts])


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < _NONCE_BYTES + 16:
        raise CryptoError("ciphertext is truncated")
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise CryptoError("ciphertext does not authenticate (wrong key, tenant, secret or version)") from None


@dataclass(frozen=True)
class MasterKey:
    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_BYTES:
            raise CryptoError(f"master key must be {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("master key is not valid base64") from None
        if len(raw) != KEY_BYTES:
            raise CryptoError(f"master key must decode to {KEY_BYTES} bytes, got {len(raw)}")
        return cls(raw)

    def to_base64(self) -> str:
        return base64.b64encode(self.raw).decode()

    def new_tenant_key(self, tenant: str) -> tuple[TenantKeys, bytes]:
        """A fresh tenant root key and its wrapped form (the only form ever stored)."""
        root = os.urandom(KEY_BYTES)
        return TenantKeys(tenant, root), _seal(self.raw, root, _aad("tenant-key", tenant))

    def unwrap_tenant_key(self, tenant: str, wrapped: bytes) -> TenantKeys:
        return TenantKeys(tenant, _open(self.raw, wrapped, _aad("tenant-key", tenant)))

    def rewrap_tenant_key(self, tenant: str, wrapped: bytes, new: MasterKey) -> bytes:
        """The tenant's root key, unwrapped with this key and wrapped under ``new`` (a master key rotation)."""
        return _seal(new.raw, _open(self.raw, wrapped, _aad("tenant-key", tenant)), _aad("tenant-key", tenant))

    def token_key(self) -> bytes:
        """The key tokens are hashed under; stored hashes depend on it, so a master key rotation keeps it."""
        return _hkdf(self.raw, "lockzero/token-hash/v1")

    def token_hasher(self) -> TokenHasher:
        return TokenHasher(self.token_key())

    def wrap_store_key(self, name: str, key: bytes) -> bytes:
        """A key of the whole store (not of a tenant), wrapped for lz_store_keys."""
        return _seal(self.raw, key, _aad("store-key", name))

    def unwrap_store_key(self, name: str, wrapped: bytes) -> bytes:
        return _open(self.raw, wrapped, _aad("store-key", name))


@dataclass(frozen=True)
class TenantKeys:
    tenant: str
    _root: bytes = field(repr=False)

    def _data_key(self) -> bytes:
        return _hkdf(self._root, "lockzero/data-key/v1")

    def seal(self, plaintext: bytes, *, ref: str, version: int, purpose: str) -> bytes:
        return _seal(self._data_key(), plaintext, _aad(self.tenant, ref, version, purpose))

    def open(self, blob: bytes, *, ref: str, version: int, purpose: str) -> bytes:
        return _open(self._data_key(), blob, _aad(self.tenant, ref, version, purpose))

    def seal_text(self, text: str, *, ref: str, purpose: str) -> str:
        """Sealed text as base64, for a field of an event (e.g. a webhook URL that carries a token)."""
        return base64.b64encode(self.seal(text.encode(), ref=ref, version=0, purpose=purpose)).decode()

    def open_text(self, sealed: str, *, ref: str, purpose: str) -> str:
        try:
            blob = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("sealed text is not base64") from None
        return self.open(blob, ref=ref, version=0, purpose=purpose).decode()

    def fingerprint(self, value: bytes) -> bytes:
        """Keyed fingerprint of a managed value: detection can match it without storing the value."""
        return hmac.new(_hkdf(self._root, "lockzero/fingerprint/v1"), value, hashlib.sha256).digest()


@dataclass(frozen=True)
class TokenHasher:
    _key: bytes = field(repr=False)

    def hash(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def matches(self, token: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(token), stored_hash)


MCP_KEY_PREFIX = "lz_mcp_"
SERVICE_TOKEN_PREFIX = "lz_svc_"  # noqa: S105 - a prefix, not a token


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def random_secret(length: int = 40, prefix: str = "") -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))
