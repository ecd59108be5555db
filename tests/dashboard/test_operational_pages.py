"""Issue 17 item 8, operational pages: the audit list by namespace (only the viewer's),
actors by key name, when the chain was last verified (also by the background job);
JSON shown as JSON; plural wording; "API keys"; the overview says when it adjusted
``?days=`` and draws growth as a running total plus new memories per day; the
playground recalls on POST only; the live feed's filters and memory links.

Browser behaviour (the feed's links, filters and pause; dark-mode charts; the playground
at 375 px) is in browser/test_operational_browser.py."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from apps.audit import log
from apps.core.roles import Role
from apps.dashboard.charts import bar_chart, line_chart, nice_step
from apps.dashboard.views import PLAYGROUND_SESSION_KEY
from apps.memories import services
from apps.memories.models import Memory, RecallDay
from apps.ops.jobs import run_job
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_api_key
from tests.helpers.people import store

AUDIT = "/admin/audit/auditentry/"


def test_the_audit_list_filters_by_the_viewers_namespaces_only(alice, root, memories):
    page = alice.get(AUDIT).content.decode()
    assert "?namespace_id=" in page  # the filter is there…
    assert re.search(r'href="\?namespace_id=\d+"[^>]*>alpha<', page)
    assert ">beta<" not in page  # …with only alice's namespaces as choices
    alpha_id = memories["alpha"][0].namespace_id
    filtered = alice.get(AUDIT, {"namespace_id": alpha_id}).content.decode()
    assert "memory.created" in filtered or "memory.create" in filtered
    everything = root.get(AUDIT).content.decode()
    assert ">alpha<" in everything and ">beta<" in everything
    beta_id = memories["beta"][0].namespace_id
    only_beta = root.get(AUDIT, {"namespace_id": beta_id}).content.decode()
    assert "<td class=\"field-namespace\">alpha</td>" not in only_beta
    assert "<td class=\"field-namespace\">beta</td>" in only_beta


def test_actors_that_are_keys_are_shown_by_key_name(alice, alpha, django_assert_max_num_queries):
    keys = [create_api_key(role=Role.AGENT, agent_id=f"bot-{n}", namespace=alpha,
                           name=f"Support bot {n}")[0] for n in range(3)]
    for key in keys:
        services.ingest(Principal.for_key(key), {"content": f"note from {key.agent_id}"})
    log.record("user:alice", "test.note", namespace=alpha)
    page = alice.get(AUDIT).content.decode()
    for key in keys:
        assert f"Support bot {key.agent_id[-1]} ({key.prefix})" in page
    assert "user:alice" in page
    # One query for every key on the page, not one per row: 3 more keys, same count.
    with django_assert_max_num_queries(40) as few:
        alice.get(AUDIT)
    more = [create_api_key(role=Role.AGENT, agent_id=f"more-{n}", namespace=alpha, name=f"M{n}")[0]
            for n in range(3)]
    for key in more:
        services.ingest(Principal.for_key(key), {"content": f"note from {key.agent_id}"})
    with django_assert_max_num_queries(len(few.captured_queries)):
        alice.get(AUDIT)


@pytest.mark.django_db(transaction=True)  # the chain's anchor is written on commit
def test_the_audit_list_says_when_the_chain_was_last_verified(alice, root, memories):
    assert b"never been verified" in alice.get(AUDIT).content
    run_job("audit_checkpoint")
    page = alice.get(AUDIT).content.decode()
    assert re.search(r'id="chain-last-verified"[^>]*>Last verified [^<]*by the background '
                     r'audit_checkpoint job', page)
    root.post(f"{AUDIT}verify/")
    page = Client().get(AUDIT)  # anonymous: login page, nothing leaks
    assert b"Last verified" not in page.content
    fresh = alice.get(AUDIT).content.decode()
    assert re.search(r"Last verified [^<]*from the dashboard", fresh)


def test_json_is_shown_as_json_on_the_memory_page_and_the_audit_entry(alice, alpha):
    memory = store(alpha, "A memory with an audited summary.", tags=["ops"])
    entry = log.record("user:alice", "test.summary", namespace=alpha, record_ids=[str(memory.pk)],
                       summary={"count": 250, "flag": True, "none": None})
    page = alice.get(f"/admin/memories/memory/{memory.pk}/change/").content.decode()
    assert "{&#x27;count&#x27;: 250" not in page and "True" not in page.split('id="audit-trail"')[1]
    assert "{&quot;count&quot;: 250, &quot;flag&quot;: true, &quot;none&quot;: null}" in page
    detail = alice.get(f"{AUDIT}{entry.seq}/change/").content.decode()
    assert re.search(r'<pre class="mw-json">\{\n  &quot;count&quot;: 250,\n  &quot;flag&quot;: '
                     r'true,', detail)


def test_plural_wording_and_api_keys(alice, memories):
    home = alice.get("/admin/").content.decode()
    assert "Api keys" not in home and "API keys" in home
    text = alice.post("/admin/dashboard/playground/", {
        "namespace": "alpha", "query": "how often does the deploy key rotate", "mode": "hybrid",
        "k": "1"}, follow=True).content.decode()
    assert "result(s)" not in text and "1 result —" in text


@pytest.mark.parametrize(("asked", "shown", "said"), [
    ("3", 7, "Showing 7 days: ?days= must be between 7 and 365 (3 was asked for)."),
    ("9999", 365, "Showing 365 days: ?days= must be between 7 and 365 (9999 was asked for)."),
    ("soon", 30, "Showing 30 days: ?days= must be a whole number of days (soon was asked for)."),
])
def test_the_overview_says_when_it_adjusted_days(alice, memories, asked, shown, said):
    page = alice.get("/admin/dashboard/overview/", {"days": asked}).content.decode()
    assert said in page.replace("&#x27;", "'")
    assert f"last {shown} days" in page or f'value="{shown}"' in page or f"{shown} days" in page


def test_the_overview_says_nothing_for_a_valid_days(alice, memories):
    page = alice.get("/admin/dashboard/overview/", {"days": "14"}).content.decode()
    assert "?days= must" not in page


def test_summary_json_helper_is_plain_json():
    from apps.dashboard.templatetags.dashboard_json import as_json

    assert json.loads(as_json({"a": [1, None]})) == {"a": [1, None]}
    assert as_json({"a": True}) == '{"a": true}'


# --- the playground recalls on POST only ---------------------------------------------

PLAYGROUND = "/admin/dashboard/playground/"
ASK = {"namespace": "alpha", "query": "how often does the deploy key rotate", "mode": "hybrid",
       "k": "5"}


def _recall_counts(alpha) -> tuple[int, int]:
    """(recalls counted for alpha today, access counts of alpha's memories summed)."""
    day = RecallDay.objects.filter(namespace=alpha).first()
    return (day.count if day else 0,
            sum(Memory.objects.filter(namespace=alpha).values_list("access_count", flat=True)))


def test_a_playground_get_never_recalls(alice, alpha, memories):
    empty = alice.get(PLAYGROUND)
    assert empty.status_code == 200 and b'id="playground-results"' not in empty.content
    # An old-style link with the query in the address fills the form in, and stops there.
    linked = alice.get(PLAYGROUND, ASK).content.decode()
    assert 'value="how often does the deploy key rotate"' in linked
    assert 'id="playground-results"' not in linked and "ninety days" not in linked
    assert 'method="post"' in linked and "csrfmiddlewaretoken" in linked
    assert _recall_counts(alpha) == (0, 0)


def test_a_playground_post_recalls_once_and_a_reload_shows_it_again(alice, alpha, memories):
    posted = alice.post(PLAYGROUND, ASK)
    assert posted.status_code == 302  # POST-redirect-GET: a reload repeats the GET
    shown_url = posted["Location"]
    assert re.fullmatch(r"/admin/dashboard/playground/\?shown=[\w-]+", shown_url)
    counted = _recall_counts(alpha)
    assert counted[0] == 1 and counted[1] >= 1  # one recall, counted on what it returned
    for _ in range(2):  # the reloads
        page = alice.get(shown_url).content.decode()
        rows = re.findall(r'<tr class="mw-result">(.*?)</tr>', page, re.S)
        assert rows and "ninety days" in rows[0]
        assert 'value="how often does the deploy key rotate"' in page  # the form as sent
    assert _recall_counts(alpha) == counted


def test_the_playground_keeps_no_content_and_shows_what_is_still_there(alice, alpha, memories):
    alice.post(PLAYGROUND, {**ASK, "k": "10", "query": "deploy key lunch noon Fridays"})
    kept = json.dumps(alice.session[PLAYGROUND_SESSION_KEY])
    for memory in memories["alpha"]:
        assert memory.content not in kept and str(memory.pk) in kept  # ids, never content
    shown = f"{PLAYGROUND}?shown={alice.session[PLAYGROUND_SESSION_KEY]['token']}"
    services.delete(_admin(alpha), memories["alpha"][1].pk)  # gone before the reload
    page = alice.get(shown).content.decode()
    assert "Lunch is at noon" not in page and "ninety days" in page
    assert "1 more memory was found but is no longer there to show" in page
    stale = alice.get(f"{PLAYGROUND}?shown=not-the-token").content.decode()
    assert 'id="playground-expired"' in stale and 'id="playground-results"' not in stale


def test_a_refused_playground_post_recalls_nothing(alice, alpha, memories):
    page = alice.post(PLAYGROUND, {**ASK, "k": "0"})
    assert page.status_code == 200 and b"greater than or equal to 1" in page.content
    assert _recall_counts(alpha) == (0, 0)


def _admin(namespace) -> Principal:
    return Principal(label="key:admin", agent_id="admin", role=Role.ADMIN,
                     namespace_id=namespace.pk, namespace=namespace)


# --- the overview's growth ------------------------------------------------------------

def test_growth_is_a_running_total_ending_today_with_new_memories_per_day(alice, alpha):
    today = timezone.now().date()
    for days_ago, count in [(40, 2), (6, 1), (2, 3), (0, 1)]:
        for n in range(count):
            memory = store(alpha, f"stored {days_ago} days ago, number {n}")
            Memory.objects.filter(pk=memory.pk).update(
                created_at=timezone.now() - dt.timedelta(days=days_ago))
    page = alice.get("/admin/dashboard/overview/", {"days": "7"}).content.decode()
    growth = re.search(r'<svg class="mw-chart mw-chart-line".*?</svg>', page, re.S).group(0)
    held = [int(v) for v in re.search(r'data-values="([\d,]+)"', growth).group(1).split(",")]
    # Seven days: 2 stored before the window, then +1 six days ago, +3 two days ago, +1 today.
    assert held == [3, 3, 3, 3, 6, 6, 7]
    assert f"<title>{today.isoformat()}: 7</title>" in growth  # ends today, at the total
    assert re.search(r'class="mw-day mw-today-label"[^>]*>today<', growth)
    assert "Memories held</text>" in growth and "Day (UTC)</text>" in growth  # axis titles
    new = re.findall(r'<svg class="mw-chart mw-chart-bars".*?</svg>', page, re.S)[0]
    per_day = [int(v) for v in re.findall(r'<rect class="bar"[^>]*data-value="(\d+)"', new)]
    assert per_day == [1, 0, 0, 0, 3, 0, 1]
    assert re.search(r'data-day="' + today.isoformat() + r'" data-value="1"', new)
    assert "New memories</text>" in new and ">today<" in new
    assert re.search(r'id="memory-count">7<', page)


def test_charts_take_their_colours_from_the_stylesheet():
    """Dark mode works through the admin's CSS variables: no fill or stroke attribute
    may pin a colour in the SVG (a hard-coded one is what vanished on the dark theme)."""
    today = dt.date(2026, 12, 4)
    points = [(today - dt.timedelta(days=6 - i), i * 3) for i in range(7)]
    for chart in (line_chart(points, title="t", y_label="y", today=today),
                  bar_chart(points, title="<b>", y_label="y&", today=today)):
        assert not re.search(r'\s(fill|stroke)="', chart), chart
        assert "<b>" not in chart and ">today<" in chart
    css = open("static/dashboard/dashboard.css").read()
    for rule in ("rect.bar", ".mw-line", ".mw-area", ".mw-chart text"):
        body = re.search(re.escape(rule) + r"[^{]*\{([^}]*)\}", css).group(1)
        assert "var(--" in body and "#" not in body.split("var(--")[0], (rule, body)
    assert [nice_step(p) for p in (0, 3, 7, 40, 999, 12_345)] == [1, 1, 2, 10, 500, 5000]


# --- the live feed ---------------------------------------------------------------------

def test_the_live_feed_offers_filters_by_event_and_agent(alice, alpha, memories):
    create_api_key(role=Role.AGENT, agent_id="quiet-bot", namespace=alpha, name="Quiet")
    page = alice.get("/admin/dashboard/live/").content.decode()
    for name in ("created", "updated", "deleted", "recalled"):
        assert f'name="event" value="{name}" checked' in page
    agents = re.findall(r'<option value="([^"]*)"', page.split('id="mw-live-agent"')[1])
    assert agents[:4] == ["", "agent-1", "agent-2", "quiet-bot"]  # stored, and keys' agents
    assert 'id="mw-live-pause"' in page and 'data-buffer-cap="500"' in page
    assert 'data-memory-url="/admin/memories/memory/00000000-0000-0000-0000-000000000000/change/"' in page
    linked = alice.get("/admin/dashboard/live/", {"event": ["deleted", "bogus"],
                                                 "agent": "agent-2"}).content.decode()
    assert 'value="deleted" checked' in linked and 'value="created" checked' not in linked
    assert '<option value="agent-2" selected>' in linked


# --- last verified: the checkpoint job in a quiet time --------------------------------

@pytest.mark.django_db(transaction=True)  # the chain's anchor is written on commit
def test_a_checkpoint_run_with_nothing_new_still_counts_as_verified(alice, memories):
    """The checkpoint job records a checkpoint only when entries were written since the
    last; a run that found nothing new still checked the chain's end, and the page must
    not say "last verified" at the older moment (as if the job had stopped)."""
    from apps.audit.models import AuditCheckpoint
    from apps.ops.models import JobState
    from apps.privacy.admin_audit import last_verified

    run_job("audit_checkpoint")
    first = last_verified()
    assert first["by"] == "the background audit_checkpoint job"
    made = AuditCheckpoint.objects.count()
    run_job("audit_checkpoint")  # nothing written in between
    assert AuditCheckpoint.objects.count() == made
    again = last_verified()
    assert again["at"] > first["at"] and again["at"] == JobState.objects.get(
        name="audit_checkpoint").last_finished_at
    assert again["by"] == "the background audit_checkpoint job" and again["seq"] == first["seq"]
    page = alice.get(AUDIT).content.decode()
    assert "by the background audit_checkpoint job" in page
