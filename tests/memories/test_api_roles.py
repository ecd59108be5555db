"""Every endpoint for every role, allowed and denied; another tenant's objects are 404.

Expected statuses follow DESIGN.md's role table: reader reads, agent also ingests,
team admin also edits and deletes, system admin also bulk-deletes by agent.
"""

from __future__ import annotations

import pytest

from apps.core.roles import Role
from apps.memories.models import Memory
from tests.helpers.callers import make_caller

ROLES = ["reader", "agent", "admin", "system", "outsider", "anonymous"]


def _ns(role: str) -> dict:
    """System-admin keys name the namespace; others act on their own."""
    return {"namespace": "alpha"} if role == "system" else {}


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 201), ("admin", 201), ("system", 201), ("anonymous", 401)],
)
def test_store_memory_by_role(callers, role, expected):
    response = callers[role].post("/api/v1/memories", {"content": "hello world", **_ns(role)})
    assert response.status_code == expected, response.content
    assert Memory.objects.filter(namespace__slug="alpha").count() == (1 if expected == 201 else 0)
    if expected == 201:
        assert response.json()["agent_id"] == callers[role].key.agent_id


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 201), ("admin", 201), ("system", 201), ("anonymous", 401)],
)
def test_batch_by_role(callers, role, expected):
    body = {"memories": [{"content": "one"}, {"content": "two"}], **_ns(role)}
    response = callers[role].post("/api/v1/memories/batch", body)
    assert response.status_code == expected, response.content
    assert Memory.objects.count() == (2 if expected == 201 else 0)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 201), ("admin", 201), ("system", 201), ("anonymous", 401)],
)
def test_ingest_and_recall_by_role(callers, stored, role, expected):
    stored("The staging database lives on host db-3")
    body = {"content": "Which host runs the staging database?", **_ns(role)}
    response = callers[role].post("/api/v1/ingest_and_recall", body)
    assert response.status_code == expected, response.content
    if expected == 201:
        data = response.json()
        assert data["results"][0]["content"] == "The staging database lives on host db-3"
        assert data["memory"]["id"] not in [r["id"] for r in data["results"]]


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 200), ("agent", 200), ("admin", 200), ("system", 200), ("anonymous", 401)],
)
def test_recall_by_role(callers, stored, role, expected):
    stored("Alice prefers dark mode in every editor")
    response = callers[role].post("/api/v1/recall", {"query": "dark mode", **_ns(role)})
    assert response.status_code == expected, response.content
    if expected == 200:
        assert response.json()["results"][0]["content"] == "Alice prefers dark mode in every editor"


def test_outsider_recall_never_returns_other_tenant(outsider, stored):
    stored("alpha secret: the launch code is 1234")
    response = outsider.post("/api/v1/recall", {"query": "launch code"})
    assert response.status_code == 200
    assert response.json()["results"] == []
    response = outsider.post("/api/v1/recall", {"query": "launch code", "namespace": "alpha"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 200), ("agent", 200), ("admin", 200), ("system", 200), ("outsider", 404),
     ("anonymous", 401)],
)
def test_get_memory_by_role(callers, stored, role, expected):
    memory = stored("a fact")
    response = callers[role].get(f"/api/v1/memories/{memory['id']}")
    assert response.status_code == expected
    if expected == 404:
        assert "a fact" not in response.content.decode()
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 200), ("agent", 200), ("admin", 200), ("system", 200), ("outsider", 404),
     ("anonymous", 401)],
)
def test_versions_by_role(callers, stored, role, expected):
    memory = stored("a fact")
    assert callers[role].get(f"/api/v1/memories/{memory['id']}/versions").status_code == expected


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 403), ("admin", 200), ("system", 200), ("outsider", 404),
     ("anonymous", 401)],
)
def test_patch_memory_by_role(callers, stored, role, expected):
    memory = stored("the limit is 400")
    response = callers[role].patch(f"/api/v1/memories/{memory['id']}", {"content": "the limit is 480"})
    assert response.status_code == expected, response.content
    content = Memory.objects.get(pk=memory["id"]).content
    assert content == ("the limit is 480" if expected == 200 else "the limit is 400")


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 403), ("admin", 200), ("system", 200), ("outsider", 404),
     ("anonymous", 401)],
)
def test_put_memory_by_role(callers, stored, role, expected):
    memory = stored("old", tags=["x"], importance=0.9)
    response = callers[role].put(f"/api/v1/memories/{memory['id']}", {"content": "new"})
    assert response.status_code == expected, response.content
    row = Memory.objects.get(pk=memory["id"])
    if expected == 200:  # PUT replaces: omitted fields take their defaults
        assert (row.content, row.tags, row.importance) == ("new", [], 0.5)
    else:
        assert (row.content, row.tags, row.importance) == ("old", ["x"], 0.9)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 403), ("admin", 204), ("system", 204), ("outsider", 404),
     ("anonymous", 401)],
)
def test_delete_memory_by_role(callers, stored, role, expected):
    memory = stored("to be deleted")
    response = callers[role].delete(f"/api/v1/memories/{memory['id']}")
    assert response.status_code == expected
    assert Memory.objects.filter(pk=memory["id"]).exists() == (expected != 204)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("reader", 403), ("agent", 403), ("admin", 403), ("system", 200), ("outsider", 403),
     ("anonymous", 401)],
)
def test_delete_by_agent_by_role(callers, stored, role, expected):
    stored("from agent-1")
    response = callers[role].delete("/api/v1/agents/agent-1/memories?all_namespaces=true")
    assert response.status_code == expected, response.content
    assert Memory.objects.filter(agent_id="agent-1").count() == (0 if expected == 200 else 1)


