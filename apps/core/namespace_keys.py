"""The namespaces' data keys: made, wrapped, kept in the key store, rotated, destroyed.

Each encrypted namespace has its own 256-bit data key (docs/encryption.md). It exists in
clear only in the memory of the processes using it; on disk it is wrapped under the
provider's key-encryption key (apps/core/key_providers.py) in ``namespace-keys.json`` in
the key store — outside the data directory and so outside every data backup. Destroying
a namespace's entry (:func:`shred`) is crypto-shredding: whatever ciphertext of it is left
anywhere, a backup included, cannot be opened again.

A namespace may hold several key versions while it is re-encrypted under a new one
(:func:`new_version`; the old one is dropped by :func:`retire` when nothing uses it). Each
wrapping is bound to its namespace id and version: an entry copied to another namespace
does not unwrap. Purpose keys (:func:`subkey`: the keyword index's blind tokens, content
hashes) are derived from the data key with HKDF-SHA256, so one destroyed key takes all.

Keyed by namespace id (core is below tenancy): callers pass ``namespace.pk`` and its slug
(kept for people reading the file and the dashboard, never trusted for lookup).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apps.core import key_providers, keystore
from apps.core.key_providers import KeyUnavailable

FILE_NAME = "namespace-keys.json"
FORMAT = 1
KEY_BYTES = 32

_cache: dict[tuple[int, int, str], bytes] = {}
#: Purpose keys by (namespace, version, purpose, data key): looked up only after
#: :func:`data_key` answered, so a shredded key still fails at once.
_subkeys: dict[tuple[int, int, str, bytes], bytes] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class KeyStatus:
    """What the dashboard and API show of a namespace's keys (never key material)."""

    namespace_id: int
    slug: str
    current_version: int
    versions: tuple[int, ...]
    created_at: str
    rotated_at: str | None
    kek_ids: tuple[str, ...]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _context(namespace_id: int, version: int) -> bytes:
    return f"namespace:{int(namespace_id)}:v{int(version)}".encode()


#: The file as last parsed, with the stat that identifies that version of it: every
#: seal and open asks for a key, and a ``stat`` is all it then costs (a change by any
#: process replaces the file, so its inode and mtime change with it).
_parsed: tuple[tuple[str, int, int, int], dict[str, Any]] | None = None
#: The file's path as a string per key store directory: ``os.stat`` of it costs a third
#: of building a Path and stat-ing that, once per seal and open.
_paths: dict[Any, str] = {}


def _read() -> dict[str, Any]:
    """The file's content, for reading only (:func:`_change` edits a fresh parse)."""
    global _parsed
    directory = keystore.directory()
    path = _paths.get(directory)
    if path is None:
        path = _paths[directory] = str(directory / FILE_NAME)
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return {"format": FORMAT, "namespaces": {}, "shredded": {}}
    # The path too: another key store's file (a test's) may reuse an inode and a time.
    signature = (path, found.st_ino, found.st_mtime_ns, found.st_size)
    cached = _parsed
    if cached is not None and cached[0] == signature:
        return cached[1]
    data = _parse(directory / FILE_NAME)
    _parsed = (signature, data)
    return data


def _parse(path: Any) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "namespaces": {}, "shredded": {}}
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise KeyUnavailable(f"{path} is not valid JSON ({exc}).") from None
    if data.get("format") != FORMAT:
        raise KeyUnavailable(f"{path} has format {data.get('format')!r}, not {FORMAT}.")
    return data


def _write(data: dict[str, Any]) -> None:
    keystore.write_file(FILE_NAME, json.dumps(data, indent=1, sort_keys=True).encode())


def _change(edit: Callable[[dict[str, Any]], Any]) -> Any:
    """Read, edit and write the file under the key store's lock (every process)."""
    with keystore.locked():
        data = _parse(keystore.directory() / FILE_NAME)
        result = edit(data)
        _write(data)
    return result


def _wrapping_provider() -> key_providers.KeyProvider:
    """The provider new keys are wrapped with, had before the key store's lock is taken
    (the file provider takes it to make its KEK). It makes its KEK for the first key only:
    with keys wrapped already, a missing KEK file is an error to fix, never replaced."""
    return key_providers.provider(create=not _read()["namespaces"])


