"""An erased conversation event leaves nothing behind (issue 20): a certified erasure of a
session takes its events with their client ids (the external ids go by cascade), the
certificate verifies, and the same event ids posted again are stored as new."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from apps.memories.models import ExternalId, Memory

#: Commits for real: the audit anchor advances after each, as certificates check it.
pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = [
    {"id": "erase-1", "event_type": "session_start", "session_id": "private-session",
     "occurred_at": "2026-03-03T10:00:00Z"},
    {"id": "erase-2", "event_type": "user_message", "session_id": "private-session",
     "occurred_at": "2026-03-03T10:00:01Z", "text": "My quindlewort allergy is severe."},
]


def test_an_erased_session_leaves_no_event_id_and_may_be_posted_again(agent, system_admin,
                                                                      tmp_path):
    stored = agent.post("/api/v1/events", {"events": EVENTS}).json()["results"]
    other = agent.post("/api/v1/events", {"events": [{**EVENTS[1], "id": "keep",
                                                      "session_id": "other",
                                                      "text": "Another session's turn."}]})
    assert other.status_code == 201
    response = system_admin.client.delete("/api/v1/forget/certified", {
        "namespace": "alpha", "session_id": "private-session"}, format="json")
    assert response.status_code == 200, response.content
    certificate = response.json()
    assert {item["id"] for item in certificate["erased"]} == {r["memory_id"] for r in stored}
    assert all(check["ok"] for check in certificate["verification"].values())
    assert certificate["verification"]["external_ids"]["ok"]  # checked, and none are left
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))
    assert list(ExternalId.objects.values_list("external_id", flat=True)) == ["keep"]
    assert list(Memory.objects.values_list("session_id", flat=True)) == ["other"]

    again = agent.post("/api/v1/events", {"events": EVENTS})
    assert again.status_code == 201
    assert all(r["created"] for r in again.json()["results"])
    assert {r["memory_id"] for r in again.json()["results"]}.isdisjoint(
        r["memory_id"] for r in stored)
