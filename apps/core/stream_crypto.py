"""Passphrase encryption for backups and export files: AES-256-GCM in 1 MiB chunks
(``cryptography``).

Format: ``MAGIC``, a 16-byte salt, the scrypt cost (n, r, p), a 4-byte nonce prefix;
then records of a 4-byte length and one chunk's ciphertext with its tag. Each chunk's
nonce is the prefix plus its index, and its associated data is (index, is-last): a
reordered, dropped, added or cut-off chunk fails to decrypt, so does a wrong passphrase.
Memory stays at about one chunk however large the backup.
"""

from __future__ import annotations

import getpass
import io
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"MWBACKUP-AESGCM-1\n"
CHUNK = 1 << 20
#: scrypt cost: ~0.1 s and 32 MiB to derive the key (per backup or restore, not per chunk).
N, R, P = 1 << 15, 8, 1
#: The shortest new passphrase a command accepts for an export file.
MIN_PASSPHRASE = 12
#: The most a file may ask for (it names its own cost): 1 GiB of memory at most.
MAX_N, MAX_R, MAX_P = 1 << 20, 16, 4


class DecryptionError(ValueError):
    """Wrong passphrase, or a file that was changed, cut short or is not a backup."""


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> AESGCM:
    if not passphrase:
        raise ValueError("the passphrase is empty.")
    derived = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    return AESGCM(derived)


def _aad(index: int, last: bool) -> bytes:
    return struct.pack(">Q?", index, last)


class EncryptingWriter:
    """A write-only file object that encrypts into ``sink``; ``close()`` seals the end."""

    def __init__(self, sink: BinaryIO, passphrase: str):
        salt, self.prefix = os.urandom(16), os.urandom(4)
        self.aead = _key(passphrase, salt, N, R, P)
        self.sink, self.buffer, self.index, self.closed = sink, bytearray(), 0, False
        sink.write(MAGIC + salt + struct.pack(">III", N, R, P) + self.prefix)

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) > CHUNK:  # keep at least one byte back for the last chunk
            self._emit(bytes(self.buffer[:CHUNK]), last=False)
            del self.buffer[:CHUNK]
        return len(data)

    def _emit(self, chunk: bytes, last: bool) -> None:
        nonce = self.prefix + struct.pack(">Q", self.index)
        sealed = self.aead.encrypt(nonce, chunk, _aad(self.index, last))
        self.sink.write(struct.pack(">I", len(sealed)) + sealed)
        self.index += 1

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self.buffer), last=True)
            self.buffer.clear()
            self.closed = True
            self.sink.flush()


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)


class DecryptingReader(io.RawIOBase):
    """A read-only file object over an encrypted file (forward only)."""

    def __init__(self, source: BinaryIO, passphrase: str):
        super().__init__()
        header = source.read(len(MAGIC) + 16 + 12 + 4)
        if not header.startswith(MAGIC) or len(header) < len(MAGIC) + 32:
            raise DecryptionError("not an encrypted MemoryWeb backup.")
        salt = header[len(MAGIC):len(MAGIC) + 16]
        n, r, p = struct.unpack(">III", header[len(MAGIC) + 16:len(MAGIC) + 28])
        if not (2 <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise DecryptionError(f"the backup asks for a key-derivation cost (n={n}, r={r}, "
                                  f"p={p}) outside what MemoryWeb writes.")
        if not passphrase:
            raise DecryptionError("the passphrase is empty.")
        self.prefix = header[len(MAGIC) + 28:]
        self.aead = _key(passphrase, salt, n, r, p)
        self.source, self.buffer, self.index, self.ended = source, bytearray(), 0, False

    def _next(self) -> None:
        size = self.source.read(4)
        if len(size) < 4:
            raise DecryptionError("the backup ends too early (cut off).")
        sealed = self.source.read(struct.unpack(">I", size)[0])
        nonce = self.prefix + struct.pack(">Q", self.index)
        for last in (False, True):
            try:
                self.buffer += self.aead.decrypt(nonce, sealed, _aad(self.index, last))
            except InvalidTag:
                continue
            self.ended = last
            self.index += 1
            if last and self.source.read(1):
                raise DecryptionError("data after the end of the backup.")
            return
        raise DecryptionError("wrong passphrase, or the backup was changed.")

    def read(self, size: int = -1) -> bytes:
        while not self.ended and (size < 0 or len(self.buffer) < size):
            self._next()
        if size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:
        """For ``io.BufferedReader`` (line by line reading of an encrypted export)."""
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.source.close()
        super().close()


def open_file(path: Path, passphrase: Callable[[], str]) -> BinaryIO:
    """``path`` for reading line by line, decrypted if it is an encrypted file (asking
    ``passphrase`` only then); :class:`DecryptionError` for a wrong passphrase or a file
    that was changed or cut."""
    handle = path.open("rb")
    if not is_encrypted(handle.peek(len(MAGIC))):
        return handle
    return io.BufferedReader(DecryptingReader(handle, passphrase()))  # type: ignore[arg-type]


def read_passphrase(prompt: str, *, new: bool = False, file: Path | None = None,
                    file_option: str = "--passphrase-file", env: str | None = None,
                    stdin: bool = True, minimum: int = 0, what: str = "the passphrase") -> str:
    """A passphrase for a command (backups, key backups, exports): the first line of
    ``file``, else the environment variable ``env``, else asked on a terminal (twice when
    ``new``), else the first line of stdin (scripts) unless ``stdin`` is taken by another
    passphrase. Never a command-line value: a command line is visible to every user of
    the machine and kept in history. :class:`ValueError` names what is wrong."""
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"{file_option} {file}: {exc.strerror or exc}.") from None
        passphrase = lines[0] if lines else ""
    elif env and os.environ.get(env):
        passphrase = os.environ[env]
    elif sys.stdin.isatty():
        passphrase = getpass.getpass(prompt)
        if new and getpass.getpass("Repeat: ") != passphrase:
            raise ValueError("the passphrases differ.")
    elif stdin:
        passphrase = sys.stdin.readline().rstrip("\n")
    else:
        raise ValueError(f"{what}: give {file_option} FILE or set {env} (no terminal to ask on).")
    if not passphrase:
        raise ValueError(f"{what} is empty.")
    if new and len(passphrase) < minimum:
        raise ValueError(f"{what} is shorter than {minimum} characters: it must be at least "
                         f"{minimum} characters.")
    return passphrase
