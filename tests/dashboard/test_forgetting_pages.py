"""Issue 21 item 6, server side: the dashboard's forgetting review list. A team admin sees
their namespace's weak memories with the strength part by part, keeps some (dismiss,
audited) and forgets others through a confirmation page that opens a certified erasure
request (the service's, audited); nothing is deleted on the page.

Who may do what: readers and agents get no dashboard; another tenant's namespace is a 404
on every page; a GET never writes and every POST needs its CSRF token. The browser
journey is tests/dashboard/browser/test_lifecycle_browser.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.lifecycle import forgetting
from apps.lifecycle.models import WeakMemory
from apps.memories.models import Memory
from apps.privacy.models import ErasureRequest
from apps.tenancy.members import set_role
from tests.helpers.people import person, store

PAGE = "/admin/dashboard/forgetting/"
DECIDE = "/admin/dashboard/forgetting/decide/"
FORGET = "/admin/dashboard/forgetting/forget/"
WEAK = ["The printer on floor 2 was jammed once.", "Someone said lunch is late today."]
STRONG = "The release train leaves every second Tuesday."


def _weak(namespace, text: str, **more):
    long_ago = (timezone.now() - timedelta(days=3 * 365)).isoformat()
    return store(namespace, text, importance=0.0, confidence=0.1, occurred_at=long_ago, **more)


@pytest.fixture
def proposed(alpha, beta, settings) -> dict[str, list[str]]:
    """Two weak memories proposed in alpha (a strong one is not), one in beta."""
    settings.MEMORYWEB_FORGET_AFTER_DAYS = 0
    weak = [str(_weak(alpha, text).pk) for text in WEAK]
    store(alpha, STRONG, importance=1.0)
    theirs = [str(_weak(beta, "Beta's printer jammed in the walnut room.").pk)]
    forgetting.review(alpha)
    forgetting.review(beta)
    assert WeakMemory.objects.filter(state="proposed").count() == 3
    return {"alpha": weak, "beta": theirs}


def _forget_url(*ids: str, namespace: str = "alpha") -> str:
    return f"{FORGET}?namespace={namespace}" + "".join(f"&ids={i}" for i in ids)


def _nothing_decided() -> None:
    assert set(WeakMemory.objects.values_list("state", flat=True)) == {"proposed"}
    assert not ErasureRequest.objects.exists()
    assert not AuditEntry.objects.filter(operation__in=["forgetting.dismiss",
                                                        "erasure.request"]).exists()


# --- who may open the pages ---------------------------------------------------------------
def test_readers_and_agents_get_no_dashboard(alpha, proposed):
    ids = proposed["alpha"]
    for role in (Role.READER, Role.AGENT):
        client = person(f"member-{role.value}", alpha, role=role)
        for url in (PAGE, f"{PAGE}?namespace=alpha", _forget_url(*ids)):
            response = client.get(url, follow=True)
            assert response.status_code == 403 and b"No dashboard access" in response.content
            assert b"printer" not in response.content
        for url, data in ((DECIDE, {"namespace": "alpha", "ids": ids, "action": "keep"}),
                          (_forget_url(*ids), {"confirm": "yes"})):
            assert client.post(url, data, follow=True).status_code == 403
    _nothing_decided()


def test_another_tenants_namespace_is_not_found(bob, alpha, beta, proposed):
    ids = proposed["alpha"]
    assert bob.get(PAGE, {"namespace": "alpha"}).status_code == 404
    assert bob.get(PAGE, {"namespace": "alpha", "state": "requested"}).status_code == 404
    assert bob.post(DECIDE, {"namespace": "alpha", "ids": ids, "action": "keep"}).status_code == 404
    assert bob.post(DECIDE, {"namespace": "alpha", "ids": ids, "action": "forget"}).status_code == 404
    assert bob.get(_forget_url(*ids)).status_code == 404
    assert bob.post(_forget_url(*ids), {"confirm": "yes"}).status_code == 404
    # alpha's ids named in beta, bob's namespace: not proposed there, nothing asked or kept.
    refused = bob.get(_forget_url(*ids, namespace="beta"))
    assert refused.status_code == 409 and 'id="mw-confirm-button"' not in refused.content.decode()
    assert bob.post(_forget_url(*ids, namespace="beta"), {"confirm": "yes"}).status_code == 409
    kept = bob.post(DECIDE, {"namespace": "beta", "ids": ids, "action": "keep"}, follow=True)
    assert b"Nothing was kept: not proposed for forgetting in &#x27;beta&#x27;" in kept.content
    # A person who manages beta but only reads alpha: alpha is not theirs here either.
    rhea = person("rhea", beta)
    set_role(alpha, get_user_model().objects.get(username="rhea"), Role.READER)
    assert rhea.get(PAGE, {"namespace": "alpha"}).status_code == 404
    # Bob's own page: his namespace and its proposal only.
    page = bob.get(PAGE).content.decode()
    assert '<option value="beta"' in page and '<option value="alpha"' not in page
    assert "walnut room" in page and "printer on floor 2" not in page
    _nothing_decided()


def test_the_list_shows_the_weak_memories_with_their_strength(alice, root, alpha, proposed):
    response = alice.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    rows = re.findall(r'<tr class="mw-weak" data-memory="([^"]+)">(.*?)</tr>', page, re.S)
    assert {memory_id for memory_id, _ in rows} == set(proposed["alpha"])
    assert STRONG not in page and "walnut" not in page
    for memory_id, row in rows:
        assert f'href="/admin/memories/memory/{memory_id}/change/"' in row  # the memory page
        assert f'name="ids" value="{memory_id}"' in row
        assert "importance 0.00" in row and "confidence 0.10" in row and "use 0.00" in row
        assert re.search(r"agent&#x27;s track record 0\.9\d", row) and "age 0.00" in row
        assert timezone.now().strftime("%Y-%m-%d") in row and "(0 days)" in row
    assert all(row.strength < 0.25 for row in response.context["rows"])
    assert "Proposed (2)" in page and "Watching (0)" in page and "Kept (0)" in page
    assert "Erasure requested (0)" in page and "2 memories proposed" in page
    assert 'id="forgetting-keep"' in page and 'id="forgetting-forget"' in page
    # A system admin sees every namespace's list; a state that is not one is said.
    assert root.get(PAGE, {"namespace": "beta"}).status_code == 200
    odd = alice.get(PAGE, {"state": "sideways"}, follow=True).content.decode()
    assert "?state= is one of proposed, watching, dismissed, requested" in odd
    assert odd.count('class="mw-weak"') == 2
    _nothing_decided()


def test_texts_are_shown_as_text(alice, alpha, settings):
    settings.MEMORYWEB_FORGET_AFTER_DAYS = 0
    _weak(alpha, "<script>alert('weak')</script> old note")
    forgetting.review(alpha)
    page = alice.get(PAGE).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;weak&#x27;)" in page


def test_the_empty_list_says_how_memories_get_here(alice, alpha, settings):
    _weak(alpha, WEAK[0])
    forgetting.review(alpha)  # watched, not proposed yet (30 days)
    page = alice.get(PAGE).content.decode()
    assert "No memory of alpha is proposed for forgetting." in page
    for words in ("review_strength", "manage.py jobs run review_strength",
                  "MEMORYWEB_FORGET_FLOOR</code> (0.25)", "MEMORYWEB_FORGET_AFTER_DAYS</code> (30",
                  "1 memory is watched</a> now"):
        assert words in page, words
    assert 'id="forgetting-form"' not in page
    watching = alice.get(PAGE, {"state": "watching"}).content.decode()
    assert watching.count('class="mw-weak"') == 1 and 'name="ids"' not in watching


# --- keep ------------------------------------------------------------------------------
def test_keep_dismisses_through_the_service_and_is_audited(alice, alpha, proposed):
    first, second = proposed["alpha"]
    response = alice.post(DECIDE, {"namespace": "alpha", "ids": [first], "action": "keep"})
    assert response.status_code == 302 and response["Location"] == f"{PAGE}?namespace=alpha"
    row = WeakMemory.objects.get(memory_id=first)
    assert row.state == "dismissed" and row.decided_by == "user:alice"
    entry = AuditEntry.objects.get(operation="forgetting.dismiss")
    assert entry.actor == "user:alice" and entry.summary["dismissed"] == 1
    assert [r.record_id for r in entry.records.all()] == [first]
    page = alice.get(response["Location"]).content.decode()
    assert "1 memory kept: it is not proposed for forgetting again" in page
    assert "Kept (1)" in page and "Proposed (1)" in page
    kept = alice.get(PAGE, {"state": "dismissed"}).content.decode()
    assert first in kept and 'name="ids"' not in kept  # nothing to decide there
    assert Memory.objects.filter(pk__in=proposed["alpha"]).count() == 2  # nothing deleted
    # Keeping one no longer proposed changes nothing and says so.
    again = alice.post(DECIDE, {"namespace": "alpha", "ids": [first, second], "action": "keep"},
                       follow=True).content.decode()
    assert "Nothing was kept: not proposed for forgetting in &#x27;alpha&#x27;" in again
    assert WeakMemory.objects.get(memory_id=second).state == "proposed"


def test_keep_of_several_says_so_in_the_plural(alice, proposed):
    page = alice.post(DECIDE, {"namespace": "alpha", "ids": proposed["alpha"], "action": "keep"},
                      follow=True).content.decode()
    assert "2 memories kept: they are not proposed for forgetting again" in page


def test_a_decision_without_a_selection_or_with_a_bad_one_changes_nothing(alice, proposed):
    for data, said in (({"action": "keep"}, "Select at least one memory first"),
                       ({"action": "forget"}, "Select at least one memory first"),
                       ({"action": "keep", "ids": ["nope"]}, "A selected row is not a memory id"),
                       ({"action": "drop", "ids": proposed["alpha"]}, "Choose Keep or Forget")):
        page = alice.post(DECIDE, {"namespace": "alpha", **data}, follow=True).content.decode()
        assert said in page, data
    assert alice.get(DECIDE).status_code == 302  # a GET only goes back to the list
    assert alice.get(FORGET, {"namespace": "alpha"}).status_code == 400
    _nothing_decided()


# --- forget ------------------------------------------------------------------------------
def test_forget_asks_first_then_opens_a_certified_erasure_request(alice, alpha, proposed, settings):
    settings.MEMORYWEB_ERASURE_FOUR_EYES = False
    ids = proposed["alpha"]
    response = alice.post(DECIDE, {"namespace": "alpha", "ids": ids, "action": "forget"})
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert target.path == FORGET and parse_qs(target.query) == {"namespace": ["alpha"], "ids": ids}
    confirm = alice.get(response["Location"])
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Forget 2 memories in alpha: open a certified erasure request for them." in page
    assert "Request erasure of 2 memories" in page and 'class="mw-danger-button"' in page
    for words in ("Nothing is erased yet", "four-eyes is off", "a system admin executes it",
                  "deletion certificate", "the next review proposes them again", WEAK[0][:40]):
        assert words in page, words
    cancel = page.split('id="mw-confirm-cancel"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert cancel == f"{PAGE}?namespace=alpha"
    # The page and a POST without its confirm field change nothing.
    assert alice.post(response["Location"], {}).status_code == 200
    _nothing_decided()

    done = alice.post(response["Location"], {"confirm": "yes"})
    request = ErasureRequest.objects.get()
    assert done.status_code == 302
    assert done["Location"] == f"/admin/privacy/erasurerequest/{request.pk}/change/"
    assert request.state == "requested" and request.requested_by == "user:alice"
    assert sorted(request.selector["ids"]) == sorted(ids)
    assert request.reason.startswith("forgetting: strength below 0.25")
    assert set(WeakMemory.objects.filter(memory_id__in=ids).values_list("state", flat=True)) == {
        "requested"}
    assert WeakMemory.objects.filter(erasure_request=request.pk).count() == 2
    entry = AuditEntry.objects.get(operation="erasure.request")
    assert entry.actor == "user:alice" and [r.record_id for r in entry.records.all()] == [
        str(request.pk)]
    assert Memory.objects.filter(pk__in=ids).count() == 2  # not erased: approval first
    request_page = alice.get(done["Location"]).content.decode()
    assert "Forgetting 2 memories in alpha is now this erasure request" in request_page
    assert f'href="{PAGE}?namespace=alpha" id="forgetting-back-link"' in request_page
    # The list, under Erasure requested, links the request.
    requested = alice.get(PAGE, {"state": "requested"}).content.decode()
    assert requested.count(f'href="/admin/privacy/erasurerequest/{request.pk}/change/"') == 2
    assert "Proposed (0)" in requested and "Erasure requested (2)" in requested


def test_forgetting_one_says_so_in_the_singular_and_four_eyes_shows(alice, proposed, settings):
    settings.MEMORYWEB_ERASURE_FOUR_EYES = True
    page = alice.get(_forget_url(proposed["alpha"][0])).content.decode()
    assert "Forget 1 memory in alpha: open a certified erasure request for it." in page
    assert "Request erasure of 1 memory" in page
    assert "Four-eyes is on: another team admin of alpha or a system admin approves it" in page
    alice.post(_forget_url(proposed["alpha"][0]), {"confirm": "yes"})
    request = ErasureRequest.objects.get()
    page = alice.get(f"/admin/privacy/erasurerequest/{request.pk}/change/").content.decode()
    assert "Forgetting 1 memory in alpha is now this erasure request" in page
    assert "Approve…" not in page  # four-eyes: the requester does not approve


def test_forgetting_what_is_no_longer_proposed_is_refused(alice, alpha, proposed):
    first, second = proposed["alpha"]
    url = _forget_url(first, second)
    assert alice.get(url).status_code == 200
    forgetting.dismiss(forgetting_principal(alpha), "alpha", {"ids": [first]})  # meanwhile
    refused = alice.get(url)
    page = refused.content.decode()
    assert refused.status_code == 409 and 'id="mw-confirm-button"' not in page
    assert "1 selected memory is no longer proposed for forgetting" in page
    assert alice.post(url, {"confirm": "yes"}).status_code == 409
    assert not ErasureRequest.objects.exists()
    bad = alice.get(f"{FORGET}?namespace=alpha&ids=nope")
    assert bad.status_code == 400


def forgetting_principal(namespace):
    from apps.tenancy.principal import Principal

    return Principal(label="key:admin-1", agent_id="admin-1", role=Role.ADMIN,
                     namespace_id=namespace.pk, namespace=namespace)


def test_a_get_never_writes_and_every_post_needs_its_csrf_token(alpha, proposed):
    strict = person("carla", alpha)
    strict.handler.enforce_csrf_checks = True
    ids = proposed["alpha"]
    for url in (f"{_forget_url(*ids)}&confirm=yes", f"{PAGE}?namespace=alpha&confirm=yes",
                f"{DECIDE}?namespace=alpha&action=keep&ids={ids[0]}"):
        assert strict.get(url).status_code in (200, 302), url
    assert strict.post(_forget_url(*ids), {"confirm": "yes"}).status_code == 403
    assert strict.post(DECIDE, {"namespace": "alpha", "ids": ids, "action": "keep"}).status_code == 403
    _nothing_decided()


# --- the way in ----------------------------------------------------------------------------
def test_the_tools_list_forgetting_for_team_admins_but_not_namespace_merges(alice, root):
    index = alice.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in index and ">Forgetting<" in index
    assert "/admin/dashboard/namespace-merges/" not in index and "Namespace merges" not in index
    sidebar = alice.get("/admin/dashboard/overview/").content.decode()
    assert f'href="{PAGE}"' in sidebar and "Namespace merges" not in sidebar
    system = root.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in system and 'href="/admin/dashboard/namespace-merges/"' in system


def test_the_list_takes_a_bounded_number_of_queries(alice, alpha, proposed):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert alice.get(PAGE).status_code == 200
    for n in range(10):
        _weak(alpha, f"Another forgettable remark number {n} about the old parking rules.",
              agent_id=f"agent-{n % 3}")
    forgetting.review(alpha)
    with CaptureQueriesContext(connection) as many:
        page = alice.get(PAGE).content.decode()
    assert page.count('class="mw-weak"') == 12
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]
