"""Recall statistics are buffered and flushed in the background, never lost on flush."""

from __future__ import annotations

from apps.memories.models import Memory
from apps.memories.recall_stats import RecallStatsBuffer


def test_buffered_counts_reach_the_database_on_flush(agent, stored, monkeypatch):
    from apps.memories import recall_stats

    buffer = RecallStatsBuffer(interval=3600)  # the background thread will not fire in this test
    monkeypatch.setattr(recall_stats, "recall_stats", buffer)
    first = stored("the coffee machine is on floor three")
    second = stored("the printer is on floor two")
    for _ in range(3):
        agent.post("/api/v1/recall", {"query": "coffee machine", "k": 1})
    agent.post("/api/v1/recall", {"query": "where is the printer", "k": 1})
    assert Memory.objects.get(pk=first["id"]).access_count == 0  # not yet written
    assert buffer.flush() == 2
    one, two = Memory.objects.get(pk=first["id"]), Memory.objects.get(pk=second["id"])
    assert (one.access_count, two.access_count) == (3, 1)
    assert one.last_recalled_at is not None
    assert buffer.flush() == 0  # nothing counted twice
    assert Memory.objects.get(pk=first["id"]).access_count == 3


def test_recall_response_shows_the_new_count(agent, stored, monkeypatch):
    from apps.memories import recall_stats

    monkeypatch.setattr(recall_stats, "recall_stats", RecallStatsBuffer(interval=3600))
    stored("a lone memory")
    result = agent.post("/api/v1/recall", {"query": "lone", "k": 1}).json()["results"][0]
    assert result["access_count"] == 1 and result["last_recalled_at"]


def _namespaces(count: int) -> list:
    from apps.tenancy.models import Namespace

    return Namespace.objects.bulk_create([Namespace(slug=f"stats-{i}", name=f"stats {i}")
                                          for i in range(count)])


def test_recalls_per_day_of_many_namespaces_are_one_statement(db):
    """A server recalling in hundreds of namespaces a second flushes their day rows in one
    upsert, not a statement and a commit each (docs/performance.md)."""
    from datetime import date

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.memories.models import RecallDay

    namespaces = _namespaces(40)
    day = date(2026, 1, 2)
    RecallDay.objects.bulk_create([RecallDay(namespace=ns, day=day, count=10)
                                   for ns in namespaces[:20]])
    buffer = RecallStatsBuffer(interval=3600)
    for i, ns in enumerate(namespaces):
        for _ in range(i % 3 + 1):
            buffer.record_recall(ns.pk, day)
    with CaptureQueriesContext(connection) as queries:
        buffer.flush()
    assert len(queries) == 1
    counts = dict(RecallDay.objects.filter(day=day).values_list("namespace_id", "count"))
    assert counts == {ns.pk: (10 if i < 20 else 0) + i % 3 + 1 for i, ns in enumerate(namespaces)}
    buffer.flush()  # nothing written twice
    assert RecallDay.objects.get(namespace=namespaces[0], day=day).count == 11


def test_a_deleted_namespace_s_recalls_are_dropped_and_the_others_kept(db, monkeypatch):
    from datetime import date

    from apps.memories import recall_stats
    from apps.memories.models import RecallDay

    kept, gone, *more = _namespaces(5)
    day = date(2026, 1, 3)
    buffer = RecallStatsBuffer(interval=3600)
    for ns in (kept, gone, *more):
        buffer.record_recall(ns.pk, day)
    gone.delete()
    monkeypatch.setattr(recall_stats, "DAY_ROWS", 2)  # three statements in one transaction
    buffer.flush()
    assert dict(RecallDay.objects.values_list("namespace_id", "count")) == {
        ns.pk: 1 for ns in (kept, *more)}


def test_a_namespace_deleted_before_the_commit_sends_the_rows_one_by_one(db, monkeypatch):
    """PostgreSQL checks the foreign key at the commit: a namespace deleted by another
    process between the upsert's join and the commit fails the whole statement; each row
    is then written alone, so the others are not lost."""
    from datetime import date

    from django.db import IntegrityError

    from apps.memories import recall_stats
    from apps.memories.models import RecallDay

    first, second = _namespaces(2)
    day = date(2026, 1, 4)
    buffer = RecallStatsBuffer(interval=3600)
    buffer.record_recall(first.pk, day)
    buffer.record_recall(second.pk, day)
    buffer.record_recall(second.pk, day)

    def raced(items):
        raise IntegrityError("violates foreign key constraint")

    monkeypatch.setattr(recall_stats, "_upsert_days", raced)
    buffer.flush()
    assert dict(RecallDay.objects.values_list("namespace_id", "count")) == {first.pk: 1, second.pk: 2}
    assert buffer.flush() == 0
    assert RecallDay.objects.get(namespace=second).count == 2