def _wrapped_entry(keys: key_providers.KeyProvider, namespace_id: int, version: int,
                   key: bytes) -> dict[str, str]:
    kek_id, wrapped = keys.wrap(key, _context(namespace_id, version))
    return {"wrapped": base64.b64encode(wrapped).decode("ascii"), "kek": kek_id,
            "created_at": _now()}


def create(namespace_id: int, slug: str) -> int:
    """Give a namespace its first data key (idempotent: an existing one is kept); its
    current version."""
    keys = _wrapping_provider()

    def edit(data: dict[str, Any]) -> int:
        entry = data["namespaces"].get(str(namespace_id))
        if entry is not None:
            return int(entry["current"])
        data["namespaces"][str(namespace_id)] = {
            "slug": slug, "current": 1, "created_at": _now(), "rotated_at": None,
            "keys": {"1": _wrapped_entry(keys, namespace_id, 1, secrets.token_bytes(KEY_BYTES))}}
        data["shredded"].pop(str(namespace_id), None)  # a new namespace reusing the id
        return 1
    return _change(edit)


def has_key(namespace_id: int) -> bool:
    return str(namespace_id) in _read()["namespaces"]


def data_key(namespace_id: int, version: int | None = None) -> tuple[int, bytes]:
    """``(version, key)``: the namespace's current data key, or the given version's;
    :class:`KeyUnavailable` (never a fallback) when it has none, was shredded, or its
    wrapped key does not open under the provider's KEK."""
    data = _read()
    entry = data["namespaces"].get(str(namespace_id))
    if entry is None:
        shredded = data["shredded"].get(str(namespace_id))
        raise KeyUnavailable(
            f"namespace {namespace_id}'s data key was destroyed on {shredded['at']} "
            "(crypto-shredded): its ciphertext cannot be read." if shredded else
            f"namespace {namespace_id} has no data key in the key store "
            f"({keystore.directory() / FILE_NAME}).")
    version = int(entry["current"]) if version is None else int(version)
    found = entry["keys"].get(str(version))
    if found is None:
        raise KeyUnavailable(f"namespace {namespace_id} has no data key version {version}.")
    cached = (int(namespace_id), version, found["wrapped"])
    with _cache_lock:
        if cached in _cache:
            return version, _cache[cached]
    key = key_providers.provider(create=False).unwrap(
        found["kek"], base64.b64decode(found["wrapped"]), _context(namespace_id, version))
    with _cache_lock:
        _cache[cached] = key
    return version, key


#: The data key version the purpose keys are derived from: the namespace's first. Blind
#: keyword tokens and keyed content hashes must stay the same across a rotation of the
#: data key (the index and the dedup hashes would otherwise stop matching the moment a
#: new version is current), so that version is kept as long as the namespace lives
#: (:func:`retire` refuses it) and destroyed with the others when it is shredded.
PURPOSE_VERSION = 1


def subkey(namespace_id: int, purpose: str, version: int | None = None) -> bytes:
    """A key for one purpose (``blind-tokens``, ``content-hash``), derived from the data
    key (:data:`PURPOSE_VERSION` unless told): destroyed with it, and never usable as it."""
    version = PURPOSE_VERSION if version is None else version
    _, key = data_key(namespace_id, version)
    cached = (int(namespace_id), version, purpose, key)
    with _cache_lock:
        if cached in _subkeys:
            return _subkeys[cached]
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                   info=f"memoryweb/{purpose}".encode()).derive(key)
    with _cache_lock:
        _subkeys[cached] = derived
    return derived


def new_version(namespace_id: int) -> int:
    """A new data key for the namespace, made current (re-encryption moves the data to it;
    the older versions still open what they sealed until :func:`retire`)."""
    keys = _wrapping_provider()

    def edit(data: dict[str, Any]) -> int:
        entry = data["namespaces"].get(str(namespace_id))
        if entry is None:
            raise KeyUnavailable(f"namespace {namespace_id} has no data key to rotate.")
        version = max(int(v) for v in entry["keys"]) + 1
        entry["keys"][str(version)] = _wrapped_entry(keys, namespace_id, version,
                                                     secrets.token_bytes(KEY_BYTES))
        entry["current"], entry["rotated_at"] = version, _now()
        return version
    return _change(edit)


