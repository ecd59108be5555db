"""Keys' ``last_used_at``, written in the background.

A key's first request in each ``MEMORYWEB_KEY_TOUCH_SECONDS`` used to write
``last_used_at`` inline: a write transaction on the request path, queued behind ingests
for SQLite's one write lock. With a key per namespace and thousands of namespaces,
nearly every request after a restart is such a first request (a py-spy profile of
``bench/tenants.py`` at 1,500 namespaces: 3 % of the server's samples, and lock waits
beside the other writers; docs/performance.md). Like the recall statistics
(apps/memories/recall_stats.py) it is bookkeeping, not an acknowledged write: buffered
per process and flushed every ``MEMORYWEB_RECALL_STATS_SECONDS`` (and at exit); ``0``
writes it inline (the test settings do). A crash loses at most that window's touches;
the key's next use records it again.

The flush writes each key's time floored to the second (keys used in the same second
share a statement) and never moves a key's ``last_used_at`` back: another process may
have written a later one.
"""

from __future__ import annotations

import atexit
import contextlib
from collections import defaultdict
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from apps.core.background import FlushedBuffer

#: Keys per UPDATE (their ids are bound parameters).
CHUNK = 500


class TouchBuffer(FlushedBuffer):
    """Keys' last use, by key id (``interval``: see
    :class:`~apps.core.background.FlushedBuffer`)."""

    thread_name = "key-touch"

    def __init__(self, interval: float | None = None) -> None:
        super().__init__(interval)
        self._due: dict[int, datetime] = {}

    def touch(self, key_id: int, when: datetime) -> None:
        """Record that the key was used at ``when`` (written now if the interval is 0)."""
        if self.interval <= 0:
            _write({key_id: when})
            return
        with self._lock:
            self._keep(key_id, when)
            self._start()

    def flush(self) -> int:
        """Write what is buffered; the number of keys written. On an error (the database
        busy or away) the touches stay buffered for the next flush."""
        with self._lock:
            due, self._due = self._due, {}
        try:
            _write(due)
        except Exception:
            with self._lock:
                for key_id, when in due.items():
                    self._keep(key_id, when)
            raise
        return len(due)

    def _keep(self, key_id: int, when: datetime) -> None:
        if key_id not in self._due or self._due[key_id] < when:
            self._due[key_id] = when


def _write(due: dict[int, datetime]) -> None:
    from apps.tenancy.models import ApiKey

    by_second: dict[datetime, list[int]] = defaultdict(list)
    for key_id, when in due.items():
        by_second[when.replace(microsecond=0)].append(key_id)
    statements = [(when, ids[start:start + CHUNK]) for when, ids in sorted(by_second.items())
                  for start in range(0, len(ids), CHUNK)]
    with transaction.atomic() if len(statements) > 1 else contextlib.nullcontext():
        for when, ids in statements:
            ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=when),
                                  pk__in=ids).update(last_used_at=when)


key_touches = TouchBuffer()
atexit.register(key_touches.flush)
