"""Key backups: the key store's key material, apart from every data backup, under a passphrase.

A data backup (``manage.py backup --output``) never holds the key store: crypto-shredding
only works if a namespace's ciphertext in a backup cannot be opened once its key is gone
(docs/encryption.md). The keys still need a copy of their own — a lost key store makes
every encrypted namespace unreadable — so ``backup --keys-to FILE`` writes one, and
``restore --keys-from FILE`` puts it back.

What it holds: ``namespace-keys.json`` as it is (the wrapped data keys and the record of
the shredded ones) and, for the ``file`` provider, the KEK file and those retired KEKs
that a wrapped key still names (a rotation under way). Not the erasure ledger nor its
selector key: the ledger is only ever restored forward (docs/privacy.md), and an older
copy of it would lose erasures. The ``env`` and KMS providers' KEKs are not ours to copy.

Format: ``MAGIC | salt (16) | scrypt n, r, p (three 4-byte integers) | nonce (12) |
AES-256-GCM ciphertext and tag`` of the JSON payload, with the header as associated
data. The key is scrypt(passphrase, salt; n=2^17, r=8, p=1): about 128 MiB and a few
tenths of a second, once per backup or restore, so a stolen file resists guessing.

Restoring merges into the key store under its lock and never goes back in time: a
namespace the store records as shredded is never given its key again, a namespace the
store holds keeps its current entry, and a KEK other than the store's is refused unless
forced (the replaced one is then kept as retired, so nothing it wraps is lost). Every
key added must unwrap before anything is written: a wrong passphrase, a tampered file
or keys that do not open under the configured provider change nothing.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from django.conf import settings

from apps.core import key_providers, keystore, namespace_keys
from apps.core.key_providers import KeyUnavailable

MAGIC = b"MWKEYS-SCRYPT-AESGCM-1\n"
FORMAT = "memoryweb-keys/1"
SALT_BYTES = 16
NONCE_BYTES = 12
#: scrypt cost: 128 MiB of memory (128·n·r bytes) and a few tenths of a second.
N, R, P = 1 << 17, 8, 1
#: The most a file may ask for (it names its own cost): 1 GiB of memory at most.
MAX_N, MAX_R, MAX_P = 1 << 20, 16, 4
#: A key backup sits beside other backups: its passphrase is all that guards every key.
MIN_PASSPHRASE = 12
_HEADER = len(MAGIC) + SALT_BYTES + 12


class KeyBackupError(RuntimeError):
    """What a person must fix: a wrong passphrase, a changed file, a KEK that differs."""


@dataclass
class Restored:
    """What :func:`restore` did (ids and counts only, never key material)."""

    added: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    shredded: list[int] = field(default_factory=list)
    kek: str = ""
    notes: list[str] = field(default_factory=list)


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> AESGCM:
    return AESGCM(Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode()))


def _provider_name() -> str:
    return str(getattr(settings, "MEMORYWEB_KEY_PROVIDER", "file") or "file")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def payload() -> dict[str, Any]:
    """The key material to back up, read under the key store's lock (one consistent
    state: a rotation or shredding is either in it or not)."""
    with keystore.locked():
        keys_file = keystore.directory() / namespace_keys.FILE_NAME
        keys = namespace_keys._parse(keys_file)
        kek, retired = None, []
        if _provider_name() == "file":
            path = key_providers.kek_file()
            kek = path.read_bytes() if path.exists() else None
            in_use = {found["kek"] for entry in keys["namespaces"].values()
                      for found in entry["keys"].values()}
            retired = [found.read_bytes() for found in sorted(path.parent.glob("kek-*.retired"))
                       if key_providers.fingerprint(found.read_bytes()) in in_use]
    return {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "provider": _provider_name(), "namespace_keys": keys,
            "kek": _b64(kek) if kek is not None else None,
            "retired_keks": [_b64(found) for found in retired]}


def seal(data: dict[str, Any], passphrase: str) -> bytes:
    """``data`` as a key backup file's bytes, sealed under ``passphrase``."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyBackupError(f"the key backup passphrase must be at least {MIN_PASSPHRASE} "
                             "characters: it is all that guards every namespace's key.")
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    header = MAGIC + salt + struct.pack(">III", N, R, P)
    body = json.dumps(data, sort_keys=True).encode()
    return header + nonce + _key(passphrase, salt, N, R, P).encrypt(nonce, body, header)


def write(output: Path, passphrase: str) -> dict[str, Any]:
    """Write a key backup to ``output`` (0600, atomically); what it holds, as counts."""
    data = payload()
    sealed = seal(data, passphrase)
    keystore.write_private(output.resolve(), sealed)
    keys = data["namespace_keys"]
    return {"namespaces": len(keys["namespaces"]), "shredded": len(keys["shredded"]),
            "kek": data["kek"] is not None, "retired_keks": len(data["retired_keks"]),
            "provider": data["provider"]}


