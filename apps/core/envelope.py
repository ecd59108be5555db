"""Authenticated encryption of one value: AES-256-GCM with associated data.

The building block of encryption at rest (issue 23, docs/encryption.md): a namespace's
data key (apps/core/namespace_keys.py) seals each value with the associated data that
says where it belongs (the table, the row, the namespace), so a ciphertext copied to
another row or tenant fails to open instead of decrypting there.

A sealed value is ``MAGIC | key version (4 bytes, big-endian) | nonce (12) | ciphertext
and tag``. The key version names which of the namespace's data keys sealed it, so a
namespace re-encrypted under a new key can be read while the work is under way. Nonces
are 96 random bits from the OS per seal (``os.urandom``): with at most 2^32 seals under
one key the chance of a repeat stays below 2^-32, NIST SP 800-38D's bound; a data key is
rotated long before (``rotate_keys``). Opening checks the tag: a wrong key, a changed byte
or other associated data raise :class:`Undecryptable`, never garbage.
"""

from __future__ import annotations

import base64
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"mw1"
NONCE_BYTES = 12
KEY_BYTES = 32
#: The text form's prefix (a sealed value in a text column).
TEXT_PREFIX = "mwenc1:"
_HEADER = len(MAGIC) + 4


class Undecryptable(ValueError):
    """A sealed value that does not open: the wrong key, a changed byte, or associated
    data that is not the value's own (a ciphertext moved to another row or namespace)."""


def seal(key: bytes, version: int, plaintext: bytes, associated: bytes) -> bytes:
    """``plaintext`` sealed under ``key`` (32 bytes), bound to ``associated``."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes, not {len(key)}")
    header = MAGIC + struct.pack(">I", version)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + associated)


def version_of(sealed: bytes) -> int:
    """The key version a sealed value names (to pick the key that opens it)."""
    if len(sealed) < _HEADER + NONCE_BYTES + 16 or not sealed.startswith(MAGIC):
        raise Undecryptable("not a sealed value (no MemoryWeb header)")
    return struct.unpack(">I", sealed[len(MAGIC):_HEADER])[0]


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """The plaintext of ``sealed``; :class:`Undecryptable` unless the key, every byte and
    the associated data are the ones it was sealed with."""
    version_of(sealed)
    header, nonce, body = sealed[:_HEADER], sealed[_HEADER:_HEADER + NONCE_BYTES], \
        sealed[_HEADER + NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, header + associated)
    except InvalidTag:
        raise Undecryptable("the value does not open with this key and these associated "
                            "data (wrong key, changed bytes, or moved from another row)") from None


def seal_text(key: bytes, version: int, text: str, associated: bytes) -> str:
    """:func:`seal` for a text column: the prefix and URL-safe base64."""
    sealed = seal(key, version, text.encode(), associated)
    return TEXT_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")


def is_sealed_text(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TEXT_PREFIX)


def sealed_bytes(text: str) -> bytes:
    """The sealed bytes of a text column's value."""
    if not is_sealed_text(text):
        raise Undecryptable("not a sealed text value")
    try:
        return base64.urlsafe_b64decode(text[len(TEXT_PREFIX):].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise Undecryptable("a sealed text value that is not valid base64") from None


def open_text(key: bytes, text: str, associated: bytes) -> str:
    return open_sealed(key, sealed_bytes(text), associated).decode()
