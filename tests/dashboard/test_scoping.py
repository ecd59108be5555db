"""A team admin of alpha sees and changes alpha's rows only, on every dashboard page;
a system admin sees everything. Scope comes from the same ``for_principal`` querysets
as the REST API."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.privacy import erasure
from apps.tenancy import grants
from apps.tenancy.members import members
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_api_key, create_namespace

BETA_WORDS = b"lives in the vault"


def _system() -> Principal:
    return Principal(label="system:test", agent_id="root", role=Role.SYSTEM)


def test_memory_list_shows_only_the_admins_namespaces(alice, root, memories):
    page = alice.get("/admin/memories/memory/").content
    assert b"ninety days" in page and b"noon on Fridays" in page
    assert BETA_WORDS not in page
    everything = root.get("/admin/memories/memory/").content
    assert b"ninety days" in everything and BETA_WORDS in everything


def test_filter_choices_never_name_another_namespace(alice, memories, beta):
    from tests.helpers.people import store

    store(beta, "Only beta knows this.", agent_id="beta-bot", tags=["beta-only-tag"])
    page = alice.get("/admin/memories/memory/").content.decode()
    assert "?namespace=" in page and "?tag=ops" in page and "?agent=agent-1" in page
    assert "beta" not in page.lower()
    assert "beta-bot" not in page and "beta-only-tag" not in page


def test_a_memory_of_another_namespace_cannot_be_opened(alice, memories):
    other = memories["beta"][0]
    for url in (f"/admin/memories/memory/{other.pk}/change/",
                f"/admin/memories/memory/{other.pk}/delete/",
                f"/admin/memories/memory/{other.pk}/history/"):
        response = alice.get(url, follow=True)
        assert BETA_WORDS not in response.content, url
        assert b"doesn" in response.content or response.status_code == 404  # "doesn't exist"


def test_another_namespaces_memory_cannot_be_changed_reverted_or_deleted(alice, memories):
    other = memories["beta"][0]
    alice.post(f"/admin/memories/memory/{other.pk}/change/", {"content": "hijacked", "kind": "fact"})
    assert alice.post(f"/admin/memories/memory/{other.pk}/revert/1/").status_code == 404
    alice.post("/admin/memories/memory/", {"action": "delete_selected", "_selected_action": [other.pk],
                                           "post": "yes"})
    other.refresh_from_db()
    assert other.content == "Beta's deploy secret lives in the vault." and other.version == 1


def test_search_finds_only_the_admins_memories(alice, root, memories):
    assert BETA_WORDS not in alice.get("/admin/memories/memory/", {"q": "vault deploy"}).content
    assert b"ninety" in alice.get("/admin/memories/memory/", {"q": "vault deploy", "match": "any"}).content
    assert BETA_WORDS in root.get("/admin/memories/memory/", {"q": "vault"}).content


def test_playground_overview_and_live_feed_refuse_another_namespace(alice, memories):
    page = alice.post("/admin/dashboard/playground/", {"namespace": "beta", "query": "vault"})
    assert page.status_code == 200 and BETA_WORDS not in page.content
    assert b"Select a valid choice" in page.content
    assert b'value="beta"' not in alice.get("/admin/dashboard/playground/").content
    assert alice.get("/admin/dashboard/overview/", {"namespace": "beta"}).status_code == 404
    assert alice.get("/admin/dashboard/live/", {"namespace": "beta"}).status_code == 404
    assert b'data-namespace="alpha"' in alice.get("/admin/dashboard/live/").content


def test_namespaces_keys_and_grants_are_scoped(alice, alpha, beta):
    create_api_key(role=Role.AGENT, agent_id="alpha-bot", namespace=alpha)
    create_api_key(role=Role.AGENT, agent_id="beta-bot", namespace=beta)
    create_api_key(role=Role.SYSTEM, agent_id="root-bot", namespace=None)
    gamma = create_namespace("gamma")
    grants.create_grant(_system(), "beta", {"grantee": "gamma"})
    to_alpha = grants.create_grant(_system(), "beta", {"grantee": "alpha"})
    assert b"beta" not in alice.get("/admin/tenancy/namespace/").content
    opened = alice.get(f"/admin/tenancy/namespace/{beta.pk}/change/", follow=True)
    assert opened.request["PATH_INFO"] == "/admin/"
    keys = alice.get("/admin/tenancy/apikey/").content
    assert b"alpha-bot" in keys and b"beta-bot" not in keys and b"root-bot" not in keys
    grant_page = alice.get("/admin/tenancy/sharinggrant/").content.decode()
    assert f"/admin/tenancy/sharinggrant/{to_alpha.pk}/change/" in grant_page  # shared with alpha
    assert "gamma" not in grant_page
    # ...but only the grantor's admins may revoke it.
    alice.post("/admin/tenancy/sharinggrant/", {"action": "revoke", "_selected_action": [to_alpha.pk]})
    to_alpha.refresh_from_db()
    assert to_alpha.revoked_at is None
    assert gamma.pk


def test_a_team_admin_creates_keys_only_in_their_namespaces(alice, alpha, beta):
    form = alice.get("/admin/tenancy/apikey/add/").content.decode()
    assert f'value="{alpha.pk}"' in form and f'value="{beta.pk}"' not in form
    assert 'value="system"' not in form
    base = {"role": "agent", "agent_id": "new-bot", "name": "", "expires_at_0": "", "expires_at_1": ""}
    refused = alice.post("/admin/tenancy/apikey/add/", {**base, "namespace": beta.pk})
    assert refused.status_code == 200 and not ApiKey.objects.filter(agent_id="new-bot").exists()
    refused = alice.post("/admin/tenancy/apikey/add/", {**base, "namespace": alpha.pk, "role": "system"})
    assert not ApiKey.objects.filter(agent_id="new-bot").exists()
    created = alice.post("/admin/tenancy/apikey/add/", {**base, "namespace": alpha.pk}, follow=True)
    key = ApiKey.objects.get(agent_id="new-bot")
    assert key.namespace == alpha and key.role == "agent"
    assert b"Copy the new key now" in created.content
    assert AuditEntry.objects.filter(operation="key.create", actor="user:alice").exists()


def test_a_team_admin_cannot_add_or_delete_namespaces(alice, alpha):
    assert alice.get("/admin/tenancy/namespace/add/").status_code == 403
    assert alice.post(f"/admin/tenancy/namespace/{alpha.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Namespace.objects.filter(pk=alpha.pk).exists()


def test_a_team_admin_manages_members_of_their_namespace(alice, alpha, beta):
    # Issue 16 item 4: a non-member is invited and joins by accepting; then the role
    # changes directly.
    from apps.tenancy import invitations
    from apps.tenancy.models import Invitation

    dave = get_user_model().objects.create_user("dave", password="pw")
    response = alice.post(f"/admin/tenancy/namespace/{alpha.pk}/change/",
                          {"_member": "1", "username": "dave", "role": "agent"}, follow=True)
    assert b"Member dave: invited as agent" in response.content
    assert members(alpha) == {"alice": Role.ADMIN}
    invitations.accept(Principal.for_user(dave), Invitation.objects.get(invitee="dave").pk)
    assert members(alpha) == {"alice": Role.ADMIN, "dave": Role.AGENT}
    response = alice.post(f"/admin/tenancy/namespace/{alpha.pk}/change/",
                          {"_member": "1", "username": "dave", "role": "reader"}, follow=True)
    assert b"Demote dave from agent to reader in alpha" in response.content  # a lower role asks
    response = alice.post(f"/admin/tenancy/namespace/{alpha.pk}/members/dave/role/reader/",
                          {"confirm": "yes"}, follow=True)
    assert b"Member dave: now reader." in response.content
    assert members(alpha) == {"alice": Role.ADMIN, "dave": Role.READER}
    assert AuditEntry.objects.filter(operation="member.set", actor="user:alice").exists()
    alice.post(f"/admin/tenancy/namespace/{beta.pk}/change/",
               {"_member": "1", "username": "dave", "role": "admin"})
    assert members(beta) == {}
    alice.post(f"/admin/tenancy/namespace/{alpha.pk}/members/dave/remove/", {"confirm": "yes"})
    assert members(alpha) == {"alice": Role.ADMIN}


def test_erasure_requests_and_audit_entries_are_scoped(alice, memories, alpha, beta):
    mine = erasure.create(_system(), {"namespace": "alpha", "agent_id": "agent-2"})
    theirs = erasure.create(_system(), {"namespace": "beta", "agent_id": "agent-1"})
    page = alice.get("/admin/privacy/erasurerequest/").content.decode()
    assert str(mine.pk) in page and str(theirs.pk) not in page
    opened = alice.get(f"/admin/privacy/erasurerequest/{theirs.pk}/change/", follow=True)
    assert opened.request["PATH_INFO"] == "/admin/" and b"doesn" in opened.content  # "doesn't exist"
    assert alice.get(f"/admin/privacy/erasurerequest/{theirs.pk}/certificate.json").status_code == 404
    assert alice.post(f"/admin/privacy/erasurerequest/{theirs.pk}/step/approve/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == "requested"
    beta_seqs = set(AuditEntry.objects.filter(namespace_id=beta.pk).values_list("seq", flat=True))
    alpha_seqs = set(AuditEntry.objects.filter(namespace_id=alpha.pk).values_list("seq", flat=True))
    audit = alice.get("/admin/audit/auditentry/").content.decode()
    for seq in alpha_seqs:
        assert f"/admin/audit/auditentry/{seq}/change/" in audit
    for seq in beta_seqs:
        assert f"/admin/audit/auditentry/{seq}/change/" not in audit
        opened = alice.get(f"/admin/audit/auditentry/{seq}/change/", follow=True)
        assert opened.request["PATH_INFO"] == "/admin/"


@pytest.mark.parametrize("url", ["/admin/memories/indexoutbox/", "/admin/auth/user/",
                                 "/admin/mfa/authenticator/"])
def test_system_tables_are_for_system_admins(alice, root, url):
    assert alice.get(url).status_code == 403
    assert root.get(url).status_code == 200
