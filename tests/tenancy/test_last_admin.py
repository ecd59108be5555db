"""The last team admin of a namespace stays (issue 17, item 3): no door removes or
demotes them, so a namespace never ends up with nobody to manage it from the dashboard.
A system admin is no member, so is never "the last admin"."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.errors import Conflict
from apps.core.roles import Role
from apps.tenancy.members import members, set_role

MEMBER = "/api/v1/namespaces/alpha/members"


@pytest.fixture
def alice(alpha):
    user = get_user_model().objects.create_user("alice", password="pw")
    set_role(alpha, user, Role.ADMIN)
    return user


def _session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_the_last_admin_cannot_remove_herself_over_rest(alpha, alice):
    client = _session(alice)
    response = client.delete(f"{MEMBER}/alice")
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "last_admin" and error["field"] == "username"
    assert "last admin" in error["message"]
    assert members(alpha) == {"alice": Role.ADMIN}
    demoted = client.put(f"{MEMBER}/alice", {"role": "reader"}, format="json")
    assert demoted.status_code == 409 and members(alpha) == {"alice": Role.ADMIN}
    assert not AuditEntry.objects.filter(operation="member.remove").exists()


@pytest.mark.parametrize("caller", ["team_admin", "system_admin"])
def test_no_key_removes_or_demotes_the_last_admin(request, alpha, alice, caller):
    client = request.getfixturevalue(caller)
    assert client.delete(f"{MEMBER}/alice").status_code == 409
    assert client.put(f"{MEMBER}/alice", {"role": "agent"}).status_code == 409
    assert members(alpha) == {"alice": Role.ADMIN}


def test_with_a_second_admin_one_may_leave(alpha, alice):
    dora = get_user_model().objects.create_user("dora")
    set_role(alpha, dora, Role.ADMIN)
    client = _session(alice)
    assert client.put(f"{MEMBER}/dora", {"role": "reader"}, format="json").status_code == 200
    assert client.delete(f"{MEMBER}/alice").status_code == 409  # dora is a reader now
    set_role(alpha, dora, Role.ADMIN)
    assert client.delete(f"{MEMBER}/alice").status_code == 204
    assert members(alpha) == {"dora": Role.ADMIN}


def test_the_service_and_the_command_refuse_too(alpha, alice, beta):
    with pytest.raises(Conflict, match="last admin"):
        set_role(alpha, alice, None)
    with pytest.raises(CommandError, match="last admin"):
        call_command("add_member", "alpha", "alice", "--remove")
    set_role(beta, alice, Role.ADMIN)  # an admin elsewhere is no admin here
    with pytest.raises(Conflict):
        set_role(alpha, alice, Role.READER)
    assert members(alpha) == {"alice": Role.ADMIN}
