"""Time in recall: occurred_at, occurred/created filters, seed 003's `after`, validity windows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

MODES = ["vector", "lexical", "hybrid"]


@pytest.fixture
def trips(stored):
    """Three trips to Lisbon on different dates, and one without a date."""
    return {
        "2023": stored("Trip to Lisbon for the conference", occurred_at="2023-05-08T13:56:00Z"),
        "2024": stored("Trip to Lisbon with the family", occurred_at="2024-07-01T09:00:00Z"),
        "2025": stored("Trip to Lisbon to visit the new office", occurred_at="2025-01-15T00:00:00Z"),
        "undated": stored("Trip to Lisbon, planned but no date yet"),
    }


def _recall(caller, filters, mode="hybrid", **extra):
    response = caller.post("/api/v1/recall", {"query": "trip to Lisbon", "k": 10, "mode": mode,
                                              "filters": filters, **extra})
    assert response.status_code == 200, response.content
    return {r["content"] for r in response.json()["results"]}


def _contents(trips, *names):
    return {trips[n]["content"] for n in names}


def test_occurred_at_is_stored_returned_and_editable(agent, team_admin, trips):
    memory = trips["2023"]
    assert memory["occurred_at"] == "2023-05-08T13:56:00Z"
    assert trips["undated"]["occurred_at"] is None
    edited = team_admin.patch(f"/api/v1/memories/{memory['id']}",
                              {"occurred_at": "2023-05-09T00:00:00+02:00"}).json()
    assert edited["occurred_at"] == "2023-05-08T22:00:00Z"


@pytest.mark.parametrize("mode", MODES)
def test_occurred_filters_in_every_mode(agent, trips, mode):
    assert _recall(agent, {"occurred_after": "2024-01-01T00:00:00Z",
                           "occurred_before": "2025-01-01T00:00:00Z"}, mode) == _contents(trips, "2024")
    # Undated memories happened when they were stored (now): after 2025-01-01.
    assert _recall(agent, {"occurred_after": "2025-01-01T00:00:00Z"}, mode) == _contents(
        trips, "2025", "undated")


@pytest.mark.parametrize("mode", MODES)
def test_after_is_seed_003s_date_filter(agent, trips, mode):
    assert _recall(agent, {"after": "2024-07-01"}, mode) == _contents(trips, "2024", "2025", "undated")


def test_x_memory_after_header_filters_the_same_way(agent, trips):
    response = agent.post("/api/v1/recall", {"query": "trip to Lisbon", "mode": "hybrid"},
                          HTTP_X_MEMORY_AFTER="2024-07-02")
    assert {r["content"] for r in response.json()["results"]} == _contents(trips, "2025", "undated")


def test_conflicting_after_header_and_filter_is_400(agent, trips):
    response = agent.post("/api/v1/recall", {"query": "Lisbon", "filters": {"after": "2024-01-01"}},
                          HTTP_X_MEMORY_AFTER="2023-01-01")
    assert response.status_code == 400 and response.json()["error"]["field"] == "X-Memory-After"


@pytest.mark.parametrize("filters, field", [
    ({"after": "yesterday"}, "filters.after"),
    ({"after": "2024-13-01"}, "filters.after"),
    ({"occurred_after": "2025-01-01T00:00:00Z", "occurred_before": "2024-01-01T00:00:00Z"},
     "filters.occurred_before"),
    ({"after": "2024-01-01", "occurred_after": "2023-01-01T00:00:00Z"}, "filters.after"),
    ({"valid_at": "2024-01-01T00:00:00Z", "include_invalid": True}, "filters.valid_at"),
])
def test_bad_time_filters_are_400_naming_the_field(agent, filters, field):
    response = agent.post("/api/v1/recall", {"query": "Lisbon", "filters": filters})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


@pytest.fixture
def offices(stored):
    now = timezone.now()
    iso = lambda d: d.isoformat()  # noqa: E731
    return {
        "past": stored("The office address is 1 Old Street",
                       valid_from=iso(now - dt.timedelta(days=400)),
                       valid_until=iso(now - dt.timedelta(days=30))),
        "current": stored("The office address is 2 New Street",
                          valid_from=iso(now - dt.timedelta(days=30))),
        "future": stored("The office address will be 3 Future Street",
                         valid_from=iso(now + dt.timedelta(days=60))),
    }


@pytest.mark.parametrize("mode", MODES)
def test_recall_serves_what_is_valid_now_by_default(agent, offices, mode):
    response = agent.post("/api/v1/recall", {"query": "office address", "mode": mode})
    assert [r["content"] for r in response.json()["results"]] == [offices["current"]["content"]]


def test_valid_at_travels_in_time_and_include_invalid_sees_all(agent, offices):
    past = (timezone.now() - dt.timedelta(days=100)).isoformat()
    query = {"query": "office address", "mode": "hybrid"}
    body = agent.post("/api/v1/recall", {**query, "filters": {"valid_at": past}}).json()
    assert [r["content"] for r in body["results"]] == [offices["past"]["content"]]
    body = agent.post("/api/v1/recall", {**query, "filters": {"include_invalid": True}}).json()
    assert {r["content"] for r in body["results"]} == {o["content"] for o in offices.values()}


def test_created_filters_use_the_storage_time_not_occurred_at(agent, trips):
    """created_* is when MemoryWeb stored it (all just now), whatever occurred_at says."""
    hour_ago = (timezone.now() - dt.timedelta(hours=1)).isoformat()
    assert _recall(agent, {"created_after": hour_ago}) == _contents(trips, "2023", "2024", "2025", "undated")
    assert _recall(agent, {"created_before": hour_ago}) == set()
