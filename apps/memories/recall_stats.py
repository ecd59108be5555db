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
import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.core.background import FlushedBuffer


class RecallStatsBuffer(FlushedBuffer):
    """Access counts, last-recalled times and recalls per day (``interval``: see
    :class:`~apps.core.background.FlushedBuffer`)."""

    thread_name = "recall-stats"

    def __init__(self, interval: float | None = None):
        super().__init__(interval)
        self._counts: Counter[UUID] = Counter()
        self._last: datetime | None = None
        #: (namespace id, UTC day) -> recalls answered
        self._recalls: Counter[tuple[int, date]] = Counter()

    def record(self, ids: Iterable[UUID], when: datetime) -> None:
        if self.interval <= 0:
            self._write(Counter(ids), when)
            return
        with self._lock:
            self._counts.update(ids)
            self._last = when
            self._start()

    def record_recall(self, namespace_id: int, day: date) -> None:
        if self.interval <= 0:
            self._write_recalls(Counter({(namespace_id, day): 1}))
            return
        with self._lock:
            self._recalls[(namespace_id, day)] += 1
            self._start()

    def flush(self) -> int:
        """Write what is buffered; returns the number of memories touched."""
        with self._lock:
            counts, when, recalls = self._counts, self._last, self._recalls
            self._counts, self._last, self._recalls = Counter(), None, Counter()
        touched = len(counts)
        try:
            if counts and when:
                self._write(counts, when)
                counts = Counter()
            if recalls:
                self._write_recalls(recalls)  # removes each (namespace, day) once written
        except Exception:
            # The database was busy or away: keep what was not written for the next flush.
            with self._lock:
                self._counts.update(counts)
                self._last = self._last or when
                self._recalls.update(recalls)
            raise
        return touched

    @staticmethod
    def _write_recalls(recalls: Counter[tuple[int, date]]) -> None:
        """Add to each (namespace, day) row, creating it on the day's first recall: one
        upsert per :data:`DAY_ROWS` rows in one transaction. A server with many namespaces
        recalls in hundreds of them a second; a statement and a commit for each took
        SQLite's write lock that often, beside the request path's writes (profiled at
        1,500 namespaces, docs/performance.md). Rows of a namespace deleted meanwhile
        are left out; if one is deleted between that check and the commit (PostgreSQL's
        deferred foreign key), the rows are written one by one instead."""
        items = list(recalls.items())
        try:  # one statement is atomic already (and costs no savepoint inline)
            with transaction.atomic() if len(items) > DAY_ROWS else contextlib.nullcontext():
                for start in range(0, len(items), DAY_ROWS):
                    _upsert_days(items[start:start + DAY_ROWS])
        except IntegrityError:
            RecallStatsBuffer._write_recalls_one_by_one(recalls)
        recalls.clear()

    @staticmethod
    def _write_recalls_one_by_one(recalls: Counter[tuple[int, date]]) -> None:
        from apps.memories.models import RecallDay

        for (namespace_id, day), increment in list(recalls.items()):
            for _ in range(2):  # a concurrent first insert: the second pass updates it
                if RecallDay.objects.filter(namespace_id=namespace_id, day=day).update(
                        count=F("count") + increment):
                    break
                try:
                    with transaction.atomic():
                        RecallDay.objects.create(namespace_id=namespace_id, day=day, count=increment)
                    break
                except IntegrityError:  # created meanwhile, or the namespace was deleted
                    continue
            del recalls[(namespace_id, day)]

    @staticmethod
    def _write(counts: Counter[UUID], when: datetime) -> None:
        from apps.memories.models import Memory

        by_increment: dict[int, list[UUID]] = defaultdict(list)
        for memory_id, increment in counts.items():
            by_increment[increment].append(memory_id)
        statements = [(increment, ids[start : start + 500])
                      for increment, ids in by_increment.items() for start in range(0, len(ids), 500)]
        # All or nothing, so a failed flush is retried whole (one statement is already).
        with transaction.atomic() if len(statements) > 1 else contextlib.nullcontext():
            for increment, ids in statements:
                Memory.objects.filter(pk__in=ids).update(
                    access_count=F("access_count") + increment, last_recalled_at=when)


#: (namespace, day) rows per upsert statement (three parameters each: under SQLite's
#: oldest limit of 999).
DAY_ROWS = 300


def _upsert_days(items: list[tuple[tuple[int, date], int]]) -> None:
    """``INSERT … ON CONFLICT DO UPDATE`` (SQLite 3.24+ and PostgreSQL alike) of these
    (namespace, day) increments, of the namespaces that still exist. (The ``WHERE`` also
    lets SQLite read ``ON CONFLICT`` as the upsert's.)"""
    from apps.memories.models import RecallDay
    from apps.tenancy.models import Namespace

    days = connection.ops.quote_name(RecallDay._meta.db_table)
    existing, existing_params = Namespace.objects.values("pk").query.sql_with_params()
    values = ", ".join(["(%s, %s, %s)"] * len(items))
    params = [value for (namespace_id, day), increment in items
              for value in (namespace_id, day, increment)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {days} (namespace_id, day, count) "
            f"SELECT v.column1, v.column2, v.column3 FROM (VALUES {values}) AS v "
            f"WHERE v.column1 IN ({existing}) "
            f"ON CONFLICT (namespace_id, day) DO UPDATE SET count = {days}.count + excluded.count",
            [*params, *existing_params])


recall_stats = RecallStatsBuffer()
atexit.register(recall_stats.flush)


def note_recalled(ids: Iterable[UUID]) -> None:
    recall_stats.record(list(ids), timezone.now())


def note_recall(namespace_id: int) -> None:
    """One recall answered in the namespace (for recalls per day)."""
    recall_stats.record_recall(namespace_id, timezone.now().date())
