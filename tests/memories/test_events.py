"""Conversation events (issue 20, item 1): ``POST /api/v1/events`` stores a batch from an
agent's hooks, all or nothing and idempotent by the client's id; ``GET /api/v1/events``
lists a session in conversation order. An event is a memory (kind ``event``, with
``event_type`` and ``role``): recallable, listable, exported like every memory.
"""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.compat.formats import read_jsonl
from apps.core.roles import Role
from apps.memories import services
from apps.memories.imports import import_records
from apps.memories.models import ExternalId, IndexOutbox, Memory
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller
from tests.helpers.vector_index import stored_metadata

EVENTS = "/api/v1/events"


def event(event_id: str, event_type: str = "user_message", text: str | None = "hello",
          session: str = "s1", at: str = "2026-03-03T10:00:00Z", **extra) -> dict:
    body = {"id": event_id, "event_type": event_type, "session_id": session, "occurred_at": at,
            **extra}
    if text is not None:
        body["text"] = text
    return body


def conversation(prefix: str = "e", session: str = "s1") -> list[dict]:
    """A short session: start, a question, a tool call and result, the answer, the end."""
    return [
        event(f"{prefix}1", "session_start", None, session, metadata={"source": "startup"}),
        event(f"{prefix}2", "user_message", "Which port does the staging proxy listen on?",
              session),
        event(f"{prefix}3", "tool_call", "grep -n listen deploy/proxy.conf", session),
        event(f"{prefix}4", "tool_result", "12:    listen 8443 ssl;", session),
        event(f"{prefix}5", "assistant_message", "The staging proxy listens on port 8443.",
              session),
        event(f"{prefix}6", "session_end", None, session, metadata={"reason": "logout"}),
    ]


def test_a_batch_is_stored_in_order_as_events_of_the_keys_agent(agent, alpha):
    response = agent.post(EVENTS, {"events": conversation()})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["stored"], body["existing"]) == (6, 0)
    assert [r["id"] for r in body["results"]] == ["e1", "e2", "e3", "e4", "e5", "e6"]
    assert all(r["created"] for r in body["results"])
    memories = {str(m.pk): m for m in Memory.objects.filter(namespace=alpha)}
    rows = [memories[r["memory_id"]] for r in body["results"]]
    assert [m.event_type for m in rows] == ["session_start", "user_message", "tool_call",
                                            "tool_result", "assistant_message", "session_end"]
    assert [m.role for m in rows] == ["system", "user", "assistant", "tool", "assistant",
                                      "system"]  # from event_type when not given
    assert {m.kind for m in rows} == {"event"} and {m.agent_id for m in rows} == {"agent-1"}
    assert [m.created_at for m in rows] == sorted(m.created_at for m in rows)  # batch order
    assert rows[0].content == "Session started (source: startup)."
    assert rows[5].content == "Session ended (reason: logout)."
    assert rows[1].content == "Which port does the staging proxy listen on?"
    assert dict(ExternalId.objects.filter(system="event").values_list(
        "external_id", "memory_id")) == {r["id"]: rows[i].pk for i, r in enumerate(body["results"])}
    entry = AuditEntry.objects.get(operation="event.create")
    assert sorted(entry.record_ids) == sorted(r["memory_id"] for r in body["results"])
    assert entry.summary == {"count": 6, "requested": 6, "existing": 0}
    assert get_vector_store().count(alpha) == 6


def test_role_and_time_are_kept_and_normalised(agent):
    agent.post(EVENTS, {"events": [event("r1", "tool_result", "ok", role="mcp-tool",
                                         at="2026-03-03T12:00:00+02:00", importance=0.9,
                                         tags=["deploy"])]})
    memory = Memory.objects.get()
    assert memory.role == "mcp-tool" and memory.tags == ["deploy"] and memory.importance == 0.9
    assert memory.occurred_at.isoformat() == "2026-03-03T10:00:00+00:00"


