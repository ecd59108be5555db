"""The erasure ledger: one hash-chained line per executed erasure, in the key store.

Why: a backup taken before an erasure still holds the erased person; restoring it would
bring them back. The ledger lives outside the data directory (apps/core/keystore.py), so
no backup rolls it back, and ``manage.py restore`` (or ``replay_erasures``) re-applies
every entry the restored database does not include (apps/privacy/ledger.py).

An entry is one JSON line: ``seq`` (1, 2, 3…), ``id``, ``at``, ``kind`` (``erasure``,
``retention``, ``namespace_deleted``), ``namespace`` (slug and id), ``memories`` (the
erased ids), ``touched`` (other stores' ids the erasure reported), ``selector`` (each
field as an HMAC under the key store's selector key, never in clear), ``request`` and
``certificate_sha256`` (erasures), ``audit`` (the seq and hash of the change's audit
entry, which tells whether a database includes it), ``origin`` (the hash of that
database's first audit entry: which database history the entry belongs to, so a fresh
database started beside an old key store is not "behind" another one's erasures),
``prev`` (the previous entry's hash) and ``hash`` = SHA-256 of the entry's canonical
JSON without ``hash``.

Appends are made inside the change's transaction, after its audit entry and before the
commit: a failed append fails the change (it rolls back, loudly: 503), so nothing is
erased without its line. The audit entry holds the chain's head lock, so the ledger's
order is the commit order. A line whose transaction then fails to commit names ids that
are still there or already gone: replaying it erases them again, which the erasure had
been approved to do.

Generic on purpose (core knows no app): the callers build the entries' fields.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from apps.core import keystore
from apps.core.errors import Unavailable

FILE_NAME = "erasure-ledger.jsonl"
KINDS = ("erasure", "retention", "namespace_deleted")
GENESIS = "0" * 64


class LedgerError(RuntimeError):
    """The ledger cannot be read as a chain (an entry altered, removed or reordered)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    #: (seq or line number, what is wrong) for the first broken link.
    broken: tuple[int, str] | None = None
    head: str = GENESIS


def canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in entry.items() if k != "hash"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def path() -> Any:
    return keystore.directory() / FILE_NAME


def append(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Append one entry (under the key store's lock, synced to disk) and return it.

    Raises ``Unavailable`` (503) when the key store cannot be written, so the caller's
    transaction rolls back and the request says why."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}")
    try:
        with keystore.locked():
            previous = _last_entry(repair=True)
            entry: dict[str, Any] = {
                **fields, "kind": kind, "seq": (previous or {}).get("seq", 0) + 1,
                "id": str(uuid.uuid4()), "at": timezone.now().isoformat(),
                "prev": (previous or {}).get("hash", GENESIS)}
            entry["hash"] = entry_hash(entry)
            keystore.append(FILE_NAME, _line(entry))
    except (OSError, keystore.KeystoreError, LedgerError) as exc:
        raise unavailable(exc) from exc
    return entry


def unavailable(exc: Exception) -> Unavailable:
    """The 503 a change fails with when its ledger entry cannot be made."""
    return Unavailable(f"the erasure ledger in MEMORYWEB_KEYSTORE_DIR ({keystore.directory()}) "
                       f"could not be written ({exc}); nothing was committed: fix the key store "
                       "and retry.")


def _line(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(entry), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode() + b"\n"


def _last_entry(*, repair: bool) -> dict[str, Any] | None:
    """The last complete entry. A torn last line (a writer died mid-append, before its
    transaction could commit) is cut off when ``repair`` (under the lock)."""
    file = path()
    if not file.exists():
        return None
    with file.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        if size == 0:
            return None
        block, data, position = 65536, b"", size
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            body = data if not data.endswith(b"\n") else data[:-1]
            if b"\n" in body or position == 0:
                break
    end = size
    if not data.endswith(b"\n"):  # torn: keep what ends with the last newline
        cut = data.rfind(b"\n")
        end = size - len(data) + cut + 1 if cut >= 0 else 0
        if not repair:
            raise LedgerError(f"{file}: the last line is incomplete")
        keystore.truncate(FILE_NAME, end)
        return _last_entry(repair=False) if end else None
    lines = data[:-1].split(b"\n")
    try:
        return json.loads(lines[-1])
    except ValueError as exc:
        raise LedgerError(f"{file}: the last entry is not JSON ({exc})") from exc


def entries() -> Iterator[dict[str, Any]]:
    """Every entry in order, parsed (not verified: :func:`verify` checks the chain)."""
    file = path()
    if not file.exists():
        return
    with file.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return  # a torn last line: not an entry (the next append cuts it)
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise LedgerError(f"line {number} is not JSON ({exc})") from exc


def verify() -> Verdict:
    """Walk the chain: each entry's hash matches its content, its ``prev`` is the hash of
    the entry before, and ``seq`` counts up by one without a gap."""
    previous, count = GENESIS, 0
    try:
        for entry in entries():
            count += 1
            seq = entry.get("seq")
            if seq != count:
                return Verdict(False, count, (count, f"entry {count} is missing (found seq {seq})"))
            if entry_hash(entry) != entry.get("hash"):
                return Verdict(False, count, (count, f"entry {count}'s content does not match "
                                                     "its hash (altered)"))
            if entry.get("prev") != previous:
                return Verdict(False, count, (count, f"entry {count}'s prev does not match entry "
                                                     f"{count - 1}'s hash"))
            previous = entry["hash"]
    except LedgerError as exc:
        return Verdict(False, count + 1, (count + 1, str(exc)))
    return Verdict(True, count, None, previous)


def head() -> dict[str, Any] | None:
    """``{"seq", "hash"}`` of the last entry, or None (no ledger yet): what a backup
    records, so a restore can tell this key store is the one it was taken beside."""
    try:
        last = _last_entry(repair=False) if path().exists() else None
    except LedgerError:  # a torn last line (being cut by the next append): the one before
        last = None
        for last in entries():  # noqa: B007  (the last one is wanted)
            pass
    return {"seq": last["seq"], "hash": last["hash"]} if last else None
