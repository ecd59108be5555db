"""MEMORYWEB_REQUIRE_MFA is scoped to where a role is exercised (issue 16, item 4b).

The review's lockout: a reader of alpha with a password-only session was made admin of
beta, and at once lost REST access to alpha (403 "two-factor authentication is
required"). The rule now: without a TOTP authenticator, a role that needs one (team
admin) is dormant in its own namespace only; the person's reader and agent roles
elsewhere keep working, through REST and the live WebSocket. A person whose every role
is dormant (or a superuser) still gets nothing from a password-only session.
"""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from apps.core.roles import Action, Role
from apps.tenancy.members import set_role
from apps.tenancy.models import ApiKey
from apps.tenancy.principal import Principal


@pytest.fixture
def mfa_required(settings):
    settings.MEMORYWEB_REQUIRE_MFA = True


def _session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_an_admin_role_in_beta_does_not_lock_the_person_out_of_alpha(mfa_required, alpha, beta,
                                                                     stored):
    stored("alpha's reading list")
    areader = get_user_model().objects.create_user("areader", password="pw")
    set_role(alpha, areader, Role.READER)
    client = _session(areader)
    assert client.get("/api/v1/memories?namespace=alpha").status_code == 200
    set_role(beta, areader, Role.ADMIN)  # mid-session, in another tenant
    response = client.get("/api/v1/memories?namespace=alpha")
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 1
    recall = client.post("/api/v1/recall", {"query": "reading list", "namespace": "alpha",
                                             "mode": "lexical"},
                         format="json")
    assert recall.status_code == 200 and recall.json()["results"]


def test_the_dormant_admin_role_is_refused_in_its_own_namespace(mfa_required, alpha, beta):
    person = get_user_model().objects.create_user("dora", password="pw")
    set_role(alpha, person, Role.READER)
    set_role(beta, person, Role.ADMIN)
    client = _session(person)
    for response in (client.get("/api/v1/memories?namespace=beta"),
                     client.post("/api/v1/namespaces/beta/keys", {"role": "admin", "agent_id": "x"},
                                 format="json"),
                     client.get("/api/v1/namespaces/beta/members")):
        assert response.status_code == 403, response.content
        assert "two-factor authentication is required" in response.json()["error"]["message"]
    assert not ApiKey.objects.filter(agent_id="x").exists()
    listed = {row["slug"] for row in client.get("/api/v1/namespaces").json()}
    assert listed == {"alpha"}  # beta is not usable, so not listed
    # With an authenticator (allauth asks for its code at every login) the role wakes up.
    TOTP.activate(person, generate_totp_secret())
    client.force_login(person)
    assert client.get("/api/v1/namespaces/beta/members").status_code == 200


def test_a_password_only_admin_with_no_other_role_still_gets_nothing(mfa_required, alpha):
    """The existing rule's intent, unchanged: a password alone never acts as an admin."""
    person = get_user_model().objects.create_user("tess", password="pw")
    set_role(alpha, person, Role.ADMIN)
    client = _session(person)
    for response in (client.get("/api/v1/memories"),
                     client.get("/api/v1/memories?namespace=alpha")):
        assert response.status_code == 403
        assert "two-factor authentication is required" in response.json()["error"]["message"]


def test_the_principal_holds_the_dormant_role_apart(mfa_required, alpha, beta, settings):
    person = get_user_model().objects.create_user("pia")
    set_role(alpha, person, Role.AGENT)
    set_role(beta, person, Role.ADMIN)
    principal = Principal.for_user(person)
    assert principal.dormant == frozenset({beta.pk})
    assert principal.can(Action.INGEST, alpha.pk) and not principal.can(Action.READ, beta.pk)
    assert principal.namespace_ids(Action.READ) == [alpha.pk]
    settings.MEMORYWEB_REQUIRE_MFA = False
    assert Principal.for_user(person).dormant == frozenset()


def test_the_dashboard_still_sends_a_dormant_admin_to_set_up_totp(mfa_required, alpha, beta):
    from django.test import Client

    person = get_user_model().objects.create_user("dane", password="pw")
    set_role(alpha, person, Role.READER)
    set_role(beta, person, Role.ADMIN)
    client = Client()
    client.force_login(person)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/"
