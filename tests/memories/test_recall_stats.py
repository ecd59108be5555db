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
