"""Conversation events (POST /api/v1/events) in the timeline: grips point back to the exact
events, expand reads the conversation around one, and erasing a session rebuilds every
node that summarised it, with a certificate that verifies."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from apps.memories.models import Memory
from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode

pytestmark = pytest.mark.django_db(transaction=True)
CONVERSATION = [
    ("e1", "session_start", None, "2024-04-02T08:00:00Z"),
    ("e2", "user_message", "Can you find why the nightly export times out?", "2024-04-02T08:00:05Z"),
    ("e3", "tool_result", "export.log: query on audit_entries took 312 seconds.", "2024-04-02T08:01:00Z"),
    ("e4", "assistant_message", "The audit query lacks an index on created_at; adding one.",
     "2024-04-02T08:02:00Z"),
    ("e5", "user_message", "Ship the index migration to staging first.", "2024-04-02T08:03:00Z"),
    ("e6", "session_end", None, "2024-04-02T08:05:00Z"),
]


def _events(caller, session: str, rows) -> dict[str, str]:
    body = {"events": [{"id": f"{session}-{cid}", "event_type": kind, "session_id": session,
                        "occurred_at": at, **({"text": text} if text else {})}
                       for cid, kind, text, at in rows]}
    response = caller.post("/api/v1/events", body)
    assert response.status_code in (200, 201), response.content
    stored = response.json()["results"]
    return {cid: row["memory_id"] for (cid, *_), row in zip(rows, stored, strict=True)}


def test_grips_lead_to_the_exact_events_and_expand_reads_the_conversation(alpha, agent, reader):
    ids = _events(agent, "cc-1", CONVERSATION)
    assert build(alpha).ok
    segment = RollupNode.objects.get(level="segment")
    assert segment.session_id == "cc-1" and segment.source_count == len(CONVERSATION)
    grip = Grip.objects.get(node=segment, memory_id=ids["e4"])
    assert grip.excerpt in Memory.objects.get(pk=ids["e4"]).content
    body = reader.get(f"/api/v1/grips/{grip.pk}/expand?before=2&after=1").json()
    assert [m["id"] for m in body["before"]] == [ids["e2"], ids["e3"]]
    assert body["source"]["id"] == ids["e4"] and [m["id"] for m in body["after"]] == [ids["e5"]]
    year = reader.get(f"/api/v1/timeline/{RollupNode.objects.get(level='year').pk}").json()
    assert ids["e4"] in {g["memory_id"] for g in year["grips"]}


def test_erasing_a_session_rebuilds_the_nodes_that_summarised_it(
        alpha, agent, team_admin, system_admin, tmp_path):
    _events(agent, "cc-1", CONVERSATION)
    _events(agent, "cc-2", [("e1", "user_message", "Rename the billing service to ledger.",
                             "2024-04-02T15:00:00Z")])
    assert build(alpha).ok
    assert "312 seconds" in RollupNode.objects.get(level="day").summary

    created = team_admin.post("/api/v1/erasure-requests", {"session_id": "cc-1"}).json()
    team_admin.post(f"/api/v1/erasure-requests/{created['id']}/approve")
    executed = system_admin.post(f"/api/v1/erasure-requests/{created['id']}/execute")
    assert executed.status_code == 200, executed.content
    certificate = executed.json()["certificate"]

    levels = sorted(row["level"] for row in certificate["touched"]["rollups"])
    assert levels == ["day", "month", "segment", "week", "year"]
    assert not RollupNode.objects.filter(session_id="cc-1").exists()  # nothing left: removed
    day = RollupNode.objects.get(level="day")
    assert day.summary == "Rename the billing service to ledger." and day.source_count == 1
    assert "312 seconds" not in json.dumps(list(RollupNode.objects.values_list("summary", "parts")))
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))
