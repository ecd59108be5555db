"""Key-encryption keys: who wraps and unwraps the namespaces' data keys.

Envelope encryption (docs/encryption.md): each encrypted namespace has its own data key
(apps/core/namespace_keys.py), stored only wrapped — sealed under a key-encryption key
(KEK) that a provider holds. ``MEMORYWEB_KEY_PROVIDER`` chooses it:

- ``file`` (default): the KEK is 32 random bytes in ``MEMORYWEB_KEK_PATH`` (default
  ``kek.key`` in the key store), created 0600 on first use. Point the setting at a mounted
  secret to keep the KEK apart from the wrapped keys.
- ``env``: the KEK is ``MEMORYWEB_KEK`` (URL-safe base64 of 32 bytes), never written
  anywhere; ``MEMORYWEB_KEK_PREVIOUS`` holds the one before a rotation until every data
  key is re-wrapped.
- a dotted path (``package.module:Name``): a class or factory returning a
  :class:`KeyProvider` — a KMS or Vault transit engine wraps and unwraps by calling it;
  its KEK never leaves it.

Every wrapped key records the id of the KEK that wrapped it (a fingerprint, never the
key), so a rotation knows which ones to re-wrap and a wrong KEK is named, not guessed at.
Failing closed: a provider that cannot produce its KEK raises :class:`KeyUnavailable`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from apps.core import keystore

KEK_BYTES = 32
NONCE_BYTES = 12
DEFAULT_KEK_FILE = "kek.key"
_WRAP_CONTEXT = b"memoryweb-data-key\x00"


class KeyUnavailable(RuntimeError):
    """A key that is needed cannot be had: the KEK is missing or another one, a wrapped
    key does not open, or a namespace's key was destroyed. Never answered with garbage."""


class KeyProvider(Protocol):
    """Wraps data keys under a KEK it holds (a KMS keeps it; the local ones read it)."""

    def key_id(self) -> str:
        """The current KEK's id (a fingerprint or the KMS key's name; never key material)."""

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        """``(kek id, wrapped)``: ``data_key`` sealed under the current KEK, bound to
        ``context`` (which namespace and version the key is for)."""

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        """The data key; :class:`KeyUnavailable` if ``kek_id`` is not a KEK it holds or
        the wrapped key does not open with ``context``."""


def fingerprint(kek: bytes) -> str:
    """A KEK's id: a hash that names it without revealing it."""
    return "sha256:" + hashlib.sha256(b"memoryweb-kek-id\x00" + kek).hexdigest()[:24]


class LocalKeys:
    """A provider over KEKs it reads itself (``file``, ``env``): AES-256-GCM wrapping."""

    def __init__(self, current: bytes, previous: list[bytes] | None = None) -> None:
        for kek in [current, *(previous or [])]:
            if len(kek) != KEK_BYTES:
                raise KeyUnavailable(f"a key-encryption key is {KEK_BYTES} bytes, not {len(kek)}.")
        self._current = current
        self._keks = {fingerprint(kek): kek for kek in [current, *(previous or [])]}

    def key_id(self) -> str:
        return fingerprint(self._current)

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._current).encrypt(nonce, data_key, _WRAP_CONTEXT + context)
        return self.key_id(), nonce + sealed

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        kek = self._keks.get(kek_id)
        if kek is None:
            raise KeyUnavailable(
                f"the data key was wrapped under key-encryption key {kek_id}, and the "
                f"configured provider holds {', '.join(sorted(self._keks))}: the wrong or a "
                "missing MEMORYWEB_KEK / MEMORYWEB_KEK_PATH.")
        try:
            return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                       _WRAP_CONTEXT + context)
        except (InvalidTag, ValueError):
            raise KeyUnavailable("a wrapped data key does not open under its key-encryption "
                                 "key (changed, or moved to another namespace).") from None


def kek_file() -> Path:
    configured = getattr(settings, "MEMORYWEB_KEK_PATH", "") or ""
    return Path(configured) if configured else keystore.directory() / DEFAULT_KEK_FILE


def retired_file(kek_id: str) -> Path:
    """Where the file provider keeps a KEK a rotation replaced, until nothing uses it."""
    return kek_file().with_name(f"kek-{kek_id.replace(':', '-')}.retired")


def _file_provider(create: bool) -> LocalKeys:
    path = kek_file()
    if not path.exists():
        if not create:
            raise KeyUnavailable(f"the key-encryption key file {path} is missing.")
        with keystore.locked():
            if not path.exists():
                keystore.write_private(path, secrets.token_bytes(KEK_BYTES))
    current = path.read_bytes()
    retired = [found.read_bytes() for found in sorted(path.parent.glob("kek-*.retired"))]
    return LocalKeys(current, retired)


def _env_key(name: str) -> bytes | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnavailable(f"{name} is not URL-safe base64 (of {KEK_BYTES} bytes).") from None


def _env_provider() -> LocalKeys:
    current = _env_key("MEMORYWEB_KEK")
    if current is None:
        raise KeyUnavailable("MEMORYWEB_KEY_PROVIDER=env and MEMORYWEB_KEK is not set.")
    previous = _env_key("MEMORYWEB_KEK_PREVIOUS")
    return LocalKeys(current, [previous] if previous else [])


def provider(*, create: bool = True) -> KeyProvider:
    """The configured provider (read at call time). ``create``: the file provider makes
    its KEK on first use (False: a missing file is an error, for checks)."""
    name = str(getattr(settings, "MEMORYWEB_KEY_PROVIDER", "file") or "file")
    if name == "file":
        return _file_provider(create)
    if name == "env":
        return _env_provider()
    return _custom(name)()


@lru_cache(maxsize=8)
def _custom(path: str):
    module, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        return getattr(import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise KeyUnavailable(f"MEMORYWEB_KEY_PROVIDER={path!r} cannot be imported ({exc}); "
                             "use file, env or a dotted path to a KeyProvider.") from None


def rotate_file_kek() -> tuple[str, str]:
    """The file provider's new KEK: the current one kept as retired (it still unwraps
    what it wrapped until :func:`forget_retired`), a new one written. ``(old, new)`` ids."""
    with keystore.locked():
        path = kek_file()
        old = path.read_bytes() if path.exists() else None
        if old is not None:
            keystore.write_private(retired_file(fingerprint(old)), old)
        new = secrets.token_bytes(KEK_BYTES)
        keystore.write_private(path, new)
    return (fingerprint(old) if old else ""), fingerprint(new)


def forget_retired(in_use: set[str]) -> list[str]:
    """Delete the file provider's retired KEKs that no wrapped key names any more."""
    gone = []
    for found in kek_file().parent.glob("kek-*.retired"):
        kek_id = fingerprint(found.read_bytes())
        if kek_id not in in_use:
            found.unlink()
            gone.append(kek_id)
    return gone