def test_a_retry_stores_nothing_new(agent, alpha):
    first = agent.post(EVENTS, {"events": conversation()})
    counts = (Memory.objects.count(), AuditEntry.objects.count(), IndexOutbox.objects.count(),
              get_vector_store().count(alpha))
    again = agent.post(EVENTS, {"events": conversation()})
    assert again.status_code == 200, again.content
    assert (again.json()["stored"], again.json()["existing"]) == (0, 6)
    assert [r["memory_id"] for r in again.json()["results"]] == \
        [r["memory_id"] for r in first.json()["results"]]
    assert not any(r["created"] for r in again.json()["results"])
    assert (Memory.objects.count(), AuditEntry.objects.count(), IndexOutbox.objects.count(),
            get_vector_store().count(alpha)) == counts


def test_a_partial_repeat_stores_only_the_new_ids(agent):
    first = agent.post(EVENTS, {"events": conversation()[:3]}).json()
    response = agent.post(EVENTS, {"events": conversation()})
    assert response.status_code == 201
    body = response.json()
    assert [r["created"] for r in body["results"]] == [False] * 3 + [True] * 3
    assert (body["stored"], body["existing"]) == (3, 3)
    assert [r["memory_id"] for r in body["results"][:3]] == \
        [r["memory_id"] for r in first["results"]]
    assert Memory.objects.count() == 6
    assert AuditEntry.objects.filter(operation="event.create").count() == 2


def test_an_id_repeated_in_one_batch_is_one_event(agent):
    response = agent.post(EVENTS, {"events": [event("d1", text="first"), event("d2"),
                                              event("d1", text="first")]})
    results = response.json()["results"]
    assert [r["created"] for r in results] == [True, True, False]
    assert results[0]["memory_id"] == results[2]["memory_id"]
    assert response.json()["stored"] == 2
    assert Memory.objects.get(pk=results[0]["memory_id"]).content == "first"


def test_an_id_repeated_in_one_batch_with_another_event_is_refused(agent):
    response = agent.post(EVENTS, {"events": [event("d1", text="first"), event("d2"),
                                              event("d1", text="second")]})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "events[2].id"
    assert Memory.objects.count() == 0


def test_a_stored_id_sent_with_another_event_is_a_conflict_and_stores_nothing(agent, alpha):
    """A repeated id must be a retry of the same event: two agents (or sessions) numbering
    their events alike would otherwise lose each other's silently."""
    agent.post(EVENTS, {"events": [event("n1", text="the first one")]})
    for changed in ({"text": "another text"}, {"session": "s2"},
                    {"event_type": "assistant_message"}):
        body = {"events": [event("n2", text="new"), event("n1", **{"text": "the first one",
                                                                   **changed})]}
        response = agent.post(EVENTS, body)
        assert response.status_code == 409, (changed, response.content)
        assert response.json()["error"]["field"] == "events[1].id"
    other = make_caller(Role.AGENT, alpha, "agent-2")
    response = other.post(EVENTS, {"events": [event("n1", text="the first one")]})
    assert response.status_code == 409
    assert Memory.objects.count() == 1  # nothing of the refused batches, not even n2
    assert agent.post(EVENTS, {"events": [event("n1", text="the first one")]}).status_code == 200


def test_identical_turns_are_two_events_and_no_memorys_duplicate(agent, stored):
    memory = stored("ok")
    response = agent.post(EVENTS, {"events": [event("o1", text="ok"), event("o2", text="ok")]})
    ids = {r["memory_id"] for r in response.json()["results"]}
    assert len(ids) == 2 and memory["id"] not in ids
    # An ordinary memory with an event's words is stored, not deduplicated into the event.
    agent.post(EVENTS, {"events": [event("o3", text="The VPN config lives in /etc/vpn.")]})
    fresh = agent.post("/api/v1/memories", {"content": "The VPN config lives in /etc/vpn."})
    assert fresh.status_code == 201 and fresh.json()["duplicate"] is False
    assert fresh.json()["kind"] == "fact" and fresh.json()["event_type"] == ""


