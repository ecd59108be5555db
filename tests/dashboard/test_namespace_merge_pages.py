"""Issue 21 item 6, server side: the dashboard's namespace merges. A system admin lists the
merges with their state and progress, opens one's report (moved, deduplicated, members
left behind, who gains access) and reverts it through a confirmation page with the
source's slug typed (the service's revert, audited).

Who may: system admins only. A team admin gets a 403 page that says so and leads back
(and the Tools do not list the page for them); readers and agents get no dashboard.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.lifecycle import namespace_merge
from apps.lifecycle.models import NamespaceMerge
from apps.memories.models import Memory
from apps.tenancy.members import set_role
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from tests.helpers.people import person, store

#: Merges commit batch by batch with their progress (as in tests/lifecycle/test_namespace_merge.py).
pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/admin/dashboard/namespace-merges/"
SHARED = "The office closes at six on Fridays."


def _detail(merge_id) -> str:
    return f"{LIST}{merge_id}/"


def _revert(merge_id) -> str:
    return f"{LIST}{merge_id}/revert/"


def _system() -> Principal:
    return Principal(label="user:root", agent_id="", role=Role.SYSTEM)


@pytest.fixture
def merged(alpha, beta) -> NamespaceMerge:
    """alpha (three memories, one also in beta) merged into beta; alice manages alpha,
    bob beta."""
    for text in ("Alpha's deploy window is Tuesday at 14:00 UTC.",
                 "The staging database runs PostgreSQL 15 on host db-2.", SHARED):
        store(alpha, text)
    store(beta, SHARED, agent_id="beta-agent")
    users = get_user_model()
    set_role(alpha, users.objects.create_user("alice", "alice@example.org", "pw"), Role.ADMIN)
    set_role(beta, users.objects.create_user("bob", "bob@example.org", "pw"), Role.ADMIN)
    merge, _ = namespace_merge.merge_into(_system(), "alpha", {"target": "beta"})
    assert merge is not None and merge.state == "done" and merge.moved == 3
    return merge


def _client(username: str):
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


# --- who may open the pages ---------------------------------------------------------------
def test_team_admins_get_a_403_that_says_why_and_leads_back(merged):
    for username in ("alice", "bob"):  # bob administers the target: still not a system page
        client = _client(username)
        for url in (LIST, _detail(merged.pk), _revert(merged.pk)):
            response = client.get(url)
            page = response.content.decode()
            assert response.status_code == 403, url
            assert "Namespace merges are for system admins." in page
            assert 'href="/admin/" id="system-only-home"' in page
            assert "alpha → beta" not in page and str(merged.pk) not in page
        assert client.post(_revert(merged.pk), {"confirm": "yes", "typed": "alpha"}).status_code == 403
    merged.refresh_from_db()
    assert merged.state == "done"
    assert not AuditEntry.objects.filter(operation="namespace.merge_revert").exists()


def test_readers_and_agents_get_no_dashboard(alpha, beta, merged):
    for role in (Role.READER, Role.AGENT):
        client = person(f"member-{role.value}", beta, role=role)
        for url in (LIST, _detail(merged.pk), _revert(merged.pk)):
            response = client.get(url, follow=True)
            assert response.status_code == 403 and b"No dashboard access" in response.content
        assert client.post(_revert(merged.pk), {"confirm": "yes", "typed": "alpha"},
                           follow=True).status_code == 403
    merged.refresh_from_db()
    assert merged.state == "done"


def test_the_tools_list_namespace_merges_for_system_admins_only(merged):
    root = person("root", superuser=True)
    assert f'href="{LIST}"' in root.get("/admin/").content.decode()
    alice = _client("alice")
    assert f'href="{LIST}"' not in alice.get("/admin/").content.decode()
    assert f'href="{LIST}"' not in alice.get("/admin/dashboard/forgetting/").content.decode()


# --- the list and a merge's report --------------------------------------------------------
def test_the_list_shows_each_merge_with_state_counts_and_progress(merged):
    root = person("root", superuser=True)
    page = root.get(LIST).content.decode()
    rows = re.findall(r'<tr class="mw-merge" data-merge="([^"]+)">(.*?)</tr>', page, re.S)
    assert [merge_id for merge_id, _ in rows] == [str(merged.pk)]
    row = rows[0][1]
    assert f'href="{_detail(merged.pk)}"' in row and "alpha → beta" in row
    assert "Done" in row and "3 of 3 moved · 1 deduplicated" in row
    assert 'value="100"' in row and "100%" in row and "by user:root" in row
    assert merged.created_at.strftime("%Y-%m-%d") in row
    # The state filter: reverted ones are none yet; a bad state is said, not obeyed.
    assert 'class="mw-merge"' not in root.get(LIST, {"state": "reverted"}).content.decode()
    odd = root.get(LIST, {"state": "sideways"}, follow=True).content.decode()
    assert "?state= is one of queued, running, done, failed, reverting, reverted" in odd
    assert odd.count('class="mw-merge"') == 1


def test_the_empty_list_says_how_merges_start(db):
    page = person("root", superuser=True).get(LIST).content.decode()
    assert "No namespace was merged yet." in page and "manage.py merge_namespace" in page


def test_a_merge_page_shows_its_report(merged):
    root = person("root", superuser=True)
    response = root.get(_detail(merged.pk))
    page = response.content.decode()
    assert response.status_code == 200
    summary = re.search(r'id="merge-summary">(.*?)</p>', page, re.S).group(1)
    assert "Done:" in summary and "3 of 3 memories" in summary and "1 deduplicated" in summary
    assert "1 API key" not in page  # memories stored by people, no key to revoke
    assert re.search(r'id="merge-revoked">0 API keys and 0 sharing grants of alpha', page)
    left = re.search(r'id="merge-left-behind">(.*?)</dd>', page, re.S).group(1)
    assert "<li>alice</li>" in left and "invites" in left
    gains = re.search(r'id="merge-gains">(.*?)</dd>', page, re.S).group(1)
    assert "<li>bob</li>" in gains and "alice" not in gains
    assert re.search(r'id="merge-duplicates">1: memory whose text beta already held', page)
    assert f'href="{_revert(merged.pk)}"' in page and "http-equiv" not in page  # done: no reload
    assert root.get(_detail(uuid.uuid4())).status_code == 404
    assert root.get(f"{LIST}not-an-id/").status_code == 404


# --- revert ----------------------------------------------------------------------------
def test_revert_asks_first_with_the_slug_typed_then_moves_back_and_is_audited(merged, alpha):
    root = person("root", superuser=True)
    confirm = root.get(_revert(merged.pk))
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Revert the merge of alpha into beta: move 3 memories back into alpha and unarchive it." in page
    assert "Type <strong>alpha</strong> to confirm" in page and "Revert the merge into beta" in page
    for words in ("stay erased", "edits made there are kept", "stay revoked",
                  "lineage never crosses namespaces", "stores a copy"):
        assert words in page, words
    cancel = page.split('id="mw-confirm-cancel"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert cancel == _detail(merged.pk)
    for typed in ("", "beta", "Alpha"):
        refused = root.post(_revert(merged.pk), {"confirm": "yes", "typed": typed})
        assert refused.status_code == 400
        assert "Type alpha exactly to confirm; nothing was reverted." in refused.content.decode()
    assert root.post(_revert(merged.pk), {"typed": "alpha"}).status_code == 200  # no confirm
    merged.refresh_from_db()
    assert merged.state == "done" and Memory.objects.filter(namespace__slug="alpha").count() == 0

    done = root.post(_revert(merged.pk), {"confirm": "yes", "typed": " alpha "})
    assert done.status_code == 302 and done["Location"] == _detail(merged.pk)
    merged.refresh_from_db()
    assert merged.state == "reverted"
    assert Memory.objects.filter(namespace__slug="alpha").count() == 3
    assert Namespace.objects.get(slug="alpha").archived_at is None
    entry = AuditEntry.objects.get(operation="namespace.merge_revert")
    assert entry.actor == "user:root" and entry.summary == {"from": "beta", "memories": 3}
    page = root.get(done["Location"]).content.decode()
    assert ("Merge of alpha into beta reverted: 3 memories moved back into alpha, which is "
            "unarchived.") in page
    assert "3 memories moved back into alpha" in re.search(
        r'id="merge-reverted">(.*?)</dd>', page, re.S).group(1)
    assert 'id="merge-revert"' not in page
    # Once reverted it cannot be reverted again: said on the page, without a button.
    again = root.get(_revert(merged.pk))
    assert again.status_code == 409 and 'id="mw-confirm-button"' not in again.content.decode()
    assert root.post(_revert(merged.pk), {"confirm": "yes", "typed": "alpha"}).status_code == 409
    assert AuditEntry.objects.filter(operation="namespace.merge_revert").count() == 1


def test_a_running_merge_reloads_and_offers_no_revert(alpha, beta):
    store(alpha, "A memory waiting to move.")
    merge = namespace_merge.start(_system(), "alpha", "beta")  # queued, not run
    root = person("root", superuser=True)
    page = root.get(_detail(merge.pk)).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in page and 'id="merge-revert"' not in page
    assert "0 of 1 memory" in page
    refused = root.get(_revert(merge.pk))
    assert refused.status_code == 409 and "Only a finished or failed merge" in refused.content.decode()


def test_every_post_needs_its_csrf_token(merged):
    users = get_user_model()
    users.objects.create_superuser("carla", "carla@example.org", "pw")
    strict = _client("carla")
    strict.handler.enforce_csrf_checks = True
    assert strict.get(f"{_revert(merged.pk)}?confirm=yes&typed=alpha").status_code == 200
    assert strict.post(_revert(merged.pk), {"confirm": "yes", "typed": "alpha"}).status_code == 403
    merged.refresh_from_db()
    assert merged.state == "done"


def test_a_failed_merge_shows_its_error_and_may_be_reverted(merged):
    NamespaceMerge.objects.filter(pk=merged.pk).update(state="failed",
                                                       error="ConnectionError: chroma is down")
    root = person("root", superuser=True)
    page = root.get(_detail(merged.pk)).content.decode()
    assert "The last attempt failed: ConnectionError: chroma is down" in page
    assert f"--resume {merged.pk}" in page and 'id="merge-revert"' in page
    listed = root.get(LIST, {"state": "failed"}).content.decode()
    assert listed.count('class="mw-merge"') == 1 and "(error)" in listed
    assert root.get(_revert(merged.pk)).status_code == 200
