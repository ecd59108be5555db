"""More safety rails (issue 17, item 3): forgetting agents needs the agent id (or the
namespace slug) typed and looks dangerous; demoting a member asks first and never
demotes the last admin; four-eyes shows on the erasure page."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.core.roles import Role
from apps.memories.models import Memory
from apps.privacy import erasure
from apps.tenancy.members import members, set_role
from apps.tenancy.principal import Principal
from tests.helpers.people import person, store

LIST = "/admin/memories/memory/"


def _forget(client, chosen, **extra):
    return client.post(LIST, {"action": "forget_agents",
                              "_selected_action": [str(m.pk) for m in chosen], **extra})


# --- forget everything from these agents -------------------------------------------------
def test_forgetting_an_agent_needs_its_id_typed(root, alpha, memories):
    chosen = [memories["alpha"][0]]  # agent-1 in alpha: 1 memory (beta's agent-1 is another)
    page = _forget(root, chosen).content.decode()
    assert 'class="mw-danger"' in page and 'class="mw-danger-button"' in page
    assert "Forget 1 memory from 1 agent" in page
    assert "Type <strong>agent-1</strong> to confirm" in page and 'name="typed"' in page
    assert "Yes, apply" not in page  # not re-tag's plain button
    for typed in ("", "agent-2", "alpha", "Agent-1 "):
        refused = _forget(root, chosen, apply="1", typed=typed)
        assert refused.status_code == 400
        assert "Type agent-1 exactly to confirm; nothing was forgotten." in refused.content.decode()
    assert _forget(root, chosen, apply="1").status_code == 400  # no typed field at all
    assert Memory.objects.filter(agent_id="agent-1").count() == 2
    cancel = page.split('id="bulk-confirm-cancel"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert cancel == LIST and root.get(cancel).status_code == 200
    assert Memory.objects.filter(agent_id="agent-1").count() == 2
    done = root.post(LIST, {"action": "forget_agents", "apply": "1", "typed": " agent-1 ",
                            "_selected_action": [str(chosen[0].pk)]}, follow=True)
    assert b"1 memory forgotten from 1 agent." in done.content
    assert list(Memory.objects.filter(agent_id="agent-1").values_list(
        "namespace__slug", flat=True)) == ["beta"]


def test_several_agents_of_one_namespace_type_the_slug(root, alpha, memories):
    chosen = memories["alpha"]  # agent-1 and agent-2, both in alpha
    page = _forget(root, chosen).content.decode()
    assert "Type <strong>alpha</strong> to confirm" in page
    assert "Forget 2 memories from 2 agents" in page
    assert _forget(root, chosen, apply="1", typed="agent-1").status_code == 400
    assert Memory.objects.filter(namespace=alpha).count() == 2
    _forget(root, chosen, apply="1", typed="alpha")
    assert not Memory.objects.filter(namespace=alpha).exists()


def test_several_agents_in_several_namespaces_type_how_many(root, alpha, beta, memories):
    store(beta, "Beta's other agent keeps notes too.", agent_id="agent-9")
    chosen = [memories["alpha"][0], *Memory.objects.filter(agent_id="agent-9")]
    page = _forget(root, chosen).content.decode()
    assert "Type <strong>forget 2 agents</strong> to confirm" in page
    _forget(root, chosen, apply="1", typed="alpha")
    assert Memory.objects.count() == 4
    _forget(root, chosen, apply="1", typed="forget 2 agents")
    assert set(Memory.objects.values_list("agent_id", flat=True)) == {"agent-1", "agent-2"}


def test_re_tag_keeps_its_plain_confirmation(alice, memories):
    page = alice.post(LIST, {"action": "retag", "_selected_action": [
        str(m.pk) for m in memories["alpha"]]}).content.decode()
    assert "Yes, apply" in page and "mw-danger" not in page and 'name="typed"' not in page


# --- demoting a member --------------------------------------------------------------------
def _change(pk) -> str:
    return f"/admin/tenancy/namespace/{pk}/change/"


def _demote(pk, username: str, role: str) -> str:
    return f"/admin/tenancy/namespace/{pk}/members/{username}/role/{role}/"


def _set(client, pk, username: str, role: str):
    return client.post(_change(pk), {"_member": "1", "username": username, "role": role})


def test_demoting_a_member_asks_first(alice, alpha):
    set_role(alpha, get_user_model().objects.create_user("dora"), Role.ADMIN)
    asked = _set(alice, alpha.pk, "dora", "reader")
    assert asked.status_code == 302 and asked["Location"] == _demote(alpha.pk, "dora", "reader")
    assert members(alpha)["dora"] is Role.ADMIN  # the form alone changed nothing
    page = alice.get(asked["Location"]).content.decode()
    assert "Demote dora from admin to reader in alpha" in page
    assert "dora can no longer manage alpha" in page and 'id="mw-confirm-button"' in page
    assert 'class="mw-danger-button"' in page
    cancel = page.split('id="mw-confirm-cancel"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert cancel == _change(alpha.pk)
    alice.post(asked["Location"])  # not confirmed
    assert members(alpha)["dora"] is Role.ADMIN
    done = alice.post(asked["Location"], {"confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == _change(alpha.pk)
    assert members(alpha)["dora"] is Role.READER


def test_raising_a_role_needs_no_confirmation(alice, alpha):
    set_role(alpha, get_user_model().objects.create_user("dave"), Role.READER)
    assert _set(alice, alpha.pk, "dave", "agent")["Location"] == _change(alpha.pk)
    assert members(alpha)["dave"] is Role.AGENT
    # The demotion page for a raise (or the same role) only goes back, changing nothing.
    assert alice.post(_demote(alpha.pk, "dave", "admin"), {"confirm": "yes"})["Location"] == _change(alpha.pk)
    assert members(alpha)["dave"] is Role.AGENT


def test_the_last_admin_cannot_be_demoted(alice, alpha, root):
    asked = _set(alice, alpha.pk, "alice", "agent")
    assert asked["Location"] == _demote(alpha.pk, "alice", "agent")
    for client in (alice, root):
        page = client.get(_demote(alpha.pk, "alice", "agent")).content.decode()
        assert "alice is the last admin of alpha" in page and 'id="mw-confirm-button"' not in page
        refused = client.post(_demote(alpha.pk, "alice", "reader"), {"confirm": "yes"})
        assert refused.status_code == 409
    assert members(alpha) == {"alice": Role.ADMIN}


def test_an_admin_demoting_themself_lands_on_the_home_page(alice, alpha):
    set_role(alpha, get_user_model().objects.create_user("dora"), Role.ADMIN)
    page = alice.get(_demote(alpha.pk, "alice", "agent")).content.decode()
    assert "You can no longer manage alpha" in page
    done = alice.post(_demote(alpha.pk, "alice", "agent"), {"confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert members(alpha)["alice"] is Role.AGENT


def test_demotion_is_scoped(alice, bob, alpha, beta):
    set_role(beta, get_user_model().objects.create_user("erin"), Role.ADMIN)
    assert alice.get(_demote(beta.pk, "erin", "reader")).status_code == 404
    assert alice.post(_demote(beta.pk, "erin", "reader"), {"confirm": "yes"}).status_code == 404
    assert bob.get(_demote(beta.pk, "nobody", "reader")).status_code == 404
    assert bob.get(_demote(beta.pk, "erin", "system")).status_code == 404
    assert bob.get(_demote(beta.pk, "erin", "boss")).status_code == 404
    assert members(beta)["erin"] is Role.ADMIN


# --- four-eyes on the erasure page ----------------------------------------------------------
@pytest.fixture
def four_eyes(settings):
    settings.MEMORYWEB_ERASURE_FOUR_EYES = True


def test_four_eyes_is_shown_on_the_erasure_page(four_eyes, alice, alpha, memories):
    requested = erasure.create(Principal.for_user(get_user_model().objects.get(username="alice")),
                               {"namespace": "alpha", "agent_id": "agent-1", "reason": "GDPR"})
    url = f"/admin/privacy/erasurerequest/{requested.pk}/change/"
    mine = alice.get(url).content.decode()
    assert 'id="erasure-four-eyes"' in mine and "someone else approves it" in mine
    assert 'id="erasure-approve-button"' not in mine
    theirs = person("dora", alpha).get(url).content.decode()
    assert 'id="erasure-approve-button"' in theirs and 'id="erasure-four-eyes"' not in theirs
