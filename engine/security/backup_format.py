"""The encrypted backup file: a plaintext header, then AES-256-GCM chunks.

Layout: ``LOCKZERO-BACKUP\\n``, a 4-byte length and the JSON header (format version, where the key comes from,
salt and KDF parameters, source dialect, schema migrations), then frames of ``flag (1 byte) | length (4 bytes) |
ciphertext``. Each chunk is sealed under a key unique to the file (random salt), with the chunk's counter and
the final flag as nonce (the STREAM construction) and magic + header as associated data: a flipped byte, a
dropped, repeated or reordered chunk, a cut-off tail or an edited header all fail authentication.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from lockzero.engine.domain.errors import LockzeroError
from lockzero.engine.security.crypto import MasterKey

MAGIC = b"LOCKZERO-BACKUP\n"
FORMAT_VERSION = 1
_LEN = struct.Struct(">I")
_MAX_HEADER = 1 << 16
#: Bigger than any chunk the writer makes; a tampered length cannot make the reader allocate gigabytes.
_MAX_CHUNK = 1 << 28
_SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}
_SCRYPT_MAX_N = 1 << 20
_INFO = b"lockzero/backup/v1"

KeySourceName = Literal["master-key", "passphrase"]


class BackupInvalid(LockzeroError):
    """The file is not a backup this release can read, or it does not authenticate."""

    name = "invalid_backup"


class Header(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    format: int
    created_at: str
    source: str
    key: KeySourceName
    salt: bytes
    migrations: list[tuple[str, int]]
    scrypt: dict[str, int] | None = None


class KeySource:
    """Where a backup's key comes from: the master key, or a passphrase (e.g. --passphrase-file)."""

    def __init__(self, master_key: MasterKey | None = None, passphrase: bytes | None = None) -> None:
        if (master_key is None) == (passphrase is None):
            raise ValueError("exactly one of master_key and passphrase")
        self._master = master_key
        self._passphrase = passphrase

    @property
    def name(self) -> KeySourceName:
        return "master-key" if self._master is not None else "passphrase"

    def file_key(self, header: Header) -> bytes:
        if header.key != self.name:
            other = "the master key" if header.key == "master-key" else "a passphrase (--passphrase-file)"
            raise BackupInvalid(f"this backup is encrypted under {other}; give that instead")
        if self._master is not None:
            return HKDF(hashes.SHA256(), 32, header.salt, _INFO).derive(self._master.raw)
        assert self._passphrase is not None
        params = header.scrypt or {}
        n, r, p = params.get("n", 0), params.get("r", 0), params.get("p", 0)
        if not (1 < n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
            raise BackupInvalid("the backup header's passphrase parameters are out of range")
        return Scrypt(salt=header.salt, length=32, n=n, r=r, p=p).derive(self._passphrase)

    def new_header(self, created_at: str, source: str, migrations: list[tuple[str, int]]) -> Header:
        scrypt = dict(_SCRYPT) if self.name == "passphrase" else None
        return Header(FORMAT_VERSION, created_at, source, self.name, os.urandom(16), migrations, scrypt)


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class ChunkWriter:
    def __init__(self, fh: BinaryIO, keys: KeySource, header: Header) -> None:
        raw = msgspec.json.encode(header)
        fh.write(MAGIC + _LEN.pack(len(raw)) + raw)
        self._fh = fh
        self._aead = AESGCM(keys.file_key(header))
        self._aad = MAGIC + raw
        self._counter = 0
        self.closed = False

    def write(self, plaintext: bytes, *, final: bool = False) -> None:
        assert not self.closed, "no chunk after the final one"
        sealed = self._aead.encrypt(_nonce(self._counter, final), plaintext, self._aad)
        self._fh.write(bytes([final]) + _LEN.pack(len(sealed)) + sealed)
        self._counter += 1
        self.closed = final


def _exact(fh: BinaryIO, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise BackupInvalid(f"the backup is truncated ({what} cut off)")
    return data


def read_header(fh: BinaryIO) -> tuple[Header, bytes]:
    """The header and its raw bytes (associated data of every chunk)."""
    if fh.read(len(MAGIC)) != MAGIC:
        raise BackupInvalid("not a Lockzero backup file (no LOCKZERO-BACKUP header)")
    (size,) = _LEN.unpack(_exact(fh, 4, "header"))
    if size > _MAX_HEADER:
        raise BackupInvalid("the backup header is implausibly large")
    raw = _exact(fh, size, "header")
    try:
        header = msgspec.json.decode(raw, type=Header)
    except msgspec.DecodeError:
        raise BackupInvalid("the backup header is not valid") from None
    if header.format != FORMAT_VERSION:
        raise BackupInvalid(f"backup format {header.format} is not supported (this release reads {FORMAT_VERSION})")
    return header, raw


def read_chunks(fh: BinaryIO, keys: KeySource, header: Header, raw_header: bytes) -> Iterator[bytes]:
    """Each chunk's plaintext, authenticated, in order; raises BackupInvalid on any tampering or truncation."""
    aead = AESGCM(keys.file_key(header))
    aad = MAGIC + raw_header
    counter = 0
    while True:
        head = fh.read(5)
        if len(head) < 5:
            raise BackupInvalid("the backup is truncated (its final chunk is missing)")
        flag, (size,) = head[0], _LEN.unpack(head[1:])
        if flag not in (0, 1) or size > _MAX_CHUNK:
            raise BackupInvalid(f"chunk {counter} of the backup is damaged")
        sealed = _exact(fh, size, f"chunk {counter}")
        try:
            plaintext = aead.decrypt(_nonce(counter, bool(flag)), sealed, aad)
        except InvalidTag:
            raise BackupInvalid(
                f"chunk {counter} of the backup does not authenticate: the file was altered, or the key"
                f" ({'master key' if header.key == 'master-key' else 'passphrase'}) is not the one it was made with"
            ) from None
        yield plaintext
        counter += 1
        if flag:
            if fh.read(1):
                raise BackupInvalid("the backup has data after its final chunk")
            return
