"""Keys and grants in the admin go through their services; secrets never reach the logs."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.views.debug import SafeExceptionReporterFilter
from rest_framework.test import APIClient

from apps.core.roles import Role
from apps.tenancy.models import ApiKey, SharingGrant
from apps.tenancy.services import authenticate_key, create_api_key

GRANT_FORM = {"tags": "[]", "kinds": "[]", "created_after_0": "", "created_after_1": "",
              "created_before_0": "", "created_before_1": "", "expires_at_0": "",
              "expires_at_1": ""}


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    return client


def test_grant_created_in_the_admin_goes_through_the_service(admin_client, alpha, beta):
    response = admin_client.post("/admin/tenancy/sharinggrant/add/", {
        **GRANT_FORM, "grantor": alpha.pk, "grantee": beta.slug, "tags": '["ops"]',
        "kinds": '["fact"]'})
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = SharingGrant.objects.get()
    assert (grant.grantor, grant.grantee, grant.tags, grant.kinds) == (alpha, beta, ["ops"], ["fact"])
    assert grant.created_by == "user:root"


@pytest.mark.parametrize(("changes", "message"), [
    ({"grantee": "self"}, "cannot share with itself"),
    ({"kinds": '["gossip"]'}, "gossip"),
    ({"expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"}, "must be in the future"),
])
def test_bad_grant_in_the_admin_is_a_form_error(admin_client, alpha, beta, changes, message):
    data = {**GRANT_FORM, "grantor": alpha.pk, "grantee": beta.slug, **changes}
    if data["grantee"] == "self":
        data["grantee"] = alpha.slug
    response = admin_client.post("/admin/tenancy/sharinggrant/add/", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SharingGrant.objects.exists()


def test_grant_revoke_action_and_no_delete(admin_client, alpha, beta):
    grant = SharingGrant.objects.create(grantor=alpha, grantee=beta)
    admin_client.post("/admin/tenancy/sharinggrant/", {"action": "revoke",
                                                       "_selected_action": [grant.pk]})
    grant.refresh_from_db()
    assert grant.status == "revoked"
    assert admin_client.get(f"/admin/tenancy/sharinggrant/{grant.pk}/delete/").status_code == 403


def test_key_revoke_action_revokes_namespace_and_system_keys(admin_client, alpha):
    team_key, team_raw = create_api_key(role=Role.AGENT, agent_id="a", namespace=alpha)
    system_key, system_raw = create_api_key(role=Role.SYSTEM, agent_id="root")
    response = admin_client.post("/admin/tenancy/apikey/", {
        "action": "revoke", "_selected_action": [team_key.pk, system_key.pk]}, follow=True)
    assert "2 keys revoked" in response.content.decode()
    assert authenticate_key(team_raw) is None and authenticate_key(system_raw) is None


def test_secrets_never_reach_the_logs(admin_client, team_admin, alpha, caplog):
    """Create and rotate through REST and the admin with every logger at DEBUG."""
    for name in (None, "django.request", "django.server", "apps"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = [team_admin.post("/api/v1/namespaces/alpha/keys",
                               {"role": "agent", "agent_id": "logged"}).json()["key"]]
    created = ApiKey.objects.get(agent_id="logged")
    secrets.append(team_admin.post(f"/api/v1/namespaces/alpha/keys/{created.pk}/rotate",
                                   {}).json()["key"])
    admin_client.post("/admin/tenancy/apikey/add/", {
        "namespace": alpha.pk, "role": "reader", "agent_id": "via-admin", "name": "",
        "expires_at_0": "", "expires_at_1": "", "revoked_at_0": "", "revoked_at_1": ""})
    via_admin = ApiKey.objects.get(agent_id="via-admin")
    messages = admin_client.get("/admin/tenancy/apikey/").content.decode()
    secrets += [word.rstrip("<") for word in messages.split()
                if word.startswith(via_admin.prefix)][:1]
    assert len(secrets) == 3
    # Requests that get logged (django.request warns on 4xx): a revoked secret, a 404.
    revoked = team_admin.delete(f"/api/v1/namespaces/alpha/keys/{created.pk}")
    assert revoked.status_code == 204
    stale = APIClient()
    stale.credentials(HTTP_AUTHORIZATION=f"Bearer {secrets[0]}")
    assert stale.get("/api/v1/memories").status_code == 401
    assert team_admin.get("/api/v1/memories/not-a-memory").status_code == 404
    assert caplog.records, "nothing was logged: the check below would be empty"
    text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    for secret in secrets:
        assert secret not in text
    for key in ApiKey.objects.all():
        assert key.key_hash not in text


def test_error_reports_cleanse_the_authorization_header(rf):
    """Django's error reports (500 mails, debug pages) hide the Bearer secret."""
    request = rf.get("/api/v1/memories", HTTP_AUTHORIZATION="Bearer mw_live_secretsecret")
    meta = SafeExceptionReporterFilter().get_safe_request_meta(request)
    assert "mw_live_secretsecret" not in str(meta)
    assert meta["HTTP_AUTHORIZATION"] == SafeExceptionReporterFilter.cleansed_substitute


