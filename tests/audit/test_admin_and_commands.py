"""Writes made in the admin and by management commands are audited too, by their actor."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories.models import Memory
from apps.tenancy.models import ApiKey, Namespace, SharingGrant
from apps.tenancy.services import create_api_key
from tests.helpers.admin_forms import memory_form

ROOT = "user:root"


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    return client


def _newest(operation: str) -> AuditEntry:
    return AuditEntry.objects.filter(operation=operation).order_by("-seq").first()


def test_memory_edit_and_deletes_in_the_admin(admin_client, stored):
    memory = Memory.objects.get(pk=stored("Standup is at 9:00", tags=["a"])["id"])
    admin_client.post(f"/admin/memories/memory/{memory.pk}/change/",
                      memory_form(memory, content="Standup is at 9:30"))
    entry = _newest("memory.update")
    assert (entry.actor, entry.record_ids, entry.summary["fields"]) == (
        ROOT, [str(memory.pk)], ["content"])
    admin_client.post(f"/admin/memories/memory/{memory.pk}/delete/", {"post": "yes"})
    assert _newest("memory.delete").record_ids == [str(memory.pk)]
    ids = [stored(f"bulk {i}")["id"] for i in range(2)]
    admin_client.post("/admin/memories/memory/", {"action": "delete_selected",
                                                  "_selected_action": ids, "post": "yes"})
    entry = _newest("memory.delete")
    assert sorted(entry.record_ids) == sorted(ids) and entry.actor == ROOT
    assert entry.summary == {"count": 2}


def test_namespace_add_change_delete_in_the_admin(admin_client):
    form = {"slug": "omega", "name": "Omega", "near_duplicate_policy": "link",
            "near_duplicate_threshold": "", "recall_defaults": "{}", "audit_reads": "unknown"}
    assert admin_client.post("/admin/tenancy/namespace/add/", form).status_code == 302
    omega = Namespace.objects.get(slug="omega")
    assert _newest("namespace.create").actor == ROOT
    admin_client.post(f"/admin/tenancy/namespace/{omega.pk}/change/",
                      {**form, "name": "Omega Team", "audit_reads": "true"})
    entry = _newest("namespace.update")
    assert entry.actor == ROOT and entry.summary["fields"] == ["audit_reads", "name"]
    omega.refresh_from_db()
    assert omega.name == "Omega Team" and omega.audit_reads is True
    admin_client.post(f"/admin/tenancy/namespace/{omega.pk}/delete/", {"post": "yes"})
    entry = _newest("namespace.delete")
    assert entry.actor == ROOT and entry.namespace == "omega"


def test_key_add_expiry_revoke_rotate_in_the_admin(admin_client, alpha):
    admin_client.post("/admin/tenancy/apikey/add/", {
        "namespace": alpha.pk, "role": "agent", "agent_id": "via-admin", "name": "",
        "expires_at_0": "", "expires_at_1": ""})
    key = ApiKey.objects.get(agent_id="via-admin")
    entry = _newest("key.create")
    assert entry.actor == ROOT and entry.summary["prefix"] == key.prefix
    admin_client.post(f"/admin/tenancy/apikey/{key.pk}/change/", {
        "expires_at_0": "2099-01-01", "expires_at_1": "00:00:00"})
    assert _newest("key.expiry").record_ids == [str(key.pk)]
    admin_client.post("/admin/tenancy/apikey/", {"action": "rotate", "_selected_action": [key.pk]})
    assert _newest("key.rotate").actor == ROOT
    admin_client.post("/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert _newest("key.revoke").record_ids == [str(key.pk)]


def test_grant_add_and_revoke_in_the_admin(admin_client, alpha, beta):
    admin_client.post("/admin/tenancy/sharinggrant/add/", {
        "grantor": alpha.pk, "grantee": beta.slug, "tags": '["ops"]', "kinds": "[]",
        "created_after_0": "", "created_after_1": "", "created_before_0": "",
        "created_before_1": "", "expires_at_0": "", "expires_at_1": ""})
    grant = SharingGrant.objects.get()
    entry = _newest("grant.create")
    assert entry.actor == ROOT and entry.summary["grantee"] == "beta"
    admin_client.post("/admin/tenancy/sharinggrant/", {"action": "revoke",
                                                       "_selected_action": [grant.pk]})
    assert _newest("grant.revoke").record_ids == [str(grant.pk)]


def test_management_commands_are_audited(db, capsys):
    call_command("create_namespace", "cli-ns")
    assert _newest("namespace.create").actor == "system:manage.py"
    call_command("create_api_key", "--namespace", "cli-ns", "--role", "agent",
                 "--agent-id", "cli-agent")
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    entry = _newest("key.create")
    assert entry.actor == "system:manage.py" and entry.namespace == "cli-ns"
    assert secret not in str(entry.summary)
    call_command("add_member", "cli-ns", "carol", "--role", "admin")
    entry = _newest("member.set")
    assert entry.summary == {"username": "carol", "role": "admin"}


def test_the_audit_log_is_read_only_in_the_admin(admin_client, alpha):
    create_api_key(role=Role.AGENT, agent_id="x", namespace=alpha)
    entry = AuditEntry.objects.order_by("seq").first()
    assert admin_client.get("/admin/audit/auditentry/").status_code == 200
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
    assert admin_client.post(f"/admin/audit/auditentry/{entry.pk}/delete/",
                             {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
