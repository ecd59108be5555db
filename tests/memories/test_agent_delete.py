"""Deleting by agent or by subject names its namespace (issue 16, item 13).

``DELETE /api/v1/agents/{id}/memories`` without a namespace used to delete the agent's
memories in every tenant at once; now that takes an explicit ``all_namespaces=true``
and the answer counts per namespace. ``DELETE /v1/forget/certified`` (and its REST twin)
honour ``?namespace=`` for a system admin even when the selector is in the body.
"""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories.models import Memory
from apps.privacy.models import ErasureRequest
from tests.helpers.callers import make_caller


@pytest.fixture
def twins(agent, beta):
    """agent-1 in alpha and an agent with the same id in beta, one memory each."""
    twin = make_caller(Role.AGENT, beta, "agent-1")
    agent.post("/api/v1/memories", {"content": "alpha's note by agent-1"})
    twin.post("/api/v1/memories", {"content": "beta's note by agent-1"})
    return twin


def test_no_namespace_and_no_explicit_choice_is_400_and_deletes_nothing(system_admin, twins):
    response = system_admin.delete("/api/v1/agents/agent-1/memories")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "all_namespaces"
    assert "namespace" in error["message"] and "all_namespaces=true" in error["message"]
    assert Memory.objects.count() == 2
    assert not AuditEntry.objects.filter(operation="memory.delete_by_agent").exists()


def test_all_namespaces_true_deletes_everywhere_and_counts_per_namespace(system_admin, twins):
    response = system_admin.delete("/api/v1/agents/agent-1/memories?all_namespaces=true")
    assert response.status_code == 200, response.content
    assert response.json() == {"deleted": 2, "namespaces": {"alpha": 1, "beta": 1}}
    assert not Memory.objects.exists()


def test_one_namespace_counts_that_namespace(system_admin, twins):
    response = system_admin.delete("/api/v1/agents/agent-1/memories?namespace=beta")
    assert response.status_code == 200, response.content
    assert response.json() == {"deleted": 1, "namespaces": {"beta": 1}}
    assert list(Memory.objects.values_list("content", flat=True)) == ["alpha's note by agent-1"]


def test_a_namespace_with_nothing_of_the_agent_answers_zero(system_admin, alpha):
    response = system_admin.delete("/api/v1/agents/agent-9/memories?namespace=alpha")
    assert response.json() == {"deleted": 0, "namespaces": {"alpha": 0}}


@pytest.mark.parametrize("query", ["all_namespaces=false", "all_namespaces=yes",
                                   "namespace=beta&all_namespaces=true"])
def test_unclear_choices_are_400(system_admin, twins, query):
    response = system_admin.delete(f"/api/v1/agents/agent-1/memories?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "all_namespaces"
    assert Memory.objects.count() == 2


def test_non_system_callers_are_still_403(team_admin, twins):
    assert team_admin.delete("/api/v1/agents/agent-1/memories?all_namespaces=true"
                             ).status_code == 403
    assert Memory.objects.count() == 2


def test_seed_000_route_keeps_its_one_store_meaning_and_counts_too(system_admin, twins):
    """Seed 000 had one store: its clients' DELETE /memories/agent/{id} means everywhere."""
    response = system_admin.delete("/cmm/memories/agent/agent-1")
    assert response.status_code == 200, response.content
    assert response.json() == {"deleted": 2, "agent_id": "agent-1",
                               "namespaces": {"alpha": 1, "beta": 1}}


# --- certified forget: ?namespace= is honoured beside a body --------------------------------

def test_v1_forget_certified_honours_the_query_namespace(system_admin, alpha, beta, twins):
    response = system_admin.client.delete("/v1/forget/certified?namespace=beta",
                                          {"agent": "agent-1"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["deleted"] == 1
    assert list(Memory.objects.values_list("namespace__slug", flat=True)) == ["alpha"]
    assert ErasureRequest.objects.get().namespace_slug == "beta"


def test_rest_forget_certified_honours_the_query_namespace(system_admin, alpha, beta, twins):
    response = system_admin.client.delete("/api/v1/forget/certified?namespace=beta",
                                          {"agent_id": "agent-1"}, format="json")
    assert response.status_code == 200, response.content
    assert list(Memory.objects.values_list("namespace__slug", flat=True)) == ["alpha"]


@pytest.mark.parametrize("path", ["/v1/forget/certified?namespace=beta",
                                  "/api/v1/forget/certified?namespace=beta"])
def test_a_body_and_a_query_naming_different_namespaces_is_400(system_admin, twins, path):
    body = {"namespace": "alpha", ("agent" if path.startswith("/v1") else "agent_id"): "agent-1"}
    response = system_admin.client.delete(path, body, format="json")
    assert response.status_code == 400, response.content
    assert Memory.objects.count() == 2 and not ErasureRequest.objects.exists()