def _team_admin_session(username: str, namespace):
    """A logged-in team admin of ``namespace`` (the dashboard's own kind of user)."""
    from django.test import Client

    from apps.tenancy.members import set_role

    user = get_user_model().objects.create_user(username, f"{username}@example.org", "pw")
    set_role(namespace, user, Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


KEY_CHANGE = {"expires_at_0": "", "expires_at_1": ""}


def test_the_admin_cannot_revive_a_rotated_key(admin_client, alpha):
    """Issue 16 item 3 through the admin's change form: clearing a rotated key's expiry is
    a form error, and the old secret stays dead."""
    from apps.tenancy.keys import rotate_key
    from apps.tenancy.principal import Principal

    key, raw = create_api_key(role=Role.AGENT, agent_id="bot", namespace=alpha)
    root = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
    new, _ = rotate_key(root, "alpha", key.pk, {"grace_seconds": 0})
    before = ApiKey.objects.get(pk=key.pk).expires_at
    response = admin_client.post(f"/admin/tenancy/apikey/{key.pk}/change/", KEY_CHANGE)
    page = response.content.decode()
    assert response.status_code == 200 and "rotated" in page and new.prefix in page
    assert ApiKey.objects.get(pk=key.pk).expires_at == before
    assert authenticate_key(raw) is None


def test_the_admin_cannot_give_a_revoked_key_an_expiry(admin_client, alpha):
    key, raw = create_api_key(role=Role.AGENT, agent_id="bot", namespace=alpha)
    admin_client.post("/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    response = admin_client.post(f"/admin/tenancy/apikey/{key.pk}/change/", {
        "expires_at_0": "2099-01-01", "expires_at_1": "00:00:00"})
    assert response.status_code == 200 and "revoked" in response.content.decode()
    assert ApiKey.objects.get(pk=key.pk).expires_at is None and authenticate_key(raw) is None


def test_the_grantee_does_not_see_who_at_the_grantor_made_or_revoked_a_grant(alpha, beta):
    """Issue 16 item 8: REST hides a received grant's created_by; the admin hides it too
    (list and change page), and the revocation's details, for the grantee side only."""
    import datetime as dt

    grantor = _team_admin_session("alice", alpha)
    grantee = _team_admin_session("bob", beta)
    live = SharingGrant.objects.create(grantor=alpha, grantee=beta, created_by="key:mw_live_SECRETPFX1")
    gone = SharingGrant.objects.create(grantor=alpha, grantee=beta, created_by="key:mw_live_SECRETPFX2",
                                       revoked_at=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC))
    revoked_shown = "Jan. 2, 2026"  # how the admin renders that moment
    listing = grantee.get("/admin/tenancy/sharinggrant/").content.decode()
    changes = [grantee.get(f"/admin/tenancy/sharinggrant/{g.pk}/change/").content.decode()
               for g in (live, gone)]
    assert f"/admin/tenancy/sharinggrant/{live.pk}/change/" in listing  # still listed
    for page in (listing, *changes):
        assert "SECRETPFX" not in page and revoked_shown not in page
    for page in changes:
        assert "Created by" not in page and "Revoked at" not in page
    # The grantor's own admins still see both, on the list and the change page.
    own = grantor.get(f"/admin/tenancy/sharinggrant/{gone.pk}/change/").content.decode()
    assert "mw_live_SECRETPFX2" in own and "Revoked at" in own and revoked_shown in own
    own_list = grantor.get("/admin/tenancy/sharinggrant/").content.decode()
    assert "mw_live_SECRETPFX1" in own_list and revoked_shown in own_list
