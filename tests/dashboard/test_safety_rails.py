"""Safety rails on the dashboard's irreversible actions (issue 17, item 3).

Revert, erasure approve / reject / execute and member removal each show a confirmation
page naming the effect; a GET and Cancel change nothing; only the confirming POST acts.
Executing needs the namespace slug typed; a rejection needs a reason; the last team
admin of a namespace cannot be removed."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.core.roles import Role
from apps.memories import services
from apps.privacy import erasure
from apps.privacy.models import ErasureRequest
from apps.tenancy.members import members, set_role
from apps.tenancy.principal import Principal
from tests.helpers.people import person


def _user(username: str):
    return get_user_model().objects.get(username=username)


def _cancel_url(page: str) -> str:
    return page.split('id="mw-confirm-cancel"')[0].rsplit('href="', 1)[1].split('"')[0]


# --- memory revert ----------------------------------------------------------------------
def test_revert_asks_first_and_cancel_changes_nothing(alice, alpha, memories):
    memory = memories["alpha"][0]
    services.update(Principal.for_user(_user("alice")), memory.pk,
                    {"content": "The deploy key rotates every thirty days."})
    url = f"/admin/memories/memory/{memory.pk}/revert/1/?_changelist_filters=q%3Ddeploy"
    page = alice.get(url)
    text = page.content.decode()
    assert page.status_code == 200 and 'id="mw-confirm-button"' in text
    assert "Revert memory “The deploy key rotates every thirty days.” in alpha to version 1" in text
    assert "mw-danger-button" in text and "csrfmiddlewaretoken" in text
    cancel = _cancel_url(text)
    assert cancel.startswith(f"/admin/memories/memory/{memory.pk}/change/?_changelist_filters=")
    alice.get(cancel)
    alice.post(url)  # the old one-click POST (no confirm=yes): the page again, no change
    memory.refresh_from_db()
    assert memory.version == 2 and memory.content.endswith("thirty days.")
    done = alice.post(url, {"confirm": "yes"})
    assert done.status_code == 302 and "_changelist_filters=q%3Ddeploy" in done["Location"]
    memory.refresh_from_db()
    assert memory.version == 3 and memory.content.endswith("ninety days.")


def test_the_change_page_links_to_the_confirmation(alice, alpha, memories):
    memory = memories["alpha"][0]
    services.update(Principal.for_user(_user("alice")), memory.pk, {"content": "Changed."})
    page = alice.get(f"/admin/memories/memory/{memory.pk}/change/").content.decode()
    assert f'href="/admin/memories/memory/{memory.pk}/revert/1/"' in page
    assert 'form="revert-1"' not in page  # no one-click form any more


# --- erasure ----------------------------------------------------------------------------
@pytest.fixture
def requested(alice, alpha, memories):
    return erasure.create(Principal.for_user(_user("alice")),
                          {"namespace": "alpha", "agent_id": "agent-1", "reason": "GDPR"})


def _step(pk, step: str) -> str:
    return f"/admin/privacy/erasurerequest/{pk}/step/{step}/"


def test_approve_asks_first(alpha, requested):
    dora = person("dora", alpha)  # four-eyes: someone other than the requester approves
    page = dora.get(_step(requested.pk, "approve")).content.decode()
    assert "Approve erasing 1 memory in alpha" in page and 'id="mw-confirm-button"' in page
    assert _cancel_url(page) == f"/admin/privacy/erasurerequest/{requested.pk}/change/"
    dora.post(_step(requested.pk, "approve"))  # unconfirmed
    assert ErasureRequest.objects.get(pk=requested.pk).state == "requested"
    assert dora.post(_step(requested.pk, "approve"), {"confirm": "yes"}).status_code == 302
    assert ErasureRequest.objects.get(pk=requested.pk).state == "approved"


def test_reject_needs_a_reason_on_its_form(alice, requested):
    page = alice.get(_step(requested.pk, "reject")).content.decode()
    assert "Reject the request to erase 1 memory in alpha?" in page
    assert '<textarea name="reason"' in page and "required" in page.split('name="reason"')[1][:80]
    refused = alice.post(_step(requested.pk, "reject"), {"confirm": "yes", "reason": "  "})
    assert refused.status_code == 400
    assert 'id="mw-confirm-error"' in refused.content.decode()
    assert "a rejection needs a reason" in refused.content.decode()
    assert ErasureRequest.objects.get(pk=requested.pk).state == "requested"
    alice.post(_step(requested.pk, "reject"), {"confirm": "yes", "reason": "not the subject"})
    rejected = ErasureRequest.objects.get(pk=requested.pk)
    assert (rejected.state, rejected.rejection_reason) == ("rejected", "not the subject")


def test_execute_needs_the_namespace_typed(alpha, requested, root, memories):
    person("dora", alpha)
    erasure.approve(Principal.for_user(_user("dora")), requested.pk)
    url = _step(requested.pk, "execute")
    page = root.get(url).content.decode()
    assert "Erase 1 memory in alpha" in page and "This cannot be undone." in page
    assert 'name="typed"' in page and "Type <strong>alpha</strong> to confirm" in page
    for typed in ("", "alph", "beta"):
        refused = root.post(url, {"confirm": "yes", "typed": typed})
        assert refused.status_code == 400 and b"Type the namespace slug alpha" in refused.content
    assert ErasureRequest.objects.get(pk=requested.pk).state == "approved"
    assert services.get(Principal.for_user(_user("root")), memories["alpha"][0].pk)
    done = root.post(url, {"confirm": "yes", "typed": "alpha"}, follow=True)
    assert b"1 memory erased in alpha." in done.content
    assert ErasureRequest.objects.get(pk=requested.pk).state == "executed"


# --- members ----------------------------------------------------------------------------
def _remove(pk, username: str) -> str:
    return f"/admin/tenancy/namespace/{pk}/members/{username}/remove/"


def test_member_removal_asks_first(alice, alpha):
    set_role(alpha, get_user_model().objects.create_user("dave"), Role.READER)
    page = alice.get(f"/admin/tenancy/namespace/{alpha.pk}/change/").content.decode()
    assert f'href="{_remove(alpha.pk, "dave")}"' in page
    confirm = alice.get(_remove(alpha.pk, "dave")).content.decode()
    assert "Remove dave (reader) from alpha" in confirm and 'id="mw-confirm-button"' in confirm
    alice.post(f"/admin/tenancy/namespace/{alpha.pk}/change/",  # the old one-click form
               {"_member": "1", "username": "dave", "role": "remove"})
    alice.post(_remove(alpha.pk, "dave"))  # unconfirmed
    assert members(alpha) == {"alice": Role.ADMIN, "dave": Role.READER}
    assert alice.post(_remove(alpha.pk, "dave"), {"confirm": "yes"}).status_code == 302
    assert members(alpha) == {"alice": Role.ADMIN}


def test_the_last_admin_cannot_be_removed_in_the_dashboard(alice, alpha, root):
    for client in (alice, root):
        page = client.get(_remove(alpha.pk, "alice")).content.decode()
        assert "alice is the last admin of alpha" in page and 'id="mw-confirm-button"' not in page
        refused = client.post(_remove(alpha.pk, "alice"), {"confirm": "yes"})
        assert refused.status_code == 409
    assert members(alpha) == {"alice": Role.ADMIN}


def test_an_admin_may_leave_when_another_admin_stays(alice, alpha):
    set_role(alpha, get_user_model().objects.create_user("dora"), Role.ADMIN)
    page = alice.get(_remove(alpha.pk, "alice")).content.decode()
    assert "You will lose access to this namespace at once." in page
    done = alice.post(_remove(alpha.pk, "alice"), {"confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert members(alpha) == {"dora": Role.ADMIN}


def test_member_removal_is_scoped(alice, beta, bob):
    assert alice.get(_remove(beta.pk, "bob")).status_code == 404
    assert alice.post(_remove(beta.pk, "bob"), {"confirm": "yes"}).status_code == 404
    assert members(beta) == {"bob": Role.ADMIN}