def test_delete_by_agent_spares_other_agents_and_reaches_every_namespace(system_admin, agent, outsider):
    agent.post("/api/v1/memories", {"content": "alpha by agent-1"})
    outsider.post("/api/v1/memories", {"content": "beta by outsider-1"})
    system_admin.post("/api/v1/memories", {"content": "beta by agent-1?", "namespace": "beta"})
    response = system_admin.delete("/api/v1/agents/agent-1/memories?all_namespaces=true")
    assert response.json() == {"deleted": 1, "namespaces": {"alpha": 1}}
    assert set(Memory.objects.values_list("agent_id", flat=True)) == {"outsider-1", "root"}
    recall = agent.post("/api/v1/recall", {"query": "alpha by agent-1"}).json()
    assert recall["results"] == []


def test_delete_by_agent_limited_to_namespace(system_admin, agent, beta):
    twin = make_caller(Role.AGENT, beta, "agent-1")  # same agent_id in another tenant
    agent.post("/api/v1/memories", {"content": "in alpha"})
    twin.post("/api/v1/memories", {"content": "in beta"})
    response = system_admin.delete("/api/v1/agents/agent-1/memories?namespace=beta")
    assert response.json() == {"deleted": 1, "namespaces": {"beta": 1}}
    assert list(Memory.objects.values_list("content", flat=True)) == ["in alpha"]


@pytest.mark.parametrize("role", ["reader", "agent", "admin"])
def test_list_shows_only_own_namespace(callers, stored, outsider, role):
    mine = stored("alpha memory")
    outsider.post("/api/v1/memories", {"content": "beta memory"})
    response = callers[role].get("/api/v1/memories")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["results"]] == [mine["id"]]


def test_outsider_list_hides_alpha(outsider, stored):
    stored("alpha memory")
    assert outsider.get("/api/v1/memories").json()["count"] == 0
    assert outsider.get("/api/v1/memories?namespace=alpha").status_code == 404


def test_system_admin_lists_all_namespaces(system_admin, stored, outsider):
    stored("alpha memory")
    outsider.post("/api/v1/memories", {"content": "beta memory"})
    assert system_admin.get("/api/v1/memories").json()["count"] == 2
    only_beta = system_admin.get("/api/v1/memories?namespace=beta").json()
    assert [m["content"] for m in only_beta["results"]] == ["beta memory"]


def test_anonymous_gets_401_with_error_envelope(anonymous):
    response = anonymous.get("/api/v1/memories")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_system_admin_must_name_namespace_to_store(system_admin):
    response = system_admin.post("/api/v1/memories", {"content": "where?"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "namespace"
    assert Memory.objects.count() == 0


def test_system_admin_unknown_namespace_is_404(system_admin):
    response = system_admin.post("/api/v1/memories", {"content": "x", "namespace": "nope"})
    assert response.status_code == 404


def test_agent_naming_another_namespace_is_404(agent, beta):
    response = agent.post("/api/v1/memories", {"content": "x", "namespace": "beta"})
    assert response.status_code == 404
    assert Memory.objects.count() == 0


def test_delete_many_is_all_or_nothing(agent, team_admin, outsider):
    from apps.core.errors import NotFound, PermissionDenied
    from apps.memories import services
    from apps.tenancy.principal import Principal

    mine = [agent.post("/api/v1/memories", {"content": f"note {i}"}).json()["id"] for i in range(2)]
    theirs = outsider.post("/api/v1/memories", {"content": "beta note"}).json()["id"]
    with pytest.raises(NotFound):  # one id outside the admin's tenant: nothing is deleted
        services.delete_many(Principal.for_key(team_admin.key), [*mine, theirs])
    with pytest.raises(PermissionDenied):  # an agent may not delete
        services.delete_many(Principal.for_key(agent.key), mine)
    assert Memory.objects.count() == 3
    assert services.delete_many(Principal.for_key(team_admin.key), mine) == 2
    assert list(Memory.objects.values_list("content", flat=True)) == ["beta note"]
