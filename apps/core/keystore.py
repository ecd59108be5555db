"""The key store: a directory outside the data directory for what no data backup may hold.

``MEMORYWEB_KEYSTORE_DIR`` (default: ``<MEMORYWEB_DATA_DIR>-keystore``, a sibling) holds
the erasure ledger (apps/core/erasure_ledger.py) and the key its selector hashes are
keyed with; issue 23's encryption keeps the wrapped namespace keys here too. It is
outside the data directory on purpose: ``manage.py backup`` archives the database, and an
operator copies the data directory; neither must carry the ledger back to an older state
or the keys along with the ciphertext (docs/privacy.md#backups-and-erasure). The system
check ``memoryweb.E012`` refuses a key store inside the data directory.

Several processes write here (Daphne, ``manage.py`` commands, the job worker): every
change is made under an exclusive ``flock`` on ``.lock``; appends are ``O_APPEND`` writes
followed by ``fsync``; whole files are written to a private temporary name, synced and
renamed. The directory is 0700 and every file 0600.

Core is the lowest layer: nothing here imports another app, so tenancy (namespace
deletion) and privacy (erasure) both reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from apps.core.conf import directory_problem

LOCK_NAME = ".lock"
#: The key selectors are hashed under (HMAC-SHA256): a person's email or name never
#: reaches the ledger in clear, and without this key a guess cannot be confirmed.
SELECTOR_KEY_NAME = "selector.key"


class KeystoreError(RuntimeError):
    """The key store cannot be used (inside the data directory, not writable, a key
    file of the wrong size): what the operator must fix, named."""


#: Resolved directories by configured value: every seal and open of an encrypted
#: namespace asks for the key store, and resolving a path is several system calls.
_resolved: dict[str, Path] = {}


def directory() -> Path:
    """The configured key store directory (read at call time: ``override_settings`` works)."""
    configured = str(settings.MEMORYWEB_KEYSTORE_DIR)
    found = _resolved.get(configured)
    if found is None:
        found = _resolved[configured] = Path(configured).resolve()
    return found


def inside_data_dir(path: Path | None = None) -> bool:
    """Whether ``path`` (default: the key store) is the data directory or inside it."""
    keystore = (path or directory()).resolve()
    data = Path(settings.DATA_DIR).resolve()
    return keystore == data or keystore.is_relative_to(data)


def problem() -> str | None:
    """Why the key store cannot be used (system check ``memoryweb.E012``), or None."""
    path = directory()
    if inside_data_dir(path):
        return (f"MEMORYWEB_KEYSTORE_DIR={str(path)!r} is inside MEMORYWEB_DATA_DIR "
                f"({str(Path(settings.DATA_DIR).resolve())!r}): backups and copies of the data "
                "directory would carry the erasure ledger and the keys.")
    found = directory_problem(path)
    return f"MEMORYWEB_KEYSTORE_DIR={str(path)!r} {found}." if found else None


def ensure() -> Path:
    """The key store directory, created 0700 (and tightened to 0700 if it was looser)."""
    path = directory()
    if inside_data_dir(path):
        raise KeystoreError(f"MEMORYWEB_KEYSTORE_DIR={str(path)!r} is inside MEMORYWEB_DATA_DIR: "
                            "a data backup or copy would carry the erasure ledger and keys.")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise KeystoreError(f"MEMORYWEB_KEYSTORE_DIR={str(path)!r}: {exc}") from exc
    return path


@contextlib.contextmanager
def locked() -> Iterator[Path]:
    """Hold the key store's exclusive lock (every process, every thread: a fresh
    descriptor per holder, so threads of one process exclude each other too)."""
    path = ensure()
    descriptor = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(descriptor)  # closing releases the lock


def append(name: str, data: bytes) -> None:
    """Append ``data`` to file ``name`` and make it durable (``fsync``; the directory too
    when the file is new). Call under :func:`locked`."""
    path = directory() / name
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        _sync_directory(path.parent)


def truncate(name: str, size: int) -> None:
    """Cut file ``name`` back to ``size`` bytes (a torn last line), durably."""
    descriptor = os.open(directory() / name, os.O_WRONLY)
    try:
        os.ftruncate(descriptor, size)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_file(name: str, data: bytes) -> None:
    """Replace file ``name`` atomically: a private temporary file, synced, renamed."""
    write_private(directory() / name, data)


def write_private(target: Path, data: bytes) -> None:
    """Replace ``target`` (0600) atomically, in or out of the key store (a KEK file on a
    mounted secret): a private temporary file beside it, synced, renamed."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, target)
    _sync_directory(target.parent)


def key(name: str, size: int = 32) -> bytes:
    """The random key in file ``name``, created (0600) on first use."""
    path = directory() / name
    if not path.exists():
        with locked():
            if not path.exists():
                write_file(name, secrets.token_bytes(size))
    value = path.read_bytes()
    if len(value) != size:
        raise KeystoreError(f"{path} holds {len(value)} bytes, not a {size}-byte key.")
    return value


def keyed_hash(purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under the selector key, for ``purpose`` (a field name):
    the same value gives the same hash here, and nothing without the key."""
    digest = hmac.new(key(SELECTOR_KEY_NAME), f"{purpose}\x00{value}".encode(), hashlib.sha256)
    return "hmac-sha256:" + digest.hexdigest()


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