@pytest.mark.parametrize(("bad", "field"), [
    ({"event_type": "user_said"}, "events[3].event_type"),
    ({"id": None}, "events[3].id"),
    ({"id": "x" * 129}, "events[3].id"),
    ({"occurred_at": "yesterday"}, "events[3].occurred_at"),
    ({"session_id": ""}, "events[3].session_id"),
    ({"text": "   "}, "events[3].text"),
    ({"agent_id": "someone-else"}, "events[3].agent_id"),
    ({"colour": "red"}, "events[3].colour"),
    ({"metadata": ["not", "an", "object"]}, "events[3].metadata"),
    ({"importance": 2}, "events[3].importance"),
])
def test_one_bad_event_refuses_the_batch_and_names_it(agent, bad, field):
    events = conversation()
    events[3] = {**events[3], **bad}
    response = agent.post(EVENTS, {"events": events})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert not Memory.objects.exists() and not ExternalId.objects.exists()
    assert not AuditEntry.objects.filter(operation="event.create").exists()


def test_turns_need_text_and_life_events_may_go_without(agent):
    for event_type in ("user_message", "assistant_message", "tool_call", "tool_result"):
        response = agent.post(EVENTS, {"events": [event("t", event_type, None)]})
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "events[0].text"
    response = agent.post(EVENTS, {"events": [event("a", "assistant_stop", None)]})
    assert response.status_code == 201
    assert Memory.objects.get().content == "Assistant stopped."


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"events": []}, "events", "invalid"),
    ({}, "events", "invalid"),
    ({"events": [event("a")], "colour": "red"}, "colour", "invalid"),
    ({"events": ["not an object"]}, "events[0]", "invalid"),
])
def test_bad_envelopes_are_400(agent, body, field, code):
    response = agent.post(EVENTS, body)
    assert response.status_code == 400, response.content
    assert (response.json()["error"]["field"], response.json()["error"]["code"]) == (field, code)


def test_batch_size_and_text_size_are_limited(agent, settings):
    settings.MEMORYWEB_LIMITS = {**settings.MEMORYWEB_LIMITS, "max_batch": 3,
                                 "max_content_bytes": 100}
    response = agent.post(EVENTS, {"events": [event(f"b{i}") for i in range(4)]})
    assert response.status_code == 400
    assert response.json()["error"] | {"message": ""} == {
        "code": "too_many", "field": "events", "message": ""}
    response = agent.post(EVENTS, {"events": [event("b1", text="é" * 51)]})  # 102 bytes
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "events[0].text"
    assert response.json()["error"]["code"] == "too_long"
    assert not Memory.objects.exists()


def test_who_may_post_events(reader, anonymous, outsider, system_admin, alpha):
    assert reader.post(EVENTS, {"events": [event("a")]}).status_code == 403
    assert anonymous.post(EVENTS, {"events": [event("a")]}).status_code == 401
    assert outsider.post(EVENTS, {"events": [event("a")], "namespace": "alpha"}).status_code == 404
    assert system_admin.post(EVENTS, {"events": [event("a")]}).status_code == 400  # no namespace
    assert system_admin.post(f"{EVENTS}?namespace=alpha",
                             {"events": [event("a")]}).status_code == 201
    assert not Memory.objects.exclude(namespace=alpha).exists()


def test_the_same_id_in_two_namespaces_is_two_events(agent, outsider):
    assert agent.post(EVENTS, {"events": [event("same")]}).status_code == 201
    assert outsider.post(EVENTS, {"events": [event("same")]}).status_code == 201
    assert Memory.objects.count() == 2


# --- listing a session -----------------------------------------------------------------

