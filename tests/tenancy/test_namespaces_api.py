"""The namespaces API: system admins run namespaces, team admins their own, others read."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.memories.models import Memory
from apps.tenancy.members import memberships
from apps.tenancy.models import Namespace


def test_each_principal_lists_what_it_can_see(system_admin, agent, outsider):
    assert [n["slug"] for n in system_admin.get("/api/v1/namespaces").json()] == ["alpha", "beta"]
    rows = agent.get("/api/v1/namespaces").json()
    assert [(n["slug"], n["role"]) for n in rows] == [("alpha", "agent")]
    assert [n["slug"] for n in outsider.get("/api/v1/namespaces").json()] == ["beta"]


def test_only_system_admins_create_and_delete(system_admin, team_admin, agent, stored):
    assert team_admin.post("/api/v1/namespaces", {"slug": "gamma"}).status_code == 403
    response = system_admin.post("/api/v1/namespaces", {"slug": "gamma", "name": "Gamma"})
    assert response.status_code == 201 and response.json()["name"] == "Gamma"
    assert system_admin.post("/api/v1/namespaces", {"slug": "gamma"}).status_code == 409
    assert system_admin.post("/api/v1/namespaces", {"slug": "Bad Slug"}).status_code == 400
    stored("alpha memory")
    assert team_admin.delete("/api/v1/namespaces/alpha").status_code == 403
    assert system_admin.delete("/api/v1/namespaces/alpha").status_code == 204
    assert not Namespace.objects.filter(slug="alpha").exists() and not Memory.objects.exists()


def test_team_admin_renames_and_configures_but_does_not_archive(team_admin, agent):
    response = team_admin.patch("/api/v1/namespaces/alpha", {
        "name": "Team A", "recall_defaults": {"mode": "lexical"}, "near_duplicate_policy": "skip"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "Team A" and body["recall_defaults"] == {"mode": "lexical"}
    assert body["near_duplicate_policy"] == "skip"
    assert team_admin.patch("/api/v1/namespaces/alpha", {"archived": True}).status_code == 403
    assert agent.patch("/api/v1/namespaces/alpha", {"name": "mine"}).status_code == 403
    bad = team_admin.patch("/api/v1/namespaces/alpha", {"recall_defaults": {"mmr_lambda": 3}})
    assert bad.status_code == 400 and "mmr_lambda" in bad.json()["error"]["field"]


def test_archived_namespace_is_readable_but_refuses_writes(system_admin, agent, team_admin, stored):
    memory = stored("kept while archived")
    assert system_admin.patch("/api/v1/namespaces/alpha", {"archived": True}).json()["archived"]
    refused = agent.post("/api/v1/memories", {"content": "new"})
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "namespace"
    assert team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "x"}).status_code == 409
    assert agent.get(f"/api/v1/memories/{memory['id']}").status_code == 200
    assert agent.post("/api/v1/recall", {"query": "kept"}).json()["results"]
    system_admin.patch("/api/v1/namespaces/alpha", {"archived": False})
    assert agent.post("/api/v1/memories", {"content": "new"}).status_code == 201


def test_foreign_namespaces_are_404(outsider, team_admin):
    assert outsider.get("/api/v1/namespaces/alpha").status_code == 404
    assert outsider.patch("/api/v1/namespaces/alpha", {"name": "x"}).status_code == 404
    assert team_admin.get("/api/v1/namespaces/beta/members").status_code == 404
    assert team_admin.get("/api/v1/namespaces/nope").status_code == 404


def test_team_admin_manages_members(team_admin, reader, alpha):
    # Issue 16 item 4: a non-member is invited (202) and joins by accepting, and a name
    # nobody holds gets the same answer (it was 200 for lee, 404 for ghost).
    from apps.tenancy import invitations
    from apps.tenancy.principal import Principal

    user = get_user_model().objects.create_user("lee")
    response = team_admin.put("/api/v1/namespaces/alpha/members/lee", {"role": "agent"})
    assert response.status_code == 202 and memberships(user) == {}
    invitations.accept(Principal.for_user(user), response.json()["id"])
    assert memberships(user) == {alpha.pk: 2}
    assert team_admin.get("/api/v1/namespaces/alpha/members").json() == [
        {"username": "lee", "role": "agent"}]
    assert reader.get("/api/v1/namespaces/alpha/members").status_code == 403
    assert team_admin.put("/api/v1/namespaces/alpha/members/ghost", {"role": "agent"}).status_code == 202
    assert team_admin.put("/api/v1/namespaces/alpha/members/lee", {"role": "system"}).status_code == 400
    assert team_admin.put("/api/v1/namespaces/alpha/members/lee", {"role": "reader"}).json() == {
        "username": "lee", "role": "reader"}  # a member's role changes directly
    assert team_admin.delete("/api/v1/namespaces/alpha/members/lee").status_code == 204
    assert memberships(user) == {}


@pytest.mark.parametrize("path", ["/api/v1/namespaces", "/api/v1/namespaces/alpha",
                                  "/api/v1/namespaces/alpha/members", "/api/v1/namespaces/alpha/keys"])
def test_anonymous_gets_401(anonymous, alpha, path):
    assert anonymous.get(path).status_code == 401
