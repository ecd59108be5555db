"""No dead ends (issue 17, item 6): a person without a dashboard role is told why and can
log out; the login page offers no closed sign-up; a fresh login counts as a recent
authentication for turning on TOTP (a stale one does not); the admin header links to
two-factor settings."""

from __future__ import annotations

import pytest
from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from django.contrib.auth import get_user_model
from django.test import Client

from apps.core.roles import Role
from apps.tenancy.invitations import invite
from apps.tenancy.members import set_role
from apps.tenancy.principal import Principal

PASSWORD = "correct horse"
TOTP_ACTIVATE = "/accounts/2fa/totp/activate/"


def _user(username: str, namespace=None, role: Role = Role.READER):
    user = get_user_model().objects.create_user(username, f"{username}@example.org", PASSWORD)
    if namespace is not None:
        set_role(namespace, user, role)
    return user


def _log_in(client: Client, username: str) -> None:
    """Through allauth's form, so the login is recorded in the session as it is live."""
    response = client.post("/accounts/login/", {"login": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]


# A styled page for a role without dashboard access ------------------------------------
def test_a_reader_is_told_why_and_can_log_out(client, alpha, beta):
    _user("rita", alpha, Role.READER)
    set_role(beta, get_user_model().objects.get(username="rita"), Role.AGENT)
    _log_in(client, "rita")
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    page = response.content.decode()
    assert "admin/css/base.css" in page  # the admin's look, not a bare "403 Forbidden"
    assert "reader in alpha" in page and "agent in beta" in page
    assert "team admin" in page  # what the dashboard needs
    assert '<form method="post" action="/accounts/logout/"' in page
    assert 'href="/accounts/invitations/"' in page and 'href="/accounts/2fa/"' in page
    assert "Lunch" not in page and "Memories" not in page
    # the log-out button works (allauth's POST logout)
    client.post("/accounts/logout/")
    assert client.get("/admin/").status_code == 302


def test_a_person_with_no_role_is_told_so_and_sees_their_invitations(client, alpha, alice_principal):
    _user("nora")
    invite(alice_principal, "alpha", {"username": "nora", "role": "reader"})
    _log_in(client, "nora")
    response = client.get("/admin/memories/memory/", follow=True)
    assert response.status_code == 403
    page = response.content.decode()
    assert "no role in any namespace" in page
    assert "1 pending invitation" in page and 'href="/accounts/invitations/"' in page


@pytest.fixture
def alice_principal(alpha):
    return Principal.for_user(_user("alice", alpha, Role.ADMIN))


# No sign-up prompt while sign-up is closed --------------------------------------------
def test_the_login_page_offers_no_closed_sign_up(client, db):
    page = client.get("/accounts/login/").content.decode()
    assert "/accounts/signup/" not in page and "sign up" not in page.lower()


def test_the_login_page_offers_an_open_sign_up(client, db, settings):
    settings.MEMORYWEB_OPEN_SIGNUP = True
    assert "/accounts/signup/" in client.get("/accounts/login/").content.decode()


# A fresh login is a recent authentication --------------------------------------------
def test_turning_on_totp_right_after_login_asks_no_password(client, alpha):
    _user("rita", alpha)
    _log_in(client, "rita")
    response = client.get(TOTP_ACTIVATE)
    assert response.status_code == 200, response.get("Location")
    assert b'name="code"' in response.content


def test_required_totp_right_after_login_asks_no_password(client, alpha, settings):
    settings.MEMORYWEB_REQUIRE_MFA = True
    _user("carol", alpha, Role.ADMIN)
    _log_in(client, "carol")
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == TOTP_ACTIVATE
    assert response.status_code == 200 and b'name="code"' in response.content


def test_an_old_login_still_asks_for_the_password(client, alpha, settings):
    _user("rita", alpha)
    _log_in(client, "rita")
    session = client.session
    records = session[AUTHENTICATION_METHODS_SESSION_KEY]
    for record in records:
        record["at"] -= settings.ACCOUNT_REAUTHENTICATION_TIMEOUT + 1
    session[AUTHENTICATION_METHODS_SESSION_KEY] = records
    session.save()
    response = client.get(TOTP_ACTIVATE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")


def test_a_session_without_a_login_record_still_asks_for_the_password(client, alpha):
    client.force_login(_user("rita", alpha))
    response = client.get(TOTP_ACTIVATE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")


# Two-factor settings from the admin header -------------------------------------------
def test_the_admin_header_links_to_two_factor_settings(alice):
    page = alice.get("/admin/memories/memory/").content.decode()
    user_tools = page[page.index('id="user-tools"'):]
    user_tools = user_tools[:user_tools.index("</div>")]
    assert 'href="/accounts/2fa/"' in user_tools
