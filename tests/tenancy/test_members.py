"""People as namespace members: roles held as guardian object permissions, enforced
through the same services and querysets as API keys."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.core.roles import ROLE_PERMISSIONS, Role, role_from_permissions
from apps.memories.models import Memory
from apps.tenancy.members import members, memberships, set_role
from apps.tenancy.principal import Principal


def _person(username: str, namespace=None, role: Role | None = None) -> APIClient:
    user = get_user_model().objects.create_user(username, password="pw")
    if namespace is not None:
        set_role(namespace, user, role)
    client = APIClient()
    client.force_login(user)
    return client


def test_roles_are_bundles_of_permissions():
    assert ROLE_PERMISSIONS[Role.READER] == {"read_memories"}
    assert ROLE_PERMISSIONS[Role.AGENT] == {"read_memories", "ingest_memories"}
    assert ROLE_PERMISSIONS[Role.ADMIN] == {"read_memories", "ingest_memories", "edit_memories",
                                            "manage_namespace"}
    assert role_from_permissions({"ingest_memories"}) is None  # an incomplete bundle is no role
    assert role_from_permissions({"read_memories", "ingest_memories", "edit_memories"}) is Role.AGENT


def test_setting_a_role_replaces_the_previous_one(alpha, beta):
    user = get_user_model().objects.create_user("dana")
    set_role(alpha, user, Role.AGENT)  # (not admin: the last admin stays, test_last_admin.py)
    set_role(beta, user, Role.READER)
    set_role(alpha, user, Role.READER)
    assert memberships(user) == {alpha.pk: Role.READER, beta.pk: Role.READER}
    assert user.has_perm("tenancy.read_memories", alpha) and not user.has_perm(
        "tenancy.edit_memories", alpha)
    set_role(beta, user, None)
    assert memberships(user) == {alpha.pk: Role.READER}
    assert members(alpha) == {"dana": Role.READER} and members(beta) == {}


def test_system_role_is_not_a_membership(alpha):
    from apps.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="reader, agent or admin"):
        set_role(alpha, get_user_model().objects.create_user("eve"), Role.SYSTEM)


def test_a_reader_member_recalls_but_cannot_store(alpha, stored):
    stored("The wifi password is on the fridge")
    client = _person("rita", alpha, Role.READER)
    response = client.post("/api/v1/recall", {"query": "wifi password", "namespace": "alpha"},
                           format="json")
    assert response.status_code == 200
    assert response.json()["results"][0]["content"] == "The wifi password is on the fridge"
    denied = client.post("/api/v1/memories", {"content": "x", "namespace": "alpha"}, format="json")
    assert denied.status_code == 403 and Memory.objects.filter(content="x").count() == 0


def test_an_agent_member_stores_under_their_own_name(alpha):
    client = _person("arno", alpha, Role.AGENT)
    response = client.post("/api/v1/memories", {"content": "Standup at 9", "namespace": "alpha"},
                           format="json")
    assert response.status_code == 201 and response.json()["agent_id"] == "user:arno"


def test_a_member_never_sees_another_namespace(alpha, beta, outsider):
    outsider.post("/api/v1/memories", {"content": "beta's secret plan"})
    client = _person("mia", alpha, Role.ADMIN)
    assert client.post("/api/v1/recall", {"query": "secret plan", "namespace": "beta"},
                       format="json").status_code == 404
    assert client.get("/api/v1/memories").json()["count"] == 0
    beta_memory = Memory.objects.get(content="beta's secret plan")
    assert client.get(f"/api/v1/memories/{beta_memory.pk}").status_code == 404


def test_listing_spans_every_namespace_the_member_may_read(alpha, beta, agent, outsider):
    agent.post("/api/v1/memories", {"content": "alpha note"})
    outsider.post("/api/v1/memories", {"content": "beta note"})
    user = get_user_model().objects.create_user("both")
    set_role(alpha, user, Role.READER)
    set_role(beta, user, Role.READER)
    principal = Principal.for_user(user)
    assert set(Memory.objects.for_principal(principal).values_list("content", flat=True)) == {
        "alpha note", "beta note"}
    set_role(beta, user, None)
    principal = Principal.for_user(user)
    assert list(Memory.objects.for_principal(principal).values_list("content", flat=True)) == [
        "alpha note"]


def test_a_user_without_membership_sees_nothing(alpha, stored):
    stored("alpha only")
    client = _person("nobody")
    assert client.get("/api/v1/memories").json()["count"] == 0
    assert client.post("/api/v1/recall", {"query": "alpha", "namespace": "alpha"},
                       format="json").status_code == 404


def test_add_member_command_creates_the_user_and_sets_the_role(alpha, capsys):
    call_command("add_member", "alpha", "zoe", "--role", "agent", "--password", "s3cret")
    user = get_user_model().objects.get(username="zoe")
    assert user.check_password("s3cret") and memberships(user) == {alpha.pk: Role.AGENT}
    call_command("add_member", "alpha", "zoe", "--role", "admin")
    assert memberships(user) == {alpha.pk: Role.ADMIN}
    call_command("add_member", "alpha", "yan", "--role", "admin")  # zoe is not the last admin
    call_command("add_member", "alpha", "zoe", "--remove")
    assert memberships(user) == {}
    assert "zoe is no longer a member of alpha" in capsys.readouterr().out


def test_add_member_refuses_unknown_namespace_and_role(db):
    with pytest.raises(CommandError, match="not found"):
        call_command("add_member", "nope", "zoe")
    with pytest.raises(CommandError):
        call_command("add_member", "nope", "zoe", "--role", "system")
