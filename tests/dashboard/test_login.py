"""People log in through django-allauth; the dashboard (the admin) uses the same login,
sign-up is closed by default, and TOTP can be required for dashboard users."""

from __future__ import annotations

import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.contrib.auth import get_user_model
from django.test import Client

from apps.core.roles import Role
from apps.tenancy.members import set_role


def _code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


@pytest.fixture
def carol(alpha):
    """A team admin of alpha with a password, not logged in."""
    user = get_user_model().objects.create_user("carol", "carol@example.org", "correct horse")
    set_role(alpha, user, Role.ADMIN)
    return user


def test_the_admin_sends_anonymous_people_to_the_allauth_login(client, db):
    response = client.get("/admin/memories/memory/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    response = client.get(response["Location"])
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Fmemories%2Fmemory%2F"


def test_the_admin_login_ignores_a_next_url_on_another_host(client, db):
    response = client.get("/admin/login/?next=https://evil.example/steal")
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"


@pytest.mark.parametrize("login", ["carol", "carol@example.org"])
def test_username_or_email_and_password_open_the_dashboard(client, carol, login):
    response = client.post("/accounts/login/?next=/admin/",
                           {"login": login, "password": "correct horse"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_wrong_password_does_not_log_in(client, carol):
    response = client.post("/accounts/login/", {"login": "carol", "password": "wrong"})
    assert response.status_code == 200
    assert b"not correct" in response.content
    assert client.get("/admin/").status_code == 302


def test_sign_up_is_closed_by_default(client, db):
    response = client.post("/accounts/signup/", {
        "email": "eve@example.org", "username": "eve", "password1": "a long passphrase 42",
        "password2": "a long passphrase 42"})
    assert b"Sign Up Closed" in response.content
    assert not get_user_model().objects.filter(username="eve").exists()


def test_sign_up_opens_with_the_setting(client, db, settings):
    settings.MEMORYWEB_OPEN_SIGNUP = True
    client.post("/accounts/signup/", {
        "email": "eve@example.org", "username": "eve", "password1": "a long passphrase 42",
        "password2": "a long passphrase 42"})
    eve = get_user_model().objects.get(username="eve")
    assert not eve.is_superuser  # an account grants no namespace
    assert Client().get("/admin/").status_code == 302


def test_a_member_below_team_admin_gets_no_dashboard(client, alpha):
    user = get_user_model().objects.create_user("rita", password="pw")
    set_role(alpha, user, Role.READER)
    client.force_login(user)
    assert client.get("/admin/", follow=True).status_code == 403


def test_required_mfa_sends_dashboard_users_to_set_up_totp(client, carol, settings):
    settings.MEMORYWEB_REQUIRE_MFA = True
    client.force_login(carol)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/"
    TOTP.activate(carol, generate_totp_secret())
    assert client.get("/admin/").status_code == 200


def test_with_totp_the_login_asks_for_the_code(client, carol, settings):
    settings.MEMORYWEB_REQUIRE_MFA = True
    secret = generate_totp_secret()
    TOTP.activate(carol, secret)
    response = client.post("/accounts/login/?next=/admin/",
                           {"login": "carol", "password": "correct horse"})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/admin/").status_code == 302  # not logged in before the code
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200 and client.get("/admin/").status_code == 302
    response = client.post("/accounts/2fa/authenticate/", {"code": _code(secret)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert Authenticator.objects.filter(user=carol).count() == 1
