"""The GDPR workflow on the dashboard (issue 17, items 1 and 4), through Django's client.

Export and New erasure request from the privacy section and the memory list, the
request's review page (its matches, an export of them, its story), the certificate card,
Verify now and the printable certificate. Isolation: a team admin of alpha can neither
export nor request erasure in beta, nor see beta's requests; bad input is a clear form
error and changes nothing; every export and request is audited with its count."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from apps.audit.models import AuditEntry
from apps.memories.models import Memory
from apps.privacy import erasure
from apps.privacy.models import ErasureRequest
from apps.tenancy.principal import Principal
from tests.helpers.people import person, store

#: Commits for real: the audit anchor advances after each commit, and Verify now checks it.
pytestmark = pytest.mark.django_db(transaction=True)

EXPORT = "/admin/privacy/erasurerequest/export/"
NEW = "/admin/privacy/erasurerequest/new/"
MEMORIES = "/admin/memories/memory/"


def _principal(username: str) -> Principal:
    return Principal.for_user(get_user_model().objects.get(username=username))


def _lines(response) -> list[dict]:
    assert response.status_code == 200, response.content[:2000]
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def _exported_ids(lines: list[dict]) -> set[str]:
    return {line["id"] for line in lines if line["type"] == "memory"}


def _exports() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(operation="export").order_by("seq"))


@pytest.fixture
def dana(alpha, beta):
    """Three memories about the data subject dana in alpha (two agents), one unrelated;
    one about a dana in beta (another tenant's subject of the same id)."""
    return {
        "about": [store(alpha, "Dana prefers tea.", metadata={"subject_id": "dana"}),
                  store(alpha, "Dana's badge is 4411.", metadata={"subject_id": "dana"}),
                  store(alpha, "Dana moved to Lyon.", agent_id="agent-2",
                        metadata={"subject_id": "dana"})],
        "other": store(alpha, "The office closes at six."),
        "beta": store(beta, "Beta's Dana likes chess.", metadata={"subject_id": "dana"}),
    }


# --- Export ------------------------------------------------------------------------------
def test_export_form_offers_only_managed_namespaces(alice, bob, root, dana):
    page = alice.get(EXPORT).content.decode()
    assert '<option value="alpha"' in page and "beta" not in page
    assert 'id="privacy-submit"' in page
    assert '<option value="beta"' in root.get(EXPORT).content.decode()
    prefilled = alice.get(EXPORT + "?subject_id=dana&namespace=alpha").content.decode()
    assert 'value="dana"' in prefilled


def test_export_by_subject_streams_exactly_the_subject_and_is_audited_with_its_count(
        alice, dana):
    lines = _lines(alice.post(EXPORT, {"namespace": "alpha", "subject_id": "dana"}))
    assert _exported_ids(lines) == {str(m.pk) for m in dana["about"]}
    manifest = lines[-1]
    assert manifest["type"] == "manifest" and manifest["counts"]["memory"] == 3
    assert manifest["selector"] == {"namespace": "alpha", "subject_id": "dana"}
    [entry] = _exports()
    assert entry.actor == "user:alice" and entry.namespace == "alpha"
    assert entry.summary == {"namespace": "alpha", "subject_id": "dana", "memories": 3}


def test_export_by_agent_and_of_the_whole_namespace(alice, dana):
    assert _exported_ids(_lines(alice.post(EXPORT, {"namespace": "alpha",
                                                    "agent_id": "agent-2"}))) == {
        str(dana["about"][2].pk)}
    everything = _exported_ids(_lines(alice.post(EXPORT, {"namespace": "alpha"})))
    assert everything == {str(m.pk) for m in [*dana["about"], dana["other"]]}
    assert [e.summary["memories"] for e in _exports()] == [1, 4]


@pytest.mark.parametrize(("data", "message"), [
    ({"namespace": "alpha", "subject_id": "dana", "agent_id": "agent-1"},
     "Fill in one of data subject id, agent, not several"),
    ({"namespace": "alpha", "ids": "not-a-uuid"}, "Must be a valid UUID"),
    ({"namespace": "alpha", "subject_id": "nobody"}, "matches no memory"),
    ({"subject_id": "dana"}, "This field is required."),
])
def test_bad_export_input_is_a_clear_error_and_exports_nothing(alice, dana, data, message):
    response = alice.post(EXPORT, data)
    assert response.status_code == 400
    text = response.content.decode()
    assert 'id="privacy-form-errornote"' in text and message in text
    assert _exports() == []


# --- New erasure request -----------------------------------------------------------------
def test_new_request_through_the_service_with_its_audit_entry(alice, dana):
    response = alice.post(NEW, {"namespace": "alpha", "subject_id": "dana",
                                "reason": "ticket 7"}, follow=True)
    created = ErasureRequest.objects.get()
    assert response.redirect_chain[-1][0] == f"/admin/privacy/erasurerequest/{created.pk}/change/"
    assert created.selector == {"namespace": "alpha", "subject_id": "dana"}
    assert (created.state, created.reason, created.requested_by) == ("requested", "ticket 7",
                                                                      "user:alice")
    assert "Erasure requested: data subject id “dana” in alpha, 3 memories." in \
        response.content.decode()
    entry = AuditEntry.objects.get(operation="erasure.request")
    assert entry.record_ids == [str(created.pk)] and entry.actor == "user:alice"


@pytest.mark.parametrize(("data", "message"), [
    ({"namespace": "alpha"}, "Name whose memories"),
    ({"namespace": "alpha", "subject_id": "nobody"},
     "subject_id &#x27;nobody&#x27; matches nothing you can see in namespace &#x27;alpha&#x27;"),
    ({"namespace": "alpha", "session_id": "s", "agent_id": "a"}, "not several"),
    ({"namespace": "alpha", "agent_id": "x" * 129}, "at most 128 characters"),
])
def test_bad_request_input_is_a_clear_error_and_creates_nothing(alice, dana, data, message):
    response = alice.post(NEW, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ErasureRequest.objects.exists()
    assert not AuditEntry.objects.filter(operation="erasure.request").exists()


# --- Isolation ---------------------------------------------------------------------------
def test_a_team_admin_of_alpha_can_neither_export_nor_request_in_beta(alice, bob, dana):
    for url, data in [(EXPORT, {"namespace": "beta"}),
                      (EXPORT, {"namespace": "beta", "subject_id": "dana"}),
                      (NEW, {"namespace": "beta", "subject_id": "dana"})]:
        refused = alice.post(url, data)
        assert refused.status_code == 400
        assert "Select a valid choice. beta is not one of the available choices." in \
            refused.content.decode()
    # beta's memory ids, named under alpha: the service's "matches nothing" (as REST).
    refused = alice.post(NEW, {"namespace": "alpha", "ids": str(dana["beta"].pk)})
    assert refused.status_code == 400 and b"matches nothing" in refused.content
    refused = alice.post(EXPORT, {"namespace": "alpha", "ids": str(dana["beta"].pk)})
    assert refused.status_code == 400 and b"matches no memory" in refused.content
    assert not ErasureRequest.objects.exists() and _exports() == []

    # beta's own request: its page, its matches, its export and certificate pages are 404.
    theirs = erasure.create(_principal("bob"), {"namespace": "beta", "subject_id": "dana"})
    base = f"/admin/privacy/erasurerequest/{theirs.pk}"
    assert alice.get(f"{base}/change/").status_code in (302, 404)
    assert alice.post(EXPORT, {"erasure": str(theirs.pk)}).status_code == 404
    assert alice.post(f"{base}/certificate/verify/").status_code == 404
    assert alice.get(f"{base}/certificate/print/").status_code == 404
    listed = alice.get(MEMORIES, {"erasure": str(theirs.pk)}).content.decode()
    assert "Beta&#x27;s Dana" not in listed and "Dana prefers tea" not in listed
    assert _exports() == []


# --- The memory list ---------------------------------------------------------------------
def _action(client, action: str, memories, **extra):
    return client.post(MEMORIES, {"action": action, "_selected_action": [str(m.pk) for m in memories],
                                  "index": 0, **extra})


def test_export_selected_memories_from_the_list(alice, alpha, dana):
    chosen = dana["about"][:2]
    assert _exported_ids(_lines(_action(alice, "export_selected", chosen))) == {
        str(m.pk) for m in chosen}
    [entry] = _exports()
    assert entry.summary["memories"] == 2 and set(entry.summary["ids"]) == {str(m.pk) for m in chosen}


def test_a_selection_across_namespaces_is_refused(root, dana):
    response = _action(root, "export_selected", [dana["about"][0], dana["beta"]], )
    assert response.status_code == 302
    page = root.get(response["Location"]).content.decode()
    assert "The selection spans 2 namespaces (alpha, beta); select memories of one namespace." \
        in page
    assert _exports() == []


def test_erase_selected_memories_opens_the_prefilled_form(alice, dana):
    chosen = dana["about"][1:]
    page = _action(alice, "erase_selected", chosen)
    text = page.content.decode()
    assert page.status_code == 200 and "The 2 memories you selected in alpha." in text
    assert all(str(m.pk) in text for m in chosen) and str(dana["about"][0].pk) not in text
    assert not ErasureRequest.objects.exists()  # nothing until the form is submitted
    alice.post(NEW, {"namespace": "alpha", "ids": "\n".join(str(m.pk) for m in chosen),
                     "reason": "asked by phone"})
    created = ErasureRequest.objects.get()
    assert sorted(created.selector["ids"]) == sorted(str(m.pk) for m in chosen)


def test_the_list_buttons_carry_its_filters(alice, alpha, dana):
    page = alice.get(MEMORIES, {"namespace": alpha.pk, "agent": "agent-2"}).content.decode()
    assert f'href="{EXPORT}?namespace=alpha&amp;agent_id=agent-2" id="memory-privacy-export"' in page
    assert f'href="{NEW}?namespace=alpha&amp;agent_id=agent-2" id="memory-privacy-erasure"' in page


@pytest.mark.parametrize("value", ["²", "٣", "x", "", "9" * 25, "1" * 5000])
@pytest.mark.parametrize("tag", [None, "ops"])
def test_a_namespace_filter_that_is_not_a_number_is_no_error(alice, dana, value, tag):
    """The namespace filter, the tag filter and the buttons' prefill read the list's
    namespace id: "²" is a digit to str.isdigit() but not a number to int(); 25 digits
    overflow SQLite's integer and 5,000 pass int()'s digit limit: each gave a 500."""
    response = alice.get(MEMORIES, {"namespace": value, **({"tag": tag} if tag else {})})
    assert response.status_code == 200
    assert 'id="memory-privacy-export"' in response.content.decode()


def test_the_matches_of_a_request_in_the_list(alice, dana):
    request = erasure.create(_principal("alice"), {"namespace": "alpha", "subject_id": "dana"})
    page = alice.get(MEMORIES, {"erasure": str(request.pk)})
    assert page.status_code == 200
    shown = {str(pk) for pk in page.context["cl"].result_list.values_list("pk", flat=True)}
    assert shown == {str(m.pk) for m in dana["about"]}
    text = page.content.decode()
    assert f"selected by request {str(request.pk)[:8]}" in text
    assert (f'href="/admin/privacy/erasurerequest/{request.pk}/change/" '
            'id="memory-privacy-request"') in text


# --- The request's page ------------------------------------------------------------------
def test_review_page_links_the_matches_exports_them_and_tells_the_story(alice, alpha, dana,
                                                                        settings):
    settings.MEMORYWEB_ERASURE_FOUR_EYES = True
    request = erasure.create(_principal("alice"), {"namespace": "alpha", "subject_id": "dana",
                                                   "reason": "ticket 9"})
    change = f"/admin/privacy/erasurerequest/{request.pk}/change/"
    page = alice.get(change).content.decode()
    assert f'href="{MEMORIES}?erasure={request.pk}" id="erasure-matches-link"' in page
    assert 'form="erasure-export-form"' in page and 'id="erasure-export-form"' in page
    assert "team admin (alice)" in page and "Reason: ticket 9" in page
    assert 'id="erasure-four-eyes"' in page  # alice asked: someone else approves

    lines = _lines(alice.post(EXPORT, {"erasure": str(request.pk)}))
    assert _exported_ids(lines) == {str(m.pk) for m in dana["about"]}
    [entry] = _exports()
    assert entry.summary == {"namespace": "alpha", "subject_id": "dana", "memories": 3,
                             "erasure_request": str(request.pk)}
    page = alice.get(change).content.decode()
    assert "Exported before erasing" in page and f"#{entry.seq} export" in page


def _executed(alpha) -> ErasureRequest:
    """Requested by alice, approved by carol (another team admin), executed by root."""
    person("carol", alpha)
    request = erasure.create(_principal("alice"), {"namespace": "alpha", "subject_id": "dana",
                                                   "reason": "ticket 11"})
    erasure.approve(_principal("carol"), request.pk)
    return erasure.execute(_principal("root"), request.pk)


def test_certificate_card_verify_now_and_print(alice, root, alpha, dana):
    done = _executed(alpha)
    change = f"/admin/privacy/erasurerequest/{done.pk}/change/"
    page = alice.get(change).content.decode()
    assert 'id="certificate-card"' in page and "✓ Erased and checked in every store" in page
    assert page.count("✓ nothing left") == len(done.certificate["verification"])
    seq = done.certificate["audit"]["seq"]
    assert f'href="/admin/audit/auditentry/{seq}/change/" id="certificate-audit-link"' in page
    assert done.certificate_sha256 in page
    for step in ("Requested", "Approved", "Executed", "Certified"):
        assert f'data-step="{step}"' in page
    assert "team admin (carol)" in page and "system admin (root)" in page
    assert "erasure.request" in page and "memory.erase" in page and "erasure.execute" in page

    verify = f"/admin/privacy/erasurerequest/{done.pk}/certificate/verify/"
    assert alice.get(verify).status_code == 405  # a POST: it walks the whole chain
    result = alice.post(verify).content.decode()
    checks = 3 + len(done.certificate["verification"])
    assert f"✓ Certificate verified: all {checks} checks passed." in result
    assert "intact up to the signed anchor" in result  # a team admin: not the chain's length
    assert "entries intact" in root.post(verify).content.decode()

    printed = alice.get(f"/admin/privacy/erasurerequest/{done.pk}/certificate/print/")
    text = printed.content.decode()
    assert printed.status_code == 200 and "Certificate of erasure" in text
    assert 'id="header"' not in text and 'id="nav-sidebar"' not in text  # no admin chrome
    assert "dashboard/privacy.css" in text and done.certificate_sha256 in text
    assert "3 memories" in text and "data subject id “dana” in alpha" in text
    assert "team admin (alice)" in text and "team admin (carol)" in text
    assert "system admin (root)" in text
    assert "manage.py verify_certificate" in text and f"entry #{seq}" in text
    assert "Dana prefers tea" not in text  # hashes and ids, never the content


def test_verify_now_reports_the_failing_check(alice, root, alpha, dana):
    done = _executed(alpha)
    store(alpha, "Dana prefers tea.")  # the same text again: the content-hash check fails
    result = alice.post(f"/admin/privacy/erasurerequest/{done.pk}/certificate/verify/")
    text = result.content.decode()
    assert "✗ Certificate NOT verified" in text
    failed = text.split('data-check="store content_hashes"')[1].split("</tr>")[0]
    assert "✗ failed" in failed and "1 erased item held" in failed
    ErasureRequest.objects.filter(pk=done.pk).update(
        certificate={**done.certificate, "reason": "edited"})
    text = alice.post(f"/admin/privacy/erasurerequest/{done.pk}/certificate/verify/").content.decode()
    assert "the certificate was altered" in text


def test_certificate_pages_wait_for_execution(alice, dana):
    request = erasure.create(_principal("alice"), {"namespace": "alpha", "subject_id": "dana"})
    base = f"/admin/privacy/erasurerequest/{request.pk}/certificate"
    for response in (alice.post(f"{base}/verify/"), alice.get(f"{base}/print/")):
        assert response.status_code == 302
    assert Memory.objects.filter(metadata__subject_id="dana").count() == 4


def test_history_opens_the_requests_story_and_stays_in_its_tenant(alice, bob, dana):
    """The admin's HISTORY page was empty ("no change history"): every step is a service
    call recorded in the audit log, so HISTORY opens the story on the request's page."""
    ours = erasure.create(_principal("alice"), {"namespace": "alpha", "subject_id": "dana"})
    theirs = erasure.create(_principal("bob"), {"namespace": "beta", "subject_id": "dana"})
    response = alice.get(f"/admin/privacy/erasurerequest/{ours.pk}/history/")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/privacy/erasurerequest/{ours.pk}/change/#erasure-story"
    assert alice.get(f"/admin/privacy/erasurerequest/{theirs.pk}/history/").status_code == 404
