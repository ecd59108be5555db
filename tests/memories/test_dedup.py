"""Dedup on ingest: identical content is stored once; Idempotency-Key makes retries safe."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.memories.models import IdempotencyRecord, IndexOutbox, Memory
from apps.memories.vectorstore import get_vector_store


def test_identical_content_returns_the_existing_memory(agent, alpha):
    first = agent.post("/api/v1/memories", {"content": "The office closes at 6pm"})
    assert first.status_code == 201 and first.json()["duplicate"] is False
    again = agent.post("/api/v1/memories", {"content": "  The office   closes at 6pm ", "tags": ["x"]})
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["tags"] == []  # the existing memory, unchanged
    assert Memory.objects.count() == 1
    assert not IndexOutbox.objects.exists()
    assert get_vector_store().count(alpha) == 1


def test_same_content_in_another_namespace_is_not_a_duplicate(agent, outsider):
    agent.post("/api/v1/memories", {"content": "shared wording"})
    response = outsider.post("/api/v1/memories", {"content": "shared wording"})
    assert response.status_code == 201 and response.json()["duplicate"] is False
    assert Memory.objects.count() == 2


def test_expired_identical_memory_does_not_count(agent):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    first = agent.post("/api/v1/memories", {"content": "renewed fact"}).json()
    Memory.objects.filter(pk=first["id"]).update(expires_at=past)  # expired since (ingest refuses a past one)
    response = agent.post("/api/v1/memories", {"content": "renewed fact"})
    assert response.status_code == 201 and response.json()["duplicate"] is False


def test_batch_marks_duplicates_against_stored_and_within_itself(agent):
    stored = agent.post("/api/v1/memories", {"content": "already here"}).json()
    body = {"memories": [{"content": "new one"}, {"content": "already here"}, {"content": "new one"},
                         {"content": "another new one"}]}
    response = agent.post("/api/v1/memories/batch", body)
    assert response.status_code == 201
    data = response.json()
    assert (data["count"], data["created"], data["duplicates"]) == (4, 2, 2)
    flags = [r["duplicate"] for r in data["results"]]
    assert flags == [False, True, True, False]
    ids = [r["id"] for r in data["results"]]
    assert ids[1] == stored["id"] and ids[0] == ids[2]
    assert Memory.objects.count() == 3


def test_idempotency_key_replays_the_first_result(agent):
    headers = {"HTTP_IDEMPOTENCY_KEY": "req-1"}
    first = agent.post("/api/v1/memories", {"content": "booked the venue", "tags": ["event"]}, **headers)
    assert first.status_code == 201
    retry = agent.post("/api/v1/memories", {"content": "booked the venue", "tags": ["event"]}, **headers)
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    assert Memory.objects.count() == 1 and IdempotencyRecord.objects.count() == 1


def test_idempotency_key_with_a_different_body_is_409(agent):
    headers = {"HTTP_IDEMPOTENCY_KEY": "req-2"}
    agent.post("/api/v1/memories", {"content": "first body"}, **headers)
    response = agent.post("/api/v1/memories", {"content": "second body"}, **headers)
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "conflict", "field": "Idempotency-Key",
                                        "message": "this Idempotency-Key was used for a different request."}
    assert list(Memory.objects.values_list("content", flat=True)) == ["first body"]


def test_idempotency_key_is_scoped_to_the_caller(agent, team_admin):
    headers = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    agent.post("/api/v1/memories", {"content": "from the agent"}, **headers)
    response = team_admin.post("/api/v1/memories", {"content": "from the admin"}, **headers)
    assert response.status_code == 201
    assert Memory.objects.count() == 2


def test_batch_retry_with_idempotency_key_stores_nothing_new(agent):
    headers = {"HTTP_IDEMPOTENCY_KEY": "batch-1"}
    body = {"memories": [{"content": f"batch item {i}"} for i in range(5)]}
    first = agent.post("/api/v1/memories/batch", body, **headers).json()
    retry = agent.post("/api/v1/memories/batch", body, **headers).json()
    assert [r["id"] for r in retry["results"]] == [r["id"] for r in first["results"]]
    assert Memory.objects.count() == 5


def test_overlong_idempotency_key_is_400(agent):
    response = agent.post("/api/v1/memories", {"content": "x"}, HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "Idempotency-Key"
    assert not Memory.objects.exists()
