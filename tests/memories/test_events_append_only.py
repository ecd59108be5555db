"""Conversation events are append-only for agents (issue 20): an agent-role key (or a
reader) cannot edit, revert, retag, re-kind or delete an event through any door — REST,
MCP, the drop-in routes, the dashboard's batched edits — and is told why (403
``append_only``), with nothing changed. Team and system admins may edit and erase
events; an event stays kind ``event`` and nothing else becomes one.
"""

from __future__ import annotations

import uuid

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from apps.audit.models import AuditEntry
from apps.core.errors import PermissionDenied
from apps.core.roles import Role
from apps.mcp.backends import ServiceBackend
from apps.memories import services
from apps.memories.external_ids import numbers as cmm_numbers
from apps.memories.models import ExternalId, Memory, MemoryVersion
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller

TURN = {"id": "t1", "event_type": "user_message", "session_id": "s1",
        "occurred_at": "2026-03-03T10:00:00Z", "text": "Deploy the canary to eu-west first."}


@pytest.fixture
def turn(agent) -> Memory:
    response = agent.post("/api/v1/events", {"events": [TURN]})
    assert response.status_code == 201, response.content
    return Memory.objects.select_related("namespace").get(pk=response.json()["results"][0]["memory_id"])


@pytest.fixture
def unchanged(turn):
    """Asserts, after the test, that the event and the audit log are as they were."""
    entries = AuditEntry.objects.count()
    yield
    memory = Memory.objects.get(pk=turn.pk)
    assert (memory.content, memory.tags, memory.kind, memory.version) == (
        turn.content, turn.tags, turn.kind, 1)
    assert not MemoryVersion.objects.filter(memory=memory).exists()
    assert AuditEntry.objects.count() == entries


def _append_only(response) -> None:
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "append_only" and "append-only" in error["message"]


@pytest.mark.parametrize("caller", ["agent", "reader"])
def test_rest_edits_and_deletes_of_an_event_are_refused(callers, caller, turn, unchanged):
    client = callers[caller]
    _append_only(client.patch(f"/api/v1/memories/{turn.pk}", {"tags": ["mine"]}))
    _append_only(client.put(f"/api/v1/memories/{turn.pk}", {"content": "rewritten"}))
    _append_only(client.delete(f"/api/v1/memories/{turn.pk}"))


def test_an_agents_edit_of_an_ordinary_memory_is_still_a_role_refusal(agent, stored):
    memory = stored("an ordinary note")
    response = agent.patch(f"/api/v1/memories/{memory['id']}", {"tags": ["x"]})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_drop_in_routes_refuse_too(agent, alpha, turn, unchanged):
    response = agent.patch("/v1/update", {"id": str(turn.pk), "content": "rewritten"})
    assert response.status_code == 403 and response.json()["code"] == "append_only"
    response = agent.client.delete("/v1/forget", {"ids": [str(turn.pk)]}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "append_only"
    number = cmm_numbers(alpha, "cmm", [turn.pk])[turn.pk]
    response = agent.put(f"/cmm/memory/{number}", {"gist": "rewritten"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "append_only"
    response = agent.delete(f"/cmm/memory/{number}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "append_only"


def test_mcp_tools_refuse_with_the_reason(agent, turn, unchanged):
    backend = ServiceBackend(Principal.for_key(agent.key))
    with pytest.raises(ToolError, match=r"^append_only: conversation events are append-only"):
        backend.update(str(turn.pk), {"content": "rewritten"})
    with pytest.raises(ToolError, match=r"^append_only:"):
        backend.forget(str(turn.pk))


def test_batched_edits_and_revert_refuse_each_event_and_say_why(agent, turn, unchanged):
    principal = Principal.for_key(agent.key)
    for result in (services.retag_many(principal, [turn.pk], add=["mine"]),
                   services.set_kind_many(principal, [turn.pk], "fact")):
        assert result.updated == []
        assert [(pk, "append-only" in why) for pk, why in result.errors] == [(str(turn.pk), True)]
    with pytest.raises(PermissionDenied) as refused:
        services.revert(principal, turn.pk, 1)
    assert refused.value.code == "append_only"
    with pytest.raises(PermissionDenied):
        services.delete_many(principal, [turn.pk])


def test_a_team_admin_may_edit_and_delete_an_event(team_admin, turn):
    response = team_admin.patch(f"/api/v1/memories/{turn.pk}",
                                {"content": "Deploy the canary to eu-west-1 first."})
    assert response.status_code == 200, response.content
    assert (response.json()["version"], response.json()["event_type"]) == (2, "user_message")
    # PUT keeps an event's kind when it names none; it may not change it.
    assert team_admin.put(f"/api/v1/memories/{turn.pk}",
                          {"content": "put"}).json()["kind"] == "event"
    response = team_admin.patch(f"/api/v1/memories/{turn.pk}", {"kind": "fact"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "kind"
    assert team_admin.delete(f"/api/v1/memories/{turn.pk}").status_code == 204
    assert not Memory.objects.filter(pk=turn.pk).exists()
    assert not ExternalId.objects.filter(memory_id=turn.pk).exists()


def test_no_memory_becomes_an_event(team_admin, stored, alpha):
    memory = stored("an ordinary note")
    response = team_admin.patch(f"/api/v1/memories/{memory['id']}", {"kind": "event"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "kind"
    admin = Principal.for_key(team_admin.key)
    result = services.set_kind_many(admin, [memory["id"]], "event")
    assert result.updated == [] and len(result.errors) == 1
    assert Memory.objects.get(pk=memory["id"]).kind == "fact"


def test_system_admins_deletes_by_agent_or_filter_include_events(system_admin, agent, turn,
                                                                 stored):
    """Deletes by agent or filter are a system admin's (agents cannot reach them), and
    admins may erase events: the agent's events go with its memories."""
    stored("an ordinary note")
    response = system_admin.delete("/v1/forget?namespace=alpha&session=s1")
    assert response.status_code == 200 and response.json()["deleted"] == 1
    assert not Memory.objects.filter(pk=turn.pk).exists()
    agent.post("/api/v1/events", {"events": [{**TURN, "id": "t2"}]})
    response = system_admin.delete("/api/v1/agents/agent-1/memories?namespace=alpha")
    assert response.json()["deleted"] == 2 and not Memory.objects.exists()
    assert agent.delete("/v1/forget?agent=agent-1").status_code == 403


def test_an_agent_of_another_namespace_gets_404_not_the_reason(outsider, turn, unchanged):
    response = outsider.patch(f"/api/v1/memories/{turn.pk}", {"tags": ["x"]})
    assert response.status_code == 404
    assert outsider.delete(f"/api/v1/memories/{uuid.uuid4()}").status_code == 404


@pytest.fixture
def other_agent(alpha):
    """Another agent of the namespace (made before ``unchanged`` counts the audit log)."""
    return make_caller(Role.AGENT, alpha, "agent-9")


def test_another_agent_of_the_namespace_is_refused_too(other_agent, turn, unchanged):
    _append_only(other_agent.patch(f"/api/v1/memories/{turn.pk}", {"importance": 0.9}))
    _append_only(other_agent.delete(f"/api/v1/memories/{turn.pk}"))
