"""Erasure decisions (issue 16, item 15): a rejection gives its reason, a selector that
matches nothing is refused when the request is made, and with four-eyes on
(``MEMORYWEB_ERASURE_FOUR_EYES``) nobody approves their own request: not with the same
key, not as the same person through a session or through a key that person minted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.privacy import erasure
from apps.privacy.models import ErasureRequest
from apps.tenancy.members import set_role
from apps.tenancy.principal import Principal
from tests.helpers.callers import Caller, make_caller
from tests.servers import ROOT

REQUESTS = "/api/v1/erasure-requests"


@pytest.fixture
def held(agent, alpha):
    """agent-1 holds one memory about Dana in alpha."""
    return agent.post("/api/v1/memories", {"content": "Dana's note",
                                           "metadata": {"subject_id": "dana"}}).json()["id"]


def _request(caller, **selector) -> str:
    response = caller.post(REQUESTS, {"namespace": "alpha", "agent_id": "agent-1", **selector})
    assert response.status_code == 201, response.content
    return response.json()["id"]


# --- a rejection needs a reason ---------------------------------------------------------

@pytest.mark.parametrize("body", [None, {}, {"reason": ""}, {"reason": "   "}])
def test_a_rejection_without_a_reason_is_400_and_decides_nothing(team_admin, held, body):
    request_id = _request(team_admin)
    response = team_admin.post(f"{REQUESTS}/{request_id}/reject", body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "reason"
    assert "reason" in response.json()["error"]["message"]
    assert ErasureRequest.objects.get(pk=request_id).state == "requested"
    assert not AuditEntry.objects.filter(operation="erasure.reject").exists()


def test_a_rejection_with_a_reason_keeps_it(team_admin, held):
    request_id = _request(team_admin)
    response = team_admin.post(f"{REQUESTS}/{request_id}/reject", {"reason": " not the subject "})
    assert response.status_code == 200, response.content
    assert response.json()["rejection_reason"] == "not the subject"


def test_the_dashboard_refuses_a_rejection_without_a_reason(client, alpha, held):
    alice = get_user_model().objects.create_user("alice", password="pw", is_staff=True)
    set_role(alpha, alice, Role.ADMIN)
    client.force_login(alice)
    requested = erasure.create(Principal.for_user(alice), {"namespace": "alpha",
                                                           "agent_id": "agent-1"})
    step = f"/admin/privacy/erasurerequest/{requested.pk}/step/reject/"
    page = client.get(step).content.decode()  # the confirmation page holds the reason
    assert 'name="reason"' in page and "required" in page.split('name="reason"')[1][:120]
    refused = client.post(step, {"confirm": "yes", "reason": " "}, follow=True)
    assert b"a rejection needs a reason" in refused.content
    assert ErasureRequest.objects.get(pk=requested.pk).state == "requested"


# --- a selector that matches nothing ----------------------------------------------------------

@pytest.mark.parametrize(("selector", "field"), [
    ({"agent_id": "nobody"}, "agent_id"),
    ({"session_id": "none"}, "session_id"),
    ({"subject_id": "ghost"}, "subject_id"),
    ({"ids": ["00000000-0000-0000-0000-000000000000"]}, "ids"),
])
def test_a_selector_that_matches_nothing_is_refused(team_admin, held, selector, field):
    response = team_admin.post(REQUESTS, selector)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == field and "matches nothing you can see" in error["message"]
    assert not ErasureRequest.objects.exists()


def test_another_tenants_ids_get_the_same_answer_as_ids_nobody_has(team_admin, outsider, held):
    foreign = outsider.post("/api/v1/memories", {"content": "beta's own"}).json()["id"]
    theirs = team_admin.post(REQUESTS, {"ids": [foreign]})
    nobodys = team_admin.post(REQUESTS, {"ids": ["11111111-1111-1111-1111-111111111111"]})
    assert theirs.status_code == nobodys.status_code == 400
    assert theirs.json() == nobodys.json()
    assert foreign not in theirs.content.decode()


def test_one_call_forms_refuse_it_too(system_admin, held):
    response = system_admin.client.delete("/api/v1/forget/certified?namespace=alpha&"
                                          "agent_id=nobody")
    assert response.status_code == 400 and response.json()["error"]["field"] == "agent_id"
    response = system_admin.client.delete("/v1/forget/certified?namespace=alpha&agent=nobody")
    assert response.status_code == 400, response.content
    assert not ErasureRequest.objects.exists()


# --- four eyes --------------------------------------------------------------------------------

@pytest.fixture
def four_eyes(settings):
    settings.MEMORYWEB_ERASURE_FOUR_EYES = True


def _person(username: str, namespace, role: Role = Role.ADMIN) -> Caller:
    user = get_user_model().objects.create_user(username)
    set_role(namespace, user, role)
    client = APIClient()
    client.force_login(user)
    return Caller(client, None, None, f"user:{username}")


def _minted_by(person: Caller, agent_id: str) -> Caller:
    """A team-admin key that ``person`` creates through the API (the audit log says who)."""
    made = person.post("/api/v1/namespaces/alpha/keys", {"role": "admin", "agent_id": agent_id})
    assert made.status_code == 201, made.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {made.json()['key']}")
    return Caller(client, None, made.json()["key"], "admin")


def _refused_as_four_eyes(response):
    assert response.status_code == 403, response.content
    assert "four-eyes" in response.json()["error"]["message"]


def test_the_same_key_cannot_approve_its_own_request(four_eyes, team_admin, held):
    request_id = _request(team_admin)
    _refused_as_four_eyes(team_admin.post(f"{REQUESTS}/{request_id}/approve"))
    assert ErasureRequest.objects.get(pk=request_id).state == "requested"
    assert not AuditEntry.objects.filter(operation="erasure.approve").exists()


def test_another_principal_approves(four_eyes, team_admin, alpha, held):
    request_id = _request(team_admin)
    other = make_caller(Role.ADMIN, alpha, "admin-2")
    approved = other.post(f"{REQUESTS}/{request_id}/approve")
    assert approved.status_code == 200 and approved.json()["state"] == "approved"


def test_the_requester_may_still_withdraw_it_by_rejecting(four_eyes, team_admin, held):
    request_id = _request(team_admin)
    response = team_admin.post(f"{REQUESTS}/{request_id}/reject", {"reason": "asked by mistake"})
    assert response.status_code == 200 and response.json()["state"] == "rejected"


def test_a_person_cannot_approve_through_a_key_they_minted(four_eyes, alpha, held):
    alice = _person("alice", alpha)
    request_id = _request(alice)
    alices_key = _minted_by(alice, "alice-bot")
    _refused_as_four_eyes(alices_key.post(f"{REQUESTS}/{request_id}/approve"))
    # Nor through a key that key minted in turn.
    grandchild = _minted_by(alices_key, "alice-bot-2")
    _refused_as_four_eyes(grandchild.post(f"{REQUESTS}/{request_id}/approve"))
    # A request made with alice's key is hers too: her session cannot approve it.
    by_key = _request(alices_key)
    _refused_as_four_eyes(alice.post(f"{REQUESTS}/{by_key}/approve"))
    # Bob, another person, may approve both.
    bob = _person("bob", alpha)
    assert bob.post(f"{REQUESTS}/{request_id}/approve").status_code == 200
    assert bob.post(f"{REQUESTS}/{by_key}/approve").status_code == 200


def test_a_rotated_key_belongs_to_whoever_rotated_it(four_eyes, alpha, held):
    """The rotation's actor was shown the new secret; here alice's key rotates itself."""
    alice = _person("alice", alpha)
    request_id = _request(alice)
    minted = _minted_by(alice, "alice-bot")
    key_id = next(k["id"] for k in alice.get("/api/v1/namespaces/alpha/keys").json()
                  if k["agent_id"] == "alice-bot")
    rotated = minted.post(f"/api/v1/namespaces/alpha/keys/{key_id}/rotate", {"grace_seconds": 0})
    assert rotated.status_code == 201, rotated.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {rotated.json()['key']}")
    new_key = Caller(client, None, rotated.json()["key"], "admin")
    _refused_as_four_eyes(new_key.post(f"{REQUESTS}/{request_id}/approve"))


def test_one_call_erasure_is_refused_with_four_eyes(four_eyes, system_admin, held):
    _refused_as_four_eyes(system_admin.post(REQUESTS, {"namespace": "alpha",
                                                       "agent_id": "agent-1", "execute": True}))
    _refused_as_four_eyes(system_admin.client.delete(
        "/api/v1/forget/certified?namespace=alpha&agent_id=agent-1"))
    response = system_admin.client.delete("/v1/forget/certified?namespace=alpha&agent=agent-1")
    assert response.status_code == 403 and "four-eyes" in response.json()["error"]
    assert not ErasureRequest.objects.exists()


def test_off_the_requester_may_approve(settings, team_admin, held):
    settings.MEMORYWEB_ERASURE_FOUR_EYES = False
    request_id = _request(team_admin)
    assert team_admin.post(f"{REQUESTS}/{request_id}/approve").status_code == 200


def test_the_dashboard_hides_approve_from_the_requester(four_eyes, client, alpha, held):
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    set_role(alpha, alice, Role.ADMIN)
    client.force_login(alice)
    requested = erasure.create(Principal.for_user(alice), {"namespace": "alpha",
                                                           "agent_id": "agent-1"})
    page = client.get(f"/admin/privacy/erasurerequest/{requested.pk}/change/").content.decode()
    assert "erasure-approve-button" not in page and "four-eyes" in page
    refused = client.post(f"/admin/privacy/erasurerequest/{requested.pk}/step/approve/",
                          {"confirm": "yes"}, follow=True)
    assert b"four-eyes" in refused.content
    assert ErasureRequest.objects.get(pk=requested.pk).state == "requested"


@pytest.mark.processes  # a fresh Python per environment: settings are read at start-up
@pytest.mark.parametrize(("env", "expected"), [
    ({"MEMORYWEB_ENV": "production"}, "True"),
    ({"MEMORYWEB_ENV": "local"}, "False"),
    ({"MEMORYWEB_ENV": "production", "MEMORYWEB_ERASURE_FOUR_EYES": "false"}, "False"),
    ({"MEMORYWEB_ENV": "local", "MEMORYWEB_ERASURE_FOUR_EYES": "true"}, "True"),
])
def test_four_eyes_is_on_by_default_in_production(tmp_path, env, expected):
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("MEMORYWEB_", "DJANGO_"))}
    environment.update(env, MEMORYWEB_DATA_DIR=str(tmp_path), SECRET_KEY="x" * 50,
                       DJANGO_SETTINGS_MODULE="memoryweb.settings")
    out = subprocess.run([sys.executable, "-c", "from django.conf import settings; "
                          "print(settings.MEMORYWEB_ERASURE_FOUR_EYES)"],
                         cwd=ROOT, env=environment, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
