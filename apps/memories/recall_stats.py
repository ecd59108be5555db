"""Access counts and last-recalled times, written in the background.

A recall is a read; updating ``access_count`` and ``last_recalled_at`` inline made each
recall a write transaction (an fsync under SQLite's ``synchronous=FULL``, ~1 ms median
and ~4 ms at p95 measured here) and made recalls queue behind ingests for SQLite's
single write lock. These are statistics, not acknowledged writes: they are buffered per
process and flushed every ``MEMORYWEB_RECALL_STATS_SECONDS`` (and at exit). A crash
loses at most that window of counts. ``0`` writes them inline (the test settings do).
"""

from __future__ import annotations

import atexit
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from apps.core.background import run_every


class RecallStatsBuffer:
    def __init__(self, interval: float):
        self.interval = interval
        self._counts: Counter[UUID] = Counter()
        self._last: datetime | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self, ids: Iterable[UUID], when: datetime) -> None:
        if self.interval <= 0:
            self._write(Counter(ids), when)
            return
        with self._lock:
            self._counts.update(ids)
            self._last = when
            if self._thread is None:
                self._thread = run_every(self.interval, self.flush, "recall-stats")

    def flush(self) -> int:
        """Write what is buffered; returns the number of memories touched."""
        with self._lock:
            counts, when = self._counts, self._last
            self._counts, self._last = Counter(), None
        if counts and when:
            self._write(counts, when)
        return len(counts)

    @staticmethod
    def _write(counts: Counter[UUID], when: datetime) -> None:
        from apps.memories.models import Memory

        by_increment: dict[int, list[UUID]] = defaultdict(list)
        for memory_id, increment in counts.items():
            by_increment[increment].append(memory_id)
        for increment, ids in by_increment.items():
            for start in range(0, len(ids), 500):
                Memory.objects.filter(pk__in=ids[start : start + 500]).update(
                    access_count=F("access_count") + increment, last_recalled_at=when
                )


recall_stats = RecallStatsBuffer(settings.MEMORYWEB_RECALL_STATS_SECONDS)
atexit.register(recall_stats.flush)


def note_recalled(ids: Iterable[UUID]) -> None:
    recall_stats.record(list(ids), timezone.now())
