"""The pages beyond CRUD: namespace overview, recall playground, live feed, erasure
review/approve/execute/certificate, audit chain status; and nothing loaded from
another host."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection

from apps.core.roles import Role
from apps.memories import services
from apps.memories.models import IndexOutbox, RecallDay
from apps.privacy import erasure
from apps.privacy.models import ErasureRequest
from apps.tenancy.principal import Principal


def _reader(namespace) -> Principal:
    return Principal(label="key:r", agent_id="r", role=Role.READER, namespace_id=namespace.pk,
                     namespace=namespace)


def test_overview_counts_memories_agents_recalls_and_backlog(alice, alpha, memories):
    for _ in range(3):
        services.recall(_reader(alpha), {"query": "deploy"})
    IndexOutbox.objects.create(namespace=alpha, memory_id=memories["alpha"][0].pk, op="upsert")
    assert RecallDay.objects.get(namespace=alpha).count == 3
    page = alice.get("/admin/dashboard/overview/").content.decode()  # alpha: the only choice
    assert re.search(r'id="memory-count">2<', page)
    assert re.search(r'id="outbox-backlog">1<', page)
    assert re.search(r">3</div>recalls in 30 days", page)
    assert "agent-1</a></td><td>1</td>" in page and "agent-2</a></td><td>1</td>" in page
    assert page.count('<rect class="bar"') == 60  # growth and recalls, 30 days each
    assert "<svg" in page and "Memories held, by day stored (30 days)" in page
    today = __import__("django.utils.timezone", fromlist=["now"]).now().date().isoformat()
    assert f"<title>{today}: 2</title>" in page  # the growth chart's last bar: both memories
    assert f"<title>{today}: 3</title>" in page  # the recalls chart's: three recalls
    page = alice.get("/admin/dashboard/overview/", {"days": "7"}).content.decode()
    assert page.count('<rect class="bar"') == 14


def test_recalls_per_day_are_buffered_and_flushed(alpha, settings):
    from apps.memories.recall_stats import RecallStatsBuffer

    buffer = RecallStatsBuffer(interval=3600)
    day = __import__("datetime").date(2026, 1, 2)
    for _ in range(4):
        buffer.record_recall(alpha.pk, day)
    assert not RecallDay.objects.exists()
    buffer.flush()
    buffer.record_recall(alpha.pk, day)
    buffer.flush()
    assert RecallDay.objects.get(namespace=alpha, day=day).count == 5


def test_playground_shows_ranked_results_with_per_channel_explain(alice, memories):
    page = alice.post("/admin/dashboard/playground/", {  # runs on POST only (redirects)
        "namespace": "alpha", "query": "how often does the deploy key rotate", "mode": "hybrid",
        "k": "5"}, follow=True).content.decode()
    rows = re.findall(r'<tr class="mw-result">(.*?)</tr>', page, re.S)
    assert rows and "ninety days" in rows[0]
    assert "<th>lexical<br>" in page and "<th>vector<br>" in page
    parts = re.findall(r'<td class="mw-score mw-part"[^>]*>([^<]*)</td>', rows[0])
    assert "<th>strength<br>" in page  # shown at its default weight 0, contributing nothing
    assert len(parts) == 3 and all(re.fullmatch(r"-?[\d.]+ / \d+ / [\d.]+", p.strip()) for p in parts)
    assert "Keyword query:" in page


def test_playground_reports_bad_input_on_the_form(alice, memories):
    page = alice.post("/admin/dashboard/playground/", {"namespace": "alpha", "query": "x", "k": "0",
                                                       "mode": "hybrid"}).content.decode()
    assert "Ensure this value is greater than or equal to 1." in page
    assert 'class="mw-result"' not in page


def test_live_feed_page_subscribes_with_the_session(alice):
    page = alice.get("/admin/dashboard/live/").content.decode()
    assert 'data-namespace="alpha"' in page and "/static/dashboard/live.js" in page


def test_erasure_review_approve_execute_and_certificate(alice, root, alpha, memories):
    requested = erasure.create(Principal.for_user(_user("alice")),
                               {"namespace": "alpha", "agent_id": "agent-2", "reason": "GDPR art. 17"})
    url = f"/admin/privacy/erasurerequest/{requested.pk}/change/"
    page = alice.get(url).content.decode()
    assert 'id="erasure-count">1<' in page and "erasure-approve-button" in page
    assert "erasure-execute-button" not in page
    alice.post(f"/admin/privacy/erasurerequest/{requested.pk}/step/approve/", {"confirm": "yes"})
    requested.refresh_from_db()
    assert requested.state == "approved" and requested.decided_by == "user:alice"
    refused = alice.post(f"/admin/privacy/erasurerequest/{requested.pk}/step/execute/",
                         {"confirm": "yes", "typed": "alpha"}, follow=True)
    assert b"only a system admin may execute" in refused.content
    assert "erasure-execute-button" in root.get(url).content.decode()
    done = root.post(f"/admin/privacy/erasurerequest/{requested.pk}/step/execute/",
                     {"confirm": "yes", "typed": "alpha"}, follow=True)
    assert b"Erasure request executed." in done.content and b"certificate-download" in done.content
    requested.refresh_from_db()
    download = alice.get(f"/admin/privacy/erasurerequest/{requested.pk}/certificate.json")
    assert download["Content-Disposition"] == f'attachment; filename="erasure-{requested.pk}.json"'
    certificate = json.loads(download.content)
    assert certificate == requested.certificate
    assert certificate["certificate_sha256"] == erasure.certificate_hash(
        {k: v for k, v in certificate.items() if k not in ("certificate_sha256", "audit")})
    assert [e["id"] for e in certificate["erased"]] == [str(memories["alpha"][1].pk)]
    assert alice.post(f"/admin/privacy/erasurerequest/{requested.pk}/step/hack/").status_code == 405
    assert alice.get(f"/admin/privacy/erasurerequest/{requested.pk}/step/hack/").status_code == 405


def test_a_request_not_yet_executed_has_no_certificate(alice, memories):
    requested = erasure.create(Principal.for_user(_user("alice")),
                               {"namespace": "alpha", "agent_id": "agent-2"})
    response = alice.get(f"/admin/privacy/erasurerequest/{requested.pk}/certificate.json", follow=True)
    assert b"No certificate" in response.content
    rejected = alice.post(f"/admin/privacy/erasurerequest/{requested.pk}/step/reject/",
                          {"confirm": "yes", "reason": "not our data"}, follow=True)
    assert b"Erasure request rejected." in rejected.content
    assert ErasureRequest.objects.get(pk=requested.pk).rejection_reason == "not our data"


def _user(username):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


@pytest.mark.django_db(transaction=True)
def test_audit_verify_button_reports_the_chain(alice, root, memories):
    response = alice.post("/admin/audit/auditentry/verify/", follow=True)
    assert b"Audit chain intact up to the signed anchor." in response.content
    assert b"Chain status: intact</p>" in response.content  # no global entry count for a team
    counted = root.post("/admin/audit/auditentry/verify/", follow=True).content
    assert re.search(rb"Audit chain intact: \d+ entries verified", counted)
    assert alice.get("/admin/audit/auditentry/verify/").status_code == 405
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET operation = 'memory.tampered' WHERE seq = 2")
    told = alice.post("/admin/audit/auditentry/verify/", follow=True).content
    assert b"Audit chain BROKEN: tell a system admin" in told and b"entry 2" not in told
    told = root.post("/admin/audit/auditentry/verify/", follow=True).content
    assert b"Audit chain BROKEN at entry 2" in told


@pytest.mark.parametrize("path", [
    "/admin/", "/admin/memories/memory/", "/admin/dashboard/overview/", "/admin/dashboard/playground/",
    "/admin/dashboard/live/", "/admin/audit/auditentry/", "/admin/privacy/erasurerequest/",
    "/accounts/login/",
])
def test_no_page_loads_anything_from_another_host(alice, memories, path, client):
    page = (client if path.startswith("/accounts/") else alice).get(path).content.decode()
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert loaded
    assert [url for url in loaded if re.match(r"^(https?:)?//", url)] == []
