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

The gateway also asks it who a key is while the database is down (:func:`remembered`,
docs/gateway.md "Fail-open"): an entry outlives its seconds there, up to the gateway's
grace (``MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS``) after the database last confirmed the key.
So that this never honours a key changed elsewhere long before the outage, the gateway
starts a sweep (:func:`keep_fresh`) that re-reads every remembered key every
``MEMORYWEB_KEY_CACHE_SECONDS`` while the database answers, dropping the ones no longer
active. :data:`breaker` says whether the database is worth trying: after a failure (or
an attempt past its request's budget) nobody tries it for :data:`RETRY_SECONDS`, then one
attempt at a time, so a database that hangs costs one thread, not one per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import Error, close_old_connections, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from apps.core import background, conf
from apps.core.rows_by_pk import rows_by_pk
from apps.tenancy import changes
from apps.tenancy.models import ApiKey, Namespace

log = logging.getLogger(__name__)

#: Most keys remembered at once; past it, expired entries go, then all (a full cache only
#: costs the SQL lookups it saves).
MAX_ENTRIES = 10_000
#: Seconds after a database failure before anyone tries the database again (then one
#: attempt at a time until one succeeds).
RETRY_SECONDS = 2.0
#: Seconds an attempt in flight keeps others from trying: one stuck on a connection that
#: never answers (no ``statement_timeout``) must not keep the gateway off the database for
#: ever once it is back.
PROBE_LEASE_SECONDS = 30.0
#: Keys re-read per query by the sweep.
SWEEP_CHUNK = 500


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
    confirmed: float  # time.monotonic() when the database last showed the key active

    def active(self, now: datetime) -> bool:
        """ApiKeyQuerySet.active(), on the remembered row."""
        return _active(self.revoked, self.expires_at, self.grace_ends_at, now)


def _active(revoked: bool, expires_at: datetime | None, grace_ends_at: datetime | None,
            now: datetime) -> bool:
    """What ApiKeyQuerySet.active() selects, on one row's fields."""
    return (not revoked and (expires_at is None or expires_at > now)
            and (grace_ends_at is None or grace_ends_at > now))


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()
_generation = 0
#: Seconds an entry is kept past its end for the gateway (0 until it starts the sweep).
_grace = 0.0
_sweeping_pid: int | None = None


def generation() -> int:
    """Changes forgotten so far; a lookup notes it before reading SQL and remembers its
    result only if no change came in between (:func:`remember`)."""
    return _generation


def find(digest: str) -> ApiKey | None:
    """A copy of the remembered, still active key whose hash is ``digest``, or None."""
    entry = _entries.get(digest)
    if entry is None:
        return None
    if (time.monotonic() >= entry.until or not hmac.compare_digest(entry.key_hash, digest)
            or not entry.active(timezone.now())):
        return None
    return _with_namespace(pickle.loads(entry.snapshot))  # our own bytes, made by remember()


def _with_namespace(key: ApiKey) -> ApiKey | None:
    """``key`` with its namespace read afresh by primary key (None if it is gone): the row
    also changes through queryset updates no signal announces (a reindex swaps its vector
    collection), and a request must never act on an old copy of it. (rows_by_pk: 0.1 ms
    against the ORM's 0.45, on every request with a key.)"""
    if key.namespace_id is not None:
        namespace = rows_by_pk(Namespace, [key.namespace_id]).get(key.namespace_id)
        if namespace is None:
            return None
        key.namespace = namespace
    return key


def revalidate(digest: str) -> tuple[bool, ApiKey | None]:
    """For a key this process remembers but :func:`find` did not answer (its seconds are
    up, or it stopped being active): ``(True, key)`` with the key row and its namespace
    read afresh by primary key when the row still has this hash and is active now,
    ``(True, None)`` when it does not (revoked, expired, deleted: no other row can hold
    the hash), ``(False, None)`` when nothing is remembered (the caller looks it up).

    Why: a key used less often than every ``MEMORYWEB_KEY_CACHE_SECONDS`` (an agent per
    namespace among thousands) was looked up by prefix through the ORM on each request
    (~1.1 ms); two reads by primary key cost ~0.2 ms and see the same row."""
    entry = _entries.get(digest)
    if entry is None:
        return False, None
    return True, read_active(entry.key_id, digest)


def read_active(key_id: int, digest: str) -> ApiKey | None:
    """The key row ``key_id`` with its namespace, read afresh by primary key (rows_by_pk),
    if it has the hash ``digest`` (compared in constant time) and is active now (what
    ``ApiKey.objects.active()`` selects); else None."""
    key = rows_by_pk(ApiKey, [key_id]).get(key_id)
    if (key is None or not hmac.compare_digest(key.key_hash, digest)
            or not _active(key.revoked_at is not None, key.expires_at, key.grace_ends_at,
                           timezone.now())):
        return None
    return _with_namespace(key)


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
        now = time.monotonic()
        until = current.until if keep_until else now + seconds
        # A touch read no key row: the key was last confirmed when its entry was.
        confirmed = current.confirmed if keep_until else now
        if len(_entries) >= MAX_ENTRIES and digest not in _entries:
            _prune()
        _entries[digest] = _entry(key, snapshot, until, confirmed)


def _entry(key: ApiKey, snapshot: bytes, until: float, confirmed: float) -> _Entry:
    return _Entry(key.key_hash, key.pk, key.namespace_id, key.revoked_at is not None,
                  key.expires_at, key.grace_ends_at, snapshot, until, confirmed)


def _prune() -> None:
    now = time.monotonic()
    for digest in [d for d, entry in _entries.items() if entry.until + _grace <= now]:
        del _entries[digest]
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()


def remembered(raw: str, grace: float) -> ApiKey | None:
    """For the gateway while the database is down: a copy of the key ``raw`` as last read
    (its namespace with it), if it is remembered, bound to a namespace, still active by
    the remembered row (revoked, expiry, rotation checked now), and the database showed
    it active at most ``grace`` seconds ago. Never reads SQL. The raw key is only hashed."""
    if grace <= 0:
        return None
    digest = hashlib.sha256(raw.encode()).hexdigest()  # as services._hash_key
    entry = _entries.get(digest)
    if (entry is None or entry.namespace_id is None
            or time.monotonic() - entry.confirmed > grace
            or not hmac.compare_digest(entry.key_hash, digest)
            or not entry.active(timezone.now())):
        return None
    return pickle.loads(entry.snapshot)  # our own bytes, made by remember()


def keep_fresh(grace: float) -> None:
    """Keep remembered keys ``grace`` seconds past their end, and start this process's
    sweep (once): every ``MEMORYWEB_KEY_CACHE_SECONDS`` it re-reads them (:func:`sweep`).
    Called by the gateway, the one door that uses :func:`remembered`."""
    global _grace, _sweeping_pid
    _grace = max(0.0, grace)
    if (_grace <= 0 or conf.key_cache_seconds() <= 0 or _sweeping_pid == os.getpid()
            or not background.AUTONOMOUS_THREADS):
        return
    with _lock:
        if _sweeping_pid == os.getpid():
            return
        _sweeping_pid = os.getpid()
    threading.Thread(target=_sweep_forever, name="key-cache-sweep", daemon=True).start()


def _sweep_forever() -> None:
    while True:
        time.sleep(max(1.0, conf.key_cache_seconds()))
        try:
            sweep()
        except Exception:  # never let the sweep die: the gateway's grace depends on it
            log.exception("key cache: the sweep failed")


def sweep() -> bool:
    """Re-read every remembered key (a few queries by primary key): refresh the active
    ones (their namespace too) as confirmed now, drop the rest (revoked, expired,
    deleted elsewhere) and those unused for longer than the grace. Skipped while
    :data:`breaker` says the database is down; a failure tells it. Whether it ran."""
    started = time.monotonic()
    with _lock:
        for digest in [d for d, entry in _entries.items() if entry.until + _grace <= started]:
            del _entries[digest]
        wanted = sorted({entry.key_id for entry in _entries.values()})
        seen = _generation
    if not wanted:
        return False
    attempt = breaker.attempt()
    if attempt is None:
        return False
    rows: dict[int, ApiKey] = {}
    try:
        close_old_connections()
        for start in range(0, len(wanted), SWEEP_CHUNK):
            rows.update((key.pk, key) for key in ApiKey.objects.active().select_related(
                "namespace").filter(pk__in=wanted[start:start + SWEEP_CHUNK]))
    except Error as exc:  # DatabaseError, and InterfaceError (not one of those)
        attempt.failed()
        log.warning("key cache: the sweep could not read the keys (%s)", type(exc).__name__)
        return False
    else:
        attempt.ok()
    finally:
        attempt.abandon()  # any other exception: ended all the same (no-op once ended)
        close_old_connections()
    asked = set(wanted)
    with _lock:
        for digest, entry in list(_entries.items()):
            if entry.key_id not in asked:
                continue  # remembered since the sweep began
            row = rows.get(entry.key_id)
            if row is None or row.key_hash != entry.key_hash:
                del _entries[digest]  # not active any more: always safe to forget
            elif seen == _generation:  # nothing changed meanwhile: the read is current
                snapshot = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
                _entries[digest] = _entry(row, snapshot, entry.until, started)
    return True


class Attempt:
    """One try of the database under :data:`breaker`; ends with :meth:`ok` or
    :meth:`failed` (from the thread that tried), or :meth:`stalled` (from the request
    that stopped waiting for it)."""

    def __init__(self, owner: Breaker, probe: bool) -> None:
        self._owner = owner
        self.probe = probe
        self.ended = False

    def ok(self) -> None:
        self._owner._ended(self, True)

    def failed(self) -> None:
        self._owner._ended(self, False)

    def stalled(self) -> None:
        self._owner._stalled(self)

    def abandon(self) -> None:
        """Ended without a verdict (it never reached the database, or failed otherwise):
        a probe's lease is given back at once. No-op once ended."""
        self._owner._abandoned(self)


class Breaker:
    """Whether the database is worth trying now. Up: everyone tries. After a failure or
    a stall it is down: nobody tries for :data:`RETRY_SECONDS`, then one attempt (a probe)
    at a time, until one succeeds. Only the gateway and the sweep consult it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._probing = False
        self._probing_since = 0.0

    @property
    def down(self) -> bool:
        return self._down

    def attempt(self) -> Attempt | None:
        """An attempt to make now, or None: the database failed moments ago, or another
        attempt is finding out whether it is back."""
        with self._lock:
            now = time.monotonic()
            if not self._down:
                return Attempt(self, probe=False)
            if now < self._retry_at or (
                    self._probing and now - self._probing_since < PROBE_LEASE_SECONDS):
                return None
            self._probing, self._probing_since = True, now
            return Attempt(self, probe=True)

    def _close(self, attempt: Attempt) -> bool:
        """End ``attempt`` (the lock held): whether it was still open."""
        if attempt.ended:
            return False
        attempt.ended = True
        if attempt.probe:
            self._probing = False
        return True

    def _ended(self, attempt: Attempt, ok: bool) -> None:
        with self._lock:
            if not self._close(attempt):
                return
            if ok:
                self._down = False
            else:
                self._down = True
                self._retry_at = time.monotonic() + RETRY_SECONDS

    def _abandoned(self, attempt: Attempt) -> None:
        with self._lock:
            self._close(attempt)

    def _stalled(self, attempt: Attempt) -> None:
        with self._lock:
            if attempt.ended:
                return  # it answered just as its request stopped waiting
            self._down = True
            self._retry_at = time.monotonic() + RETRY_SECONDS
            if not attempt.probe:  # still in the database: nobody else tries until it ends
                attempt.probe = True
                self._probing, self._probing_since = True, time.monotonic()

    def reset(self) -> None:
        """Up again (tests)."""
        with self._lock:
            self._down, self._retry_at, self._probing = False, 0.0, False


#: The database as the gateway's admissions and the sweep last found it.
breaker = Breaker()


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