def test_a_session_lists_in_conversation_order(agent, stored):
    agent.post(EVENTS, {"events": [event("late", text="third", at="2026-03-03T10:05:00Z"),
                                   event("x1", text="first", at="2026-03-03T10:00:00Z"),
                                   event("x2", text="second", at="2026-03-03T10:00:00Z")]})
    agent.post(EVENTS, {"events": [event("x3", text="second and a half",
                                         at="2026-03-03T10:00:00Z")]})
    agent.post(EVENTS, {"events": [event("other", text="another session", session="s2")]})
    stored("an ordinary memory of the session", session_id="s1")
    response = agent.get(EVENTS, {"session_id": "s1"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["content"] for r in body["results"]] == ["first", "second", "second and a half",
                                                       "third"]
    assert [r["event_id"] for r in body["results"]] == ["x1", "x2", "x3", "late"]
    assert body["count"] == 4
    row = body["results"][0]
    assert (row["event_type"], row["role"], row["kind"], row["session_id"]) == (
        "user_message", "user", "event", "s1")
    page = agent.get(EVENTS, {"session_id": "s1", "limit": 2, "offset": 2}).json()
    assert [r["event_id"] for r in page["results"]] == ["x3", "late"] and page["count"] == 4


def test_listing_needs_a_session_and_knows_its_parameters(agent):
    response = agent.get(EVENTS)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "session_id"
    response = agent.get(EVENTS, {"session_id": "s1", "kind": "event"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "kind"


def test_readers_list_and_other_tenants_see_nothing(agent, reader, outsider, system_admin):
    agent.post(EVENTS, {"events": conversation()})
    assert reader.get(EVENTS, {"session_id": "s1"}).json()["count"] == 6
    assert outsider.get(EVENTS, {"session_id": "s1"}).json()["count"] == 0
    assert outsider.get(EVENTS, {"session_id": "s1", "namespace": "alpha"}).status_code == 404
    assert system_admin.get(EVENTS, {"session_id": "s1", "namespace": "alpha"}).json()["count"] == 6


def test_memories_list_filters_by_event_type_and_shows_the_fields(agent, stored):
    agent.post(EVENTS, {"events": conversation()})
    stored("not an event")
    rows = agent.get("/api/v1/memories", {"event_type": "tool_call"}).json()["results"]
    assert [r["content"] for r in rows] == ["grep -n listen deploy/proxy.conf"]
    assert agent.get("/api/v1/memories", {"kind": "event"}).json()["count"] == 6
    plain = agent.get("/api/v1/memories", {"kind": "fact"}).json()["results"]
    assert [(r["event_type"], r["role"]) for r in plain] == [("", "")]


def test_events_are_recalled(agent, reader):
    agent.post(EVENTS, {"events": conversation()})
    response = reader.post("/api/v1/recall", {"query": "staging proxy port", "k": 3})
    assert response.status_code == 200
    top = response.json()["results"]
    assert {r["content"] for r in top} & {"The staging proxy listens on port 8443.",
                                         "Which port does the staging proxy listen on?"}
    assert {r["kind"] for r in top} == {"event"} and all(r["event_type"] for r in top)
    assert reader.post("/api/v1/recall", {"query": "staging proxy port",
                                          "filters": {"kind": "event"}}).json()["results"]


# --- events come only through /api/v1/events --------------------------------------------

def test_ordinary_stores_refuse_kind_event(agent):
    response = agent.post("/api/v1/memories", {"content": "sneaky", "kind": "event"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "kind"
    response = agent.post("/api/v1/memories/batch", {"memories": [{"content": "a"},
                                                                 {"content": "b", "kind": "event"}]})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "memories[1].kind"
    response = agent.post("/api/v1/ingest_and_recall", {"content": "sneaky", "kind": "event"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "kind"
    response = agent.post("/v1/store", {"content": "sneaky", "memory_type": "event"})
    assert response.status_code == 400 and "/api/v1/events" in response.json()["error"]
    response = agent.post("/cmm/ingest", {"gist": "sneaky", "kind": "event"})
    assert response.status_code == 400
    assert "/api/v1/events" in response.json()["error"]["message"]
    assert not Memory.objects.exists()


# --- secrets ----------------------------------------------------------------------------

OPENAI = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7s"
AWS = "AKIA" + "Q3EGRTZ7WXK4HB2N"
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "-----END PRIVATE KEY-----")


def test_secrets_are_redacted_before_anything_is_stored(agent, alpha):
    text = f"export OPENAI_API_KEY={OPENAI} and AWS {AWS}\n{PEM}\nthen deploy the canary"
    response = agent.post(EVENTS, {"events": [event(
        "leak", "tool_result", text, metadata={"env": f"key {AWS}", "api_key": "hunter2-ish",
                                               "nested": {"pem": PEM}},
        tags=[OPENAI[:40]])]})
    assert response.status_code == 201, response.content
    memory = Memory.objects.get()
    stored_text = json.dumps([memory.content, memory.metadata, memory.tags])
    for secret in (OPENAI, OPENAI[:40], AWS, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
                   "hunter2-ish"):
        assert secret not in stored_text
    assert "deploy the canary" in memory.content and "[REDACTED:" in memory.content
    principal = Principal.for_key(agent.key)
    assert services.keyword_matches(principal, "canary") == [memory.pk]  # indexed, redacted
    for token in (OPENAI, AWS, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"):
        assert services.keyword_matches(principal, f'"{token}"') == []
    indexed = stored_metadata(alpha, [memory.pk])  # no document: the index holds no content
    assert list(indexed) == [str(memory.pk)]
    held = json.dumps(indexed)
    assert OPENAI not in held and AWS not in held and "MIIEvQIBADAN" not in held
    listed = agent.get(EVENTS, {"session_id": "s1"}).content.decode()
    assert OPENAI not in listed and AWS not in listed


# --- export and import ------------------------------------------------------------------

def test_the_export_holds_the_events_fields_and_ids(agent, team_admin):
    agent.post(EVENTS, {"events": conversation()})
    response = team_admin.get("/api/v1/export")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    rows = {row["external_ids"]["event"]: row for row in lines if row["type"] == "memory"}
    assert set(rows) == {"e1", "e2", "e3", "e4", "e5", "e6"}
    assert (rows["e4"]["event_type"], rows["e4"]["role"], rows["e4"]["kind"]) == (
        "tool_result", "tool", "event")


def test_an_exported_event_imports_as_an_event_with_its_id(agent, team_admin, beta, tmp_path):
    agent.post(EVENTS, {"events": conversation()[:2]})
    export = tmp_path / "alpha.jsonl"
    export.write_bytes(b"".join(team_admin.get("/api/v1/export").streaming_content))
    root = Principal(label="system:test", agent_id="", role=Role.SYSTEM)
    report = import_records(root, "beta", read_jsonl(export))
    assert (report.created, report.errors) == (2, [])
    imported = Memory.objects.get(namespace=beta, event_type="user_message")
    assert imported.kind == "event" and imported.role == "user"
    repost = make_caller(Role.AGENT, beta, "agent-1").post(EVENTS, {"events": conversation()[:2]})
    assert repost.status_code == 200  # the ids came along: a replay stores nothing


# --- the service ------------------------------------------------------------------------

def test_the_service_answers_stored_events(agent):
    principal = Principal.for_key(agent.key)
    results = services.store_events(principal, conversation()[:2])
    assert [(r.event_id, r.created) for r in results] == [("e1", True), ("e2", True)]
    again = services.store_events(principal, conversation()[:2])
    assert [r.memory.pk for r in again] == [r.memory.pk for r in results]
    listed = services.list_session_events(principal, "s1")
    assert [m.pk for m in listed] == [r.memory.pk for r in results]


def test_an_archived_namespace_refuses_events(agent, alpha):
    alpha.archived_at = timezone.now()
    alpha.save()
    response = agent.post(EVENTS, {"events": [event("late")]})
    assert response.status_code == 409 and response.json()["error"]["field"] == "namespace"
    assert not Memory.objects.exists()


def test_a_new_memory_is_linked_past_an_event_to_its_real_near_duplicate(agent, alpha):
    """The vector index is asked for one neighbour: were events (and summaries) among the
    candidates, the turn a fact came from would hide the fact itself."""
    alpha.near_duplicate_policy, alpha.near_duplicate_threshold = "link", 0.8
    alpha.save()
    fact = agent.post("/api/v1/memories", {"content": "The staging proxy listens on port "
                                                      "8443 for TLS traffic."}).json()
    agent.post(EVENTS, {"events": [event("p1", text="The staging proxy listens on port 8443 "
                                                     "for TLS traffic now.")]})
    new = agent.post("/api/v1/memories", {"content": "The staging proxy listens on port 8443 "
                                                     "for TLS traffic now!"}).json()
    assert new["near_duplicate_of"] == fact["id"]
