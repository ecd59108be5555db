"""A write survives a vector-index outage: acknowledged, durable, indexed later.

These tests run a real Chroma server (``chroma run``, the ``chroma_server`` fixture of
tests/plugins/processes.py) and stop it mid-test, so the failure is a real refused
connection, not a mock.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.memories import vectorstore
from apps.memories.models import IndexOutbox, Memory


def _recall_ids(caller, query):
    response = caller.post("/api/v1/recall", {"query": query, "k": 3})
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def test_write_during_outage_is_acknowledged_and_drained_later(agent, chroma_server):
    agent.post("/api/v1/memories", {"content": "Written while the index was up"})
    chroma_server.stop()

    response = agent.post("/api/v1/memories", {"content": "The backup window is 02:00 to 03:00 UTC"})
    assert response.status_code == 201
    memory_id = response.json()["id"]
    assert Memory.objects.filter(pk=memory_id).exists()  # durable in SQL
    row = IndexOutbox.objects.get(memory_id=memory_id)
    assert row.attempts == 1 and "Error" in row.last_error
    assert agent.get(f"/api/v1/memories/{memory_id}").status_code == 200
    recall = agent.post("/api/v1/recall", {"query": "backup window"})
    assert recall.status_code == 503
    assert recall.json()["error"]["code"] == "unavailable"

    chroma_server.start()
    call_command("drain_outbox")
    assert IndexOutbox.objects.count() == 0
    assert _recall_ids(agent, "When is the backup window?")[0] == memory_id


def test_next_successful_write_drains_the_backlog(agent, chroma_server):
    chroma_server.stop()
    during = agent.post("/api/v1/memories", {"content": "Coffee machine is on the third floor"}).json()
    assert IndexOutbox.objects.count() == 1
    chroma_server.start()
    agent.post("/api/v1/memories", {"content": "Parking is free after 6pm"})
    assert IndexOutbox.objects.count() == 0
    assert _recall_ids(agent, "where is the coffee machine")[0] == during["id"]


def test_batch_during_outage_is_all_stored(agent, chroma_server):
    chroma_server.stop()
    body = {"memories": [{"content": f"outage memory {i}"} for i in range(20)]}
    assert agent.post("/api/v1/memories/batch", body).status_code == 201
    assert Memory.objects.count() == 20
    assert IndexOutbox.objects.count() == 20
    chroma_server.start()
    call_command("drain_outbox")
    assert IndexOutbox.objects.count() == 0
    assert len(_recall_ids(agent, "outage memory 7")) == 3


def test_delete_during_outage_is_replayed(agent, team_admin, chroma_server, alpha):
    memory = agent.post("/api/v1/memories", {"content": "Delete me later"}).json()
    chroma_server.stop()
    assert team_admin.delete(f"/api/v1/memories/{memory['id']}").status_code == 204
    assert IndexOutbox.objects.get().op == IndexOutbox.Op.DELETE
    chroma_server.start()
    call_command("drain_outbox")
    assert memory["id"] not in vectorstore.get_vector_store().all_ids(alpha)


def test_update_during_outage_is_replayed_with_new_content(agent, team_admin, chroma_server):
    memory = agent.post("/api/v1/memories", {"content": "The office is in Berlin"}).json()
    agent.post("/api/v1/memories", {"content": "Lunch is served at noon"})
    chroma_server.stop()
    response = team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "Our office moved to Lisbon"})
    assert response.status_code == 200
    chroma_server.start()
    call_command("drain_outbox")
    assert _recall_ids(agent, "Lisbon office")[0] == memory["id"]


def test_drain_outbox_fails_loudly_while_index_is_down(agent, chroma_server):
    chroma_server.stop()
    agent.post("/api/v1/memories", {"content": "pending"})
    with pytest.raises(SystemExit):
        call_command("drain_outbox")
    assert IndexOutbox.objects.get().attempts == 2


def test_readiness_reports_vector_store_down(client, db, chroma_server):
    assert client.get("/readiness").status_code == 200
    chroma_server.stop()
    response = client.get("/readiness")
    assert response.status_code == 503
    assert response.json()["checks"]["vector_store"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


def test_ingest_and_recall_during_outage_keeps_the_write(agent, chroma_server):
    chroma_server.stop()
    response = agent.post("/api/v1/ingest_and_recall", {"content": "Stored while the index is down"})
    assert response.status_code == 201
    body = response.json()
    assert body["results"] == []
    assert body["recall_error"]["code"] == "unavailable"
    assert Memory.objects.filter(pk=body["memory"]["id"]).exists()
    chroma_server.start()
    call_command("drain_outbox")
    assert _recall_ids(agent, "Stored while the index is down")[0] == body["memory"]["id"]