def open_file(path: Path, passphrase: str) -> dict[str, Any]:
    """The payload of a key backup file; :class:`KeyBackupError` for a wrong passphrase,
    a changed or cut file, or a file that is not a key backup."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyBackupError(f"{path}: {exc.strerror or exc}.") from None
    if not raw.startswith(MAGIC) or len(raw) < _HEADER + NONCE_BYTES + 16:
        raise KeyBackupError(f"{path} is not a MemoryWeb key backup (written by "
                             "manage.py backup --keys-to).")
    header = raw[:_HEADER]
    n, r, p = struct.unpack(">III", header[len(MAGIC) + SALT_BYTES:])
    if not (2 <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise KeyBackupError(f"{path} asks for a key-derivation cost (n={n}, r={r}, p={p}) "
                             "outside what MemoryWeb writes.")
    salt = header[len(MAGIC):len(MAGIC) + SALT_BYTES]
    nonce, body = raw[_HEADER:_HEADER + NONCE_BYTES], raw[_HEADER + NONCE_BYTES:]
    try:
        data = json.loads(_key(passphrase, salt, n, r, p).decrypt(nonce, body, header))
    except InvalidTag:
        raise KeyBackupError(f"wrong passphrase for {path}, or the file was changed; "
                             "nothing was restored.") from None
    if data.get("format") != FORMAT:
        raise KeyBackupError(f"{path} has format {data.get('format')!r}, not {FORMAT}.")
    return data


def restore(path: Path, passphrase: str, *, force: bool = False) -> Restored:
    """Merge the key backup ``path`` into the key store (see the module's docstring)."""
    data = open_file(path, passphrase)
    done = Restored()
    with keystore.locked():
        current = namespace_keys._parse(keystore.directory() / namespace_keys.FILE_NAME)
        writes: list[tuple[Path, bytes]] = []
        unwrapper = _unwrapper(data, force, done, writes)
        backed = data["namespace_keys"]
        for namespace_id, entry in sorted(backed["namespaces"].items(), key=lambda i: int(i[0])):
            if namespace_id in current["shredded"]:
                done.shredded.append(int(namespace_id))  # never brought back
            elif namespace_id in current["namespaces"]:
                done.kept.append(int(namespace_id))  # the store's entry is the newer one
            else:
                _check_unwraps(unwrapper, int(namespace_id), entry)
                current["namespaces"][namespace_id] = entry
                done.added.append(int(namespace_id))
        for namespace_id, record in backed["shredded"].items():
            if namespace_id not in current["namespaces"]:
                current["shredded"].setdefault(namespace_id, record)
        for target, content in writes:
            keystore.write_private(target, content)
        keystore.write_file(namespace_keys.FILE_NAME,
                            json.dumps(current, indent=1, sort_keys=True).encode())
    namespace_keys.forget_all()
    return done


def _unwrapper(data: dict[str, Any], force: bool, done: Restored,
               writes: list[tuple[Path, bytes]]) -> key_providers.KeyProvider | None:
    """The provider the restored keys must open under (None: a file provider without any
    KEK), and the KEK files to write for it (appended to ``writes``; nothing is written
    here). Called under the store's lock."""
    name = _provider_name()
    if name != "file":
        if data.get("kek"):
            done.notes.append(f"the backup's KEK file is not restored: MEMORYWEB_KEY_PROVIDER="
                              f"{name} holds the key-encryption key")
        done.kek = "held by the provider"
        return key_providers.provider(create=False)
    path = key_providers.kek_file()
    existing = path.read_bytes() if path.exists() else None
    backed = base64.b64decode(data["kek"]) if data.get("kek") else None
    current = existing
    if backed is not None and existing is None:
        writes.append((path, backed))
        current, done.kek = backed, "restored"
    elif backed is not None and existing != backed:
        if not force:
            raise KeyBackupError(
                f"the key store's KEK ({key_providers.fingerprint(existing or b'')}, {path}) "
                f"differs from the backup's ({key_providers.fingerprint(backed)}): nothing "
                "was restored. Run restore --keys-from again with --replace-kek to install the "
                "backup's KEK (the present one is kept as retired, so the keys it wraps still "
                "open).")
        writes.append((key_providers.retired_file(key_providers.fingerprint(existing or b"")),
                       existing or b""))
        writes.append((path, backed))
        current, done.kek = backed, "replaced (the previous one kept as retired)"
    else:
        done.kek = "unchanged" if existing is not None else "none"
    retired = [found.read_bytes() for found in sorted(path.parent.glob("kek-*.retired"))]
    for encoded in data.get("retired_keks") or []:
        kek = base64.b64decode(encoded)
        if kek not in retired:
            writes.append((key_providers.retired_file(key_providers.fingerprint(kek)), kek))
            retired.append(kek)
    retired += [existing] if existing is not None and existing != current else []
    return key_providers.LocalKeys(current, retired) if current is not None else None


def _check_unwraps(keys: key_providers.KeyProvider | None, namespace_id: int,
                   entry: dict[str, Any]) -> None:
    if keys is None:
        raise KeyBackupError(f"namespace {namespace_id}'s key cannot be restored: the key "
                             f"store has no KEK ({key_providers.kek_file()}) and the backup "
                             "holds none. Nothing was restored.")
    for version, found in entry["keys"].items():
        try:
            keys.unwrap(found["kek"], base64.b64decode(found["wrapped"]),
                        namespace_keys._context(namespace_id, int(version)))
        except KeyUnavailable as exc:
            raise KeyBackupError(f"namespace {namespace_id}'s key version {version} in the "
                                 f"backup does not open under the configured provider: {exc} "
                                 "Nothing was restored.") from None
