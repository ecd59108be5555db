"""The memory list's time filters and ordering (issue 16, item 12).

``occurred_after`` / ``occurred_before`` were silently ignored on ``GET
/api/v1/memories``; they filter on the event time now (``occurred_at``, else
``created_at``), as recall's filters do. ``?ordering=occurred_at`` lists a session's turns
in conversation order (ties in storing order), ``-occurred_at`` newest first.
"""

from __future__ import annotations

import pytest

TURNS = [  # (content, occurred_at) stored out of order; two turns share a timestamp
    ("turn 3", "2024-05-01T10:02:00Z"),
    ("turn 1", "2024-05-01T10:00:00Z"),
    ("turn 2a", "2024-05-01T10:01:00Z"),
    ("turn 2b", "2024-05-01T10:01:00Z"),
]


@pytest.fixture
def session(agent):
    for content, occurred in TURNS:
        response = agent.post("/api/v1/memories", {"content": content, "session_id": "s-1",
                                                   "occurred_at": occurred})
        assert response.status_code == 201, response.content
    agent.post("/api/v1/memories", {"content": "no event time", "session_id": "s-2"})


def _contents(response):
    assert response.status_code == 200, response.content
    return [row["content"] for row in response.json()["results"]]


def test_occurred_after_and_before_filter_on_the_event_time(agent, session):
    found = _contents(agent.get("/api/v1/memories?session_id=s-1&"
                                "occurred_after=2024-05-01T10:01:00Z&"
                                "occurred_before=2024-05-01T10:02:00Z"))
    assert sorted(found) == ["turn 2a", "turn 2b"]


def test_occurred_filters_fall_back_to_created_at(agent, session):
    found = _contents(agent.get("/api/v1/memories?occurred_after=2025-01-01T00:00:00Z"))
    assert found == ["no event time"]


def test_ordering_by_occurred_at_is_conversation_order(agent, session):
    found = _contents(agent.get("/api/v1/memories?session_id=s-1&ordering=occurred_at"))
    assert found == ["turn 1", "turn 2a", "turn 2b", "turn 3"]
    newest = _contents(agent.get("/api/v1/memories?session_id=s-1&ordering=-occurred_at"))
    assert newest == ["turn 3", "turn 2b", "turn 2a", "turn 1"]


def test_default_order_is_still_newest_stored_first(agent, session):
    found = _contents(agent.get("/api/v1/memories?session_id=s-1"))
    assert found == ["turn 2b", "turn 2a", "turn 1", "turn 3"]
    assert found == _contents(agent.get("/api/v1/memories?session_id=s-1&ordering=-created_at"))


@pytest.mark.parametrize(("query", "field"), [
    ("ordering=content", "ordering"), ("occurred_after=soon", "occurred_after"),
    ("occurred_after=2024-05-02T00:00:00Z&occurred_before=2024-05-01T00:00:00Z",
     "occurred_before")])
def test_bad_values_are_400_naming_them(agent, session, query, field):
    response = agent.get(f"/api/v1/memories?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
