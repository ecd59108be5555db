"""A process's short memory of the API keys it authenticated: a busy agent's requests
do not each look its key up in SQL (``MEMORYWEB_KEY_CACHE_SECONDS``, docs/auth.md).

What keeps it safe:

* Entries are keyed by the SHA-256 of the raw key (the value stored as ``key_hash``),
  never the key itself, and a hit still compares that hash in constant time.
* Only keys that were active when read are remembered, and a hit is checked again
  against the clock: revoked, past ``expires_at`` or past its rotation's ``grace_ends_at``
  is refused at every request, cached or not.
* Each request gets its own copy of the key (unpickled from bytes) and its namespace as
  the database has it now (one primary-key read): nothing one request changes on them
  reaches another, and no cached namespace outlives a change made by a queryset update
  (a reindex's collection swap), which no signal announces.
* In this process, a key saved or deleted (the service, the admin), announced as changed
  (``tenancy.changes.key_changed``: rotated, revoked, its expiry set) or whose namespace is
  saved or deleted (renamed, archived, configured) is forgotten at once, and again when
  the transaction commits; a lookup that started before such a change does not put the
  old row back (``generation``).
* In any other process (another Daphne, a shell's data fix) a change is seen when the
  entry ends: at most ``MEMORYWEB_KEY_CACHE_SECONDS`` later (0 turns the cache off).
"""

from __future__ import annotations

import hmac
import logging
import pickle
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from apps.core import conf
from apps.tenancy import changes
from apps.tenancy.models import ApiKey, Namespace

log = logging.getLogger(__name__)

#: Most keys remembered at once; past it, expired entries go, then all (a full cache only
#: costs the SQL lookups it saves).
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    key_hash: str
    key_id: int
    namespace_id: int | None
    revoked: bool
    expires_at: datetime | None
    grace_ends_at: datetime | None
    snapshot: bytes  # the ApiKey with its namespace, pickled: a fresh copy per request
    until: float  # time.monotonic() past which the entry is not used

    def active(self, now: datetime) -> bool:
        """ApiKeyQuerySet.active(), on the remembered row."""
        return (not self.revoked and (self.expires_at is None or self.expires_at > now)
                and (self.grace_ends_at is None or self.grace_ends_at > now))


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()
_generation = 0


def generation() -> int:
    """Changes forgotten so far; a lookup notes it before reading SQL and remembers its
    result only if no change came in between (:func:`remember`)."""
    return _generation


def find(digest: str, *, stale_namespace_ok: bool = False) -> ApiKey | None:
    """A copy of the remembered, still active key whose hash is ``digest``, or None.
    ``stale_namespace_ok``: when the namespace cannot be re-read (the database is down),
    keep the remembered copy instead of raising — for a door that fails open (the gateway
    forwards unchanged) and writes nothing with it."""
    entry = _entries.get(digest)
    if entry is None:
        return None
    if (time.monotonic() >= entry.until or not hmac.compare_digest(entry.key_hash, digest)
            or not entry.active(timezone.now())):
        return None
    key = pickle.loads(entry.snapshot)  # our own bytes, made by remember()
    if key.namespace_id is not None:
        # The namespace is read afresh (by primary key): its row also changes through
        # queryset updates no signal announces (a reindex swaps its vector collection),
        # and a request must never act on an old copy of it.
        try:
            namespace = Namespace.objects.filter(pk=key.namespace_id).first()
        except DatabaseError:
            if not stale_namespace_ok:
                raise
            # The database is unreachable. The key itself was checked (hash, expiry, not
            # revoked when remembered, at most the cache's seconds ago), so the caller is
            # still known, with the namespace as it was read then: nothing can be written
            # with it, but a door that fails open (the gateway forwards unchanged) can.
            log.warning("key cache: the namespace could not be read; using the "
                        "remembered copy")
            return key
        if namespace is None:
            return None
        key.namespace = namespace
    return key


def remember(digest: str, key: ApiKey, seen_generation: int, *, keep_until: bool = False) -> None:
    """Remember ``key`` (just read, active) under ``digest`` for the configured seconds;
    with ``keep_until``, replace an entry (a touched ``last_used_at``) without extending
    its life."""
    seconds = conf.key_cache_seconds()
    if seconds <= 0:
        return
    snapshot = pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL)
    with _lock:
        if seen_generation != _generation:
            return  # changed while it was read: the next request reads again
        current = _entries.get(digest)
        if keep_until and current is None:
            return
        until = current.until if keep_until else time.monotonic() + seconds
        if len(_entries) >= MAX_ENTRIES and digest not in _entries:
            _prune()
        _entries[digest] = _Entry(key.key_hash, key.pk, key.namespace_id, key.revoked_at is not None,
                                  key.expires_at, key.grace_ends_at, snapshot, until)


def _prune() -> None:
    now = time.monotonic()
    for digest in [d for d, entry in _entries.items() if entry.until <= now]:
        del _entries[digest]
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()


def forget(*, key_id: int | None = None, namespace_id: int | None = None) -> None:
    """Drop what is remembered of a key, or of every key of a namespace."""
    global _generation
    with _lock:
        _generation += 1
        for digest in [d for d, entry in _entries.items()
                       if (key_id is not None and entry.key_id == key_id)
                       or (namespace_id is not None and entry.namespace_id == namespace_id)]:
            del _entries[digest]


def clear() -> None:
    """Forget every key (tests; a restore)."""
    global _generation
    with _lock:
        _generation += 1
        _entries.clear()


def _forget_now_and_at_commit(**which: Any) -> None:
    """At once, so this thread's next request reads the change; and after the commit, so
    no other thread's lookup of the old row (read before the commit) stays remembered."""
    forget(**which)
    transaction.on_commit(lambda: forget(**which))


@receiver(changes.key_changed, dispatch_uid="tenancy.key_cache.key_changed")
def _key_changed(*, key_id: int, **kwargs: Any) -> None:
    _forget_now_and_at_commit(key_id=key_id)


@receiver(post_save, sender=ApiKey, dispatch_uid="tenancy.key_cache.key_saved")
@receiver(post_delete, sender=ApiKey, dispatch_uid="tenancy.key_cache.key_deleted")
def _key_saved(*, instance: ApiKey, **kwargs: Any) -> None:
    _forget_now_and_at_commit(key_id=instance.pk)


@receiver(post_save, sender=Namespace, dispatch_uid="tenancy.key_cache.namespace_saved")
@receiver(post_delete, sender=Namespace, dispatch_uid="tenancy.key_cache.namespace_deleted")
def _namespace_saved(*, instance: Namespace, **kwargs: Any) -> None:
    _forget_now_and_at_commit(namespace_id=instance.pk)