def retire(namespace_id: int, version: int) -> None:
    """Drop an old key version once nothing it sealed is left (never the current one)."""
    def edit(data: dict[str, Any]) -> None:
        entry = data["namespaces"].get(str(namespace_id))
        if entry is None or int(entry["current"]) == int(version):
            raise KeyUnavailable(f"namespace {namespace_id}'s key version {version} is current "
                                 "or unknown; it cannot be retired.")
        if int(version) == PURPOSE_VERSION:
            raise KeyUnavailable(f"namespace {namespace_id}'s key version {PURPOSE_VERSION} "
                                 "derives its keyword tokens and content hashes; it is kept "
                                 "until the namespace is shredded.")
        entry["keys"].pop(str(version), None)
    _change(edit)
    _forget(namespace_id)


def shred(namespace_id: int) -> bool:
    """Destroy every data key of the namespace (crypto-shredding); whether it had any.
    Recorded (id and time, no key) so a later read says why it fails."""
    def edit(data: dict[str, Any]) -> bool:
        entry = data["namespaces"].pop(str(namespace_id), None)
        if entry is not None:
            data["shredded"][str(namespace_id)] = {"slug": entry.get("slug", ""), "at": _now()}
        return entry is not None
    had = _change(edit)
    _forget(namespace_id)
    return had


def shredded() -> dict[str, dict[str, str]]:
    """The record of destroyed keys: namespace id (text) -> its slug and when (no key)."""
    return {k: dict(v) for k, v in _read()["shredded"].items()}


def rewrap_all(progress: Callable[[int], None] | None = None) -> int:
    """Re-wrap every data key under the provider's current KEK (a KEK rotation: the keys
    and the data stay, only their wrapping changes); how many were re-wrapped."""
    keys = key_providers.provider(create=False)
    current = keys.key_id()

    def edit(data: dict[str, Any]) -> int:
        done = 0
        for namespace_id, entry in data["namespaces"].items():
            for version, found in entry["keys"].items():
                if found["kek"] == current:
                    continue
                context = _context(int(namespace_id), int(version))
                key = keys.unwrap(found["kek"], base64.b64decode(found["wrapped"]), context)
                kek_id, wrapped = keys.wrap(key, context)
                found.update(wrapped=base64.b64encode(wrapped).decode("ascii"), kek=kek_id)
                done += 1
                if progress is not None:
                    progress(1)
        return done
    return _change(edit)


def kek_ids_in_use() -> set[str]:
    return {found["kek"] for entry in _read()["namespaces"].values()
            for found in entry["keys"].values()}


def status() -> list[KeyStatus]:
    """Every namespace's keys as the dashboard shows them (ids, ages; no key material)."""
    return [KeyStatus(int(namespace_id), entry.get("slug", ""), int(entry["current"]),
                      tuple(sorted(int(v) for v in entry["keys"])), entry["created_at"],
                      entry.get("rotated_at"),
                      tuple(sorted({found["kek"] for found in entry["keys"].values()})))
            for namespace_id, entry in sorted(_read()["namespaces"].items(),
                                              key=lambda item: int(item[0]))]


def problems() -> list[str]:
    """Why the server must not start on these keys: a wrapped key the provider cannot
    open (a missing or wrong KEK), or an unreadable file. Empty when all open."""
    try:
        data = _read()
        if not data["namespaces"]:
            return []
        found = []
        for namespace_id, entry in data["namespaces"].items():
            for version in entry["keys"]:
                try:
                    data_key(int(namespace_id), int(version))
                except KeyUnavailable as exc:
                    found.append(f"namespace {namespace_id} ({entry.get('slug', '')}) key "
                                 f"version {version}: {exc}")
        return found
    except (KeyUnavailable, keystore.KeystoreError, OSError) as exc:
        return [str(exc)]


def _forget(namespace_id: int) -> None:
    with _cache_lock:
        for cached in [c for c in _cache if c[0] == int(namespace_id)]:
            del _cache[cached]
        for derived in [d for d in _subkeys if d[0] == int(namespace_id)]:
            del _subkeys[derived]


def forget_all() -> None:
    """Drop every key held in this process's memory (a rotation, tests)."""
    with _cache_lock:
        _cache.clear()
        _subkeys.clear()
