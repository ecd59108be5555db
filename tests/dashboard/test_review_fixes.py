"""Holes found in review, each closed and kept closed: MFA for every use of a session,
keys never deleted by hand, no content in the admin's own log, a grant form that lists
no other tenant, archived namespaces read-only, search within the chosen namespace,
erasure of a subject an edit took out, recall statistics kept when a flush fails."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core.errors import Conflict
from apps.core.roles import Role
from apps.memories import services
from apps.memories.models import Memory, RecallDay
from apps.memories.recall_stats import RecallStatsBuffer
from apps.privacy import erasure
from apps.tenancy.models import ApiKey, Namespace, SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_api_key, create_namespace
from tests.helpers.people import store

SYSTEM = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)


def test_required_mfa_also_refuses_the_session_on_the_rest_api(alice, settings, memories):
    settings.MEMORYWEB_REQUIRE_MFA = True
    refused = alice.post("/api/v1/namespaces/alpha/keys", {"role": "admin", "agent_id": "x"},
                         content_type="application/json")
    assert refused.status_code == 403
    assert "two-factor authentication is required" in refused.json()["error"]["message"]
    assert not ApiKey.objects.filter(agent_id="x").exists()
    assert alice.post("/admin/logout/").status_code == 200  # logging out stays possible
    user = get_user_model().objects.get(username="alice")
    TOTP.activate(user, generate_totp_secret())
    alice.force_login(user)
    assert alice.get("/api/v1/memories").status_code == 200


def test_keys_are_revoked_never_deleted_in_the_admin(alice, alpha):
    key, _ = create_api_key(role=Role.AGENT, agent_id="bot", namespace=alpha)
    assert alice.post(f"/admin/tenancy/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    alice.post("/admin/tenancy/apikey/", {"action": "delete_selected", "_selected_action": [key.pk],
                                          "post": "yes"})
    assert ApiKey.objects.filter(pk=key.pk).exists()
    alice.post("/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEntry.objects.filter(operation="key.revoke", actor="user:alice").exists()


@pytest.mark.django_db(transaction=True)
def test_memory_content_never_lands_in_the_admins_own_log(alice, root, alpha, memories):
    memory = memories["alpha"][1]
    alice.post(f"/admin/memories/memory/{memory.pk}/change/", {
        "content": "Lunch is at noon on Fridays for Jane Doe.", "kind": "preference",
        "tags": "[]", "metadata": "{}", "importance": 0.5, "confidence": 1.0}, follow=True)
    assert Memory.objects.get(pk=memory.pk).version == 2
    assert not LogEntry.objects.exists()
    # A row written before this rule (or by hand) goes with the erasure.
    LogEntry.objects.create(user=get_user_model().objects.get(username="root"),
                            content_type_id=__import__("django.contrib.contenttypes.models", fromlist=[
                                "ContentType"]).ContentType.objects.get_for_model(Memory).pk,
                            object_id=str(memory.pk), object_repr=memory.content[:60],
                            action_flag=2)
    erasure.forget_certified(SYSTEM, {"namespace": "alpha", "agent_id": "agent-2"})
    assert not LogEntry.objects.filter(object_id=str(memory.pk)).exists()
    assert b"Jane Doe" not in alice.get("/admin/").content  # no "Recent actions" entry


def test_the_grant_form_names_the_grantee_by_slug_and_lists_no_other_tenant(alice, alpha, beta):
    create_namespace("secret-project")
    form = alice.get("/admin/tenancy/sharinggrant/add/").content.decode()
    assert "secret-project" not in form and ">beta<" not in form
    unknown = alice.post("/admin/tenancy/sharinggrant/add/", {"grantor": alpha.pk, "grantee": "nope"})
    assert b"namespace &#x27;nope&#x27; does not exist." in unknown.content
    alice.post("/admin/tenancy/sharinggrant/add/", {"grantor": alpha.pk, "grantee": "beta"})
    grant = SharingGrant.objects.get()
    assert (grant.grantor, grant.grantee, grant.created_by) == (alpha, beta, "user:alice")


def test_an_archived_namespaces_memories_are_read_only_in_the_admin(alice, alpha, memories):
    Namespace.objects.filter(pk=alpha.pk).update(archived_at=timezone.now())
    memory = memories["alpha"][0]
    page = alice.get(f"/admin/memories/memory/{memory.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert alice.post(f"/admin/memories/memory/{memory.pk}/change/",
                      {"content": "changed", "kind": "fact"}).status_code == 403
    assert alice.post(f"/admin/memories/memory/{memory.pk}/delete/", {"post": "yes"}).status_code == 403
    with pytest.raises(Conflict):
        services.delete_many(SYSTEM, [memory.pk])
    assert Memory.objects.filter(pk=memory.pk).exists()


def test_search_keeps_every_match_of_the_chosen_namespace(root, alpha, beta, settings):
    settings.MEMORYWEB_DASHBOARD_SEARCH_LIMIT = 4
    for i in range(4):
        store(beta, f"deploy note beta {i}")
        store(alpha, f"deploy note alpha {i}")
    page = root.get("/admin/memories/memory/", {"q": "deploy", "namespace": alpha.pk}).content.decode()
    assert sum(f"deploy note alpha {i}" in page for i in range(4)) == 4


def test_erasure_of_a_subject_reaches_a_memory_an_edit_took_the_subject_out_of(alpha):
    memory = store(alpha, "Jane Doe is allergic to penicillin.", metadata={"subject_id": "jane"})
    services.update(SYSTEM, memory.pk, {"content": "A patient is allergic to penicillin.",
                                        "metadata": {}})
    request = erasure.forget_certified(SYSTEM, {"namespace": "alpha", "subject_id": "jane"})
    assert [item["id"] for item in request.erased] == [str(memory.pk)]
    assert not Memory.objects.filter(pk=memory.pk).exists()  # nothing left to revert


def test_a_failed_flush_keeps_the_recall_statistics(alpha, monkeypatch):
    buffer = RecallStatsBuffer(interval=3600)
    day = date(2026, 1, 2)
    buffer.record_recall(alpha.pk, day)
    buffer.record_recall(alpha.pk, day)

    def busy(recalls: Counter) -> None:
        raise OperationalError("database is locked")

    monkeypatch.setattr(RecallStatsBuffer, "_write_recalls", staticmethod(busy))
    with pytest.raises(OperationalError):
        buffer.flush()
    monkeypatch.undo()
    buffer.flush()
    assert RecallDay.objects.get(namespace=alpha, day=day).count == 2


def test_user_accounts_changed_in_the_admin_are_audited(root):
    root.post("/admin/auth/user/add/", {"username": "newbie", "password1": "a long pass 4711",
                                        "password2": "a long pass 4711", "usable_password": "true"})
    newbie = get_user_model().objects.get(username="newbie")
    created = AuditEntry.objects.get(operation="user.create")
    assert created.actor == "user:root" and created.summary == {"username": "newbie",
                                                                "fields": ["password", "username"]}
    root.post(f"/admin/auth/user/{newbie.pk}/delete/", {"post": "yes"})
    assert not get_user_model().objects.filter(username="newbie").exists()
    assert AuditEntry.objects.get(operation="user.delete").record_ids == [str(newbie.pk)]
