"""The chain's tip, kept outside the database: what makes a cut-off tail detectable.

Someone able to delete the last audit rows can also rewrite ``AuditHead``; they cannot
as easily rewrite a file elsewhere that carries an HMAC (keyed with SECRET_KEY) of the
tip. After every commit that appended entries the file moves forward, never back (an
exclusive file lock orders writers across processes). It may lag behind the database
(a crash between commit and write), never lead it: a file ahead of the log means
entries were removed. Point ``MEMORYWEB_AUDIT_ANCHOR`` at storage the database's
operators cannot write, where that matters.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchor:
    seq: int
    entry_hash: str
    signed: bool  # the HMAC matches: written by this deployment


def path() -> Path | None:
    value = settings.MEMORYWEB_AUDIT_ANCHOR
    return Path(value) if value else None


def _signature(seq: int, entry_hash: str) -> str:
    message = f"memoryweb-audit-anchor:{seq}:{entry_hash}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def read() -> Anchor | None:
    """The anchor on disk, or None if there is none (or it is unreadable)."""
    where = path()
    if where is None or not where.exists():
        return None
    try:
        data = json.loads(where.read_text())
        seq, entry_hash = int(data["seq"]), str(data["entry_hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return Anchor(-1, "", signed=False)
    signed = hmac.compare_digest(str(data.get("hmac", "")), _signature(seq, entry_hash))
    return Anchor(seq, entry_hash, signed)


def advance(seq: int, entry_hash: str, *, force: bool = False) -> None:
    """Move the anchor to ``seq`` if that is further than it is (or anyway, ``force``).

    Runs after the commit: a failure here is logged, never raised (the change and its
    entry are committed; the anchor catches up with the next write).
    """
    where = path()
    if where is None:
        return
    try:
        _write(where, seq, entry_hash, force)
    except OSError as exc:
        log.error("audit anchor %s not advanced to %s: %s", where, seq, exc)


def is_signed(seq: int, entry_hash: str, signature: str) -> bool:
    """True when ``signature`` is this deployment's HMAC of the anchor (a backup's saved
    anchor is checked with it before a restore trusts it)."""
    return hmac.compare_digest(str(signature), _signature(seq, entry_hash))


def write(seq: int, entry_hash: str, *, force: bool = False) -> None:
    """Set the anchor to ``seq`` now, raising on failure (a restore must know); ``force``
    also moves it back. No-op when anchoring is off."""
    where = path()
    if where is not None:
        _write(where, seq, entry_hash, force)


def _write(where: Path, seq: int, entry_hash: str, force: bool) -> None:
    where.parent.mkdir(parents=True, exist_ok=True)
    with open(where.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read()
        if not force and current is not None and current.signed and current.seq >= seq:
            return
        body = {"seq": seq, "entry_hash": entry_hash, "hmac": _signature(seq, entry_hash)}
        temporary = where.with_suffix(".tmp")
        temporary.write_text(json.dumps(body))
        os.replace(temporary, where)
