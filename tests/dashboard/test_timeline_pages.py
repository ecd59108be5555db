"""Issue 20 item 7, server side: the dashboard's timeline page (year → month → week → day,
each grip opening its source), the session view (conversation order, pages, folded tool
output, escaped text), the sessions index, the rebuild (confirmation, CSRF, audit), and
who may see what (another tenant's node or session is a 404; a reader gets no dashboard).

The browser journey is tests/dashboard/browser/test_timeline_browser.py.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.core.summarizer import SummarizerError
from apps.dashboard import session_views
from apps.memories import services
from apps.tenancy.members import set_role
from apps.tenancy.principal import Principal
from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode, RollupState
from tests.helpers.people import person, store

TIMELINE = "/admin/dashboard/timeline/"
SESSIONS = "/admin/dashboard/sessions/"
LONG_OUTPUT = "\n".join(f"line {n}: test_login PASSED in 0.{n:02d}s" for n in range(40))
#: alpha's session s-1 on Tue 2024-03-05 (ISO week 10), in the order it happened.
S1 = [
    ("e1", "session_start", "", "2024-03-05T09:00:00Z"),
    ("e2", "user_message", "Dana asked to move the launch review to Friday.", "2024-03-05T09:01:00Z"),
    ("e3", "tool_call", "calendar.move(event='launch review', day='Friday')", "2024-03-05T09:02:00Z"),
    ("e4", "tool_result", LONG_OUTPUT, "2024-03-05T09:03:00Z"),
    ("e5", "assistant_message", "The launch review is now on Friday <b>at 10:00</b>.",
     "2024-03-05T09:04:00Z"),
    ("e6", "session_end", "", "2024-03-05T09:05:00Z"),
]
#: Session s-2 the next day.
S2 = [
    ("f1", "user_message", "Priya booked the Berlin venue near Alexanderplatz.", "2024-03-06T14:00:00Z"),
    ("f2", "assistant_message", "Noted: the Berlin venue is booked.", "2024-03-06T14:01:00Z"),
]


def _agent(namespace, agent_id: str = "agent-1") -> Principal:
    return Principal(label=f"key:{agent_id}", agent_id=agent_id, role=Role.AGENT,
                     namespace_id=namespace.pk, namespace=namespace)


def _events(namespace, session: str, items) -> dict[str, str]:
    """Store events through the events service; their memory ids by client id."""
    stored = services.store_events(_agent(namespace), [
        {"id": f"{session}-{eid}", "event_type": kind, "session_id": session, "occurred_at": at,
         **({"text": text} if text else {})} for eid, kind, text, at in items])
    return {eid: str(result.memory.pk) for (eid, *_), result in zip(items, stored, strict=True)}


@pytest.fixture
def history(alpha, beta):
    """alpha: sessions s-1 and s-2 (events) plus a note stored with s-1's id between the
    tool's result and the answer; beta: a session of its own. Both timelines built."""
    ids = _events(alpha, "s-1", S1)
    ids.update(_events(alpha, "s-2", S2))
    ids["note"] = str(store(alpha, "Note: the launch review moved to Friday.", session_id="s-1",
                            occurred_at="2024-03-05T09:03:30Z").pk)
    ids["beta"] = _events(beta, "s-beta", [
        ("b1", "user_message", "Beta's walnut vault code changed.", "2024-03-05T10:00:00Z")])["b1"]
    assert build(alpha).ok and build(beta).ok
    return ids


def _links(page: str, css_class: str) -> list[tuple[str, str]]:
    """(href, text) of the links with this class, unescaped."""
    return [(unescape(href), unescape(re.sub(r"<[^>]+>", "", text)).strip()) for href, text in
            re.findall(rf'<a href="([^"]+)" class="{css_class}">(.*?)</a>', page, re.S)]


def _open(client: Client, href: str) -> str:
    response = client.get(TIMELINE + href if href.startswith("?") else href)
    assert response.status_code == 200, (href, response.status_code)
    return response.content.decode()


def _drill(client: Client, *labels: str) -> str:
    """From the timeline's first page, follow the node named by each label in turn."""
    page = _open(client, TIMELINE)
    for label in labels:
        links = dict((text, href) for href, text in _links(page, "mw-open-node"))
        assert label in links, (label, list(links))
        page = _open(client, links[label])
    return page


def test_the_timeline_drills_down_from_year_to_day(alice, history):
    page = _open(alice, TIMELINE)  # alpha: alice's only namespace
    assert [text for _, text in _links(page, "mw-open-node")] == ["2024"]
    assert "1 year" in page and "Build now…" in page

    year = _drill(alice, "2024")
    assert [text for _, text in _links(year, "mw-open-node")] == ["March 2024"]
    month = _drill(alice, "2024", "March 2024")
    assert [text for _, text in _links(month, "mw-open-node")] == ["Week 10, 2024 (4 Mar \u2013 10 Mar)"]
    week = _drill(alice, "2024", "March 2024", "Week 10, 2024 (4 Mar \u2013 10 Mar)")
    assert [text for _, text in _links(week, "mw-open-node")] == ["Tue 5 Mar 2024", "Wed 6 Mar 2024"]
    day = _drill(alice, "2024", "March 2024", "Week 10, 2024 (4 Mar \u2013 10 Mar)", "Tue 5 Mar 2024")
    node = RollupNode.objects.get(namespace__slug="alpha", level="day", start__date="2024-03-05")
    assert 'data-level="day"' in day and "<h1>Day Tue 5 Mar 2024</h1>" in day
    # The trail leads back up, level by level.
    trail = re.search(r'id="timeline-trail".*?</nav>', day, re.S).group(0)
    assert [unescape(t) for t in re.findall(r'class="mw-trail-\w+">([^<]+)<', trail)] == [
        "2024", "March 2024", "Week 10, 2024 (4 Mar \u2013 10 Mar)"]
    # Each node shows its period, summary, source count and when it was built.
    assert f"{node.source_count} sources" in day and node.built_at.strftime("%Y-%m-%d %H:%M") in day
    assert node.parts
    for part in node.parts:
        assert f'<p class="mw-part-text">{escape(part)}</p>' in day
    # A day's children are its segments; its sessions are linked.
    assert "1 segment" in day and 'href="/admin/dashboard/sessions/s-1/?namespace=alpha"' in day


def test_each_grip_opens_its_source_and_its_session(alice, history):
    node = RollupNode.objects.get(namespace__slug="alpha", level="day", start__date="2024-03-05")
    page = _open(alice, f"?node={node.pk}")
    grips = list(Grip.objects.filter(node=node))
    assert grips
    for grip in grips:
        memory_id = str(grip.memory_id)
        assert f'<a href="/admin/memories/memory/{memory_id}/change/" class="mw-grip-source">' in page
        source = alice.get(f"/admin/memories/memory/{memory_id}/change/")
        assert source.status_code == 200 and grip.excerpt in unescape(source.content.decode())
        session = f"/admin/dashboard/sessions/s-1/?namespace=alpha&amp;at={memory_id}#m-{memory_id}"
        assert f'<a href="{session}" class="mw-grip-session">' in page
        opened = _open(alice, unescape(session).split("#")[0])
        assert f'id="m-{memory_id}"' in opened  # the page holding it, to scroll to


def test_the_session_lists_its_events_and_memories_in_conversation_order(alice, history):
    page = _open(alice, f"{SESSIONS}s-1/?namespace=alpha")
    order = re.findall(r'<li class="mw-turn[^"]*" id="m-([0-9a-f-]+)"', page)
    expected = ["e1", "e2", "e3", "e4", "note", "e5", "e6"]
    assert order == [history[name] for name in expected]
    assert "7 items (6 events)" in page
    # Role, event type, a link to the memory page, the time.
    turn = re.search(rf'id="m-{history["e2"]}".*?</li>', page, re.S).group(0)
    assert '<span class="mw-who">user</span>' in turn and "user_message" in turn
    assert f'href="/admin/memories/memory/{history["e2"]}/change/"' in turn
    assert "2024-03-05 09:01:00" in turn
    # Agents' text is escaped; a long tool output is folded behind its first lines.
    assert "&lt;b&gt;at 10:00&lt;/b&gt;" in page and "<b>at 10:00</b>" not in page
    tool = re.search(rf'id="m-{history["e4"]}".*?</li>', page, re.S).group(0)
    assert '<details class="mw-fold">' in tool and "mw-tool" in tool
    assert "line 39: test_login PASSED" in tool  # all of it, inside the fold
    short = re.search(rf'id="m-{history["e2"]}".*?</li>', page, re.S).group(0)
    assert "<details" not in short
    # The session's first day in the timeline.
    day = RollupNode.objects.get(namespace__slug="alpha", level="day", start__date="2024-03-05")
    opened = alice.get(f"{TIMELINE}?namespace=alpha&day=2024-03-05")
    assert opened.status_code == 302 and opened["Location"].endswith(f"node={day.pk}")


def test_a_long_session_is_paginated_and_at_opens_the_right_page(alice, history, monkeypatch):
    monkeypatch.setattr(session_views, "PAGE_SIZE", 3)
    url = f"{SESSIONS}s-1/?namespace=alpha"
    ids = lambda page: re.findall(r'id="m-([0-9a-f-]+)"', page)  # noqa: E731
    first = _open(alice, url)
    assert ids(first) == [history[n] for n in ("e1", "e2", "e3")]
    assert "Page 1 of 3 (1\u20133)" in first and 'rel="next"' in first and 'rel="prev"' not in first
    second = _open(alice, url + "&page=2")
    assert ids(second) == [history[n] for n in ("e4", "note", "e5")]
    assert 'start="4"' in second
    assert ids(_open(alice, url + "&page=3")) == [history["e6"]]
    assert ids(_open(alice, url + "&page=99")) == [history["e6"]]  # past the end: the last
    # ?at= opens the page holding that memory.
    assert ids(_open(alice, f"{url}&at={history['note']}")) == ids(second)
    assert ids(_open(alice, f"{url}&at={history['e6']}")) == [history["e6"]]
    assert ids(_open(alice, f"{url}&at=not-a-uuid")) == ids(first)
    assert ids(_open(alice, f"{url}&at={history['f1']}")) == ids(first)  # another session's


def test_session_pages_take_a_bounded_number_of_queries(alice, alpha, history,
                                                        django_assert_max_num_queries):
    url = f"{SESSIONS}s-1/?namespace=alpha"
    with django_assert_max_num_queries(15) as few:
        alice.get(url)
    _events(alpha, "s-1", [(f"x{n}", "user_message", f"Turn {n} of a long talk.",
                            f"2024-03-05T10:{n:02d}:00Z") for n in range(40)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = alice.get(url).content.decode()
    assert page.count('<li class="mw-turn') == 47
    with django_assert_max_num_queries(len(few.captured_queries) + 2):  # +2: finding the page
        alice.get(f"{url}&at={history['e5']}")
    with django_assert_max_num_queries(15):
        alice.get(f"{SESSIONS}?namespace=alpha")


def test_the_sessions_index_lists_recent_sessions_first(alice, history, monkeypatch):
    page = _open(alice, f"{SESSIONS}?namespace=alpha")
    rows = re.findall(r'<tr><td data-label="Session"><a href="([^"]+)">([^<]+)</a></td>'
                      r'<td data-label="First">([^<]+)</td><td data-label="Last">([^<]+)</td>'
                      r'<td data-label="Events">(\d+)</td><td data-label="Memories and events">(\d+)</td>',
                      page)
    assert [(unescape(href), *rest) for href, *rest in rows] == [
        ("/admin/dashboard/sessions/s-2/?namespace=alpha", "s-2", "2024-03-06 14:00",
         "2024-03-06 14:01", "2", "2"),
        ("/admin/dashboard/sessions/s-1/?namespace=alpha", "s-1", "2024-03-05 09:00",
         "2024-03-05 09:05", "6", "7")]
    assert "s-beta" not in page
    assert ">s-1</a>" in _open(alice, f"{SESSIONS}?namespace=alpha&q=s-1")
    assert ">s-2</a>" not in _open(alice, f"{SESSIONS}?namespace=alpha&q=s-1")
    monkeypatch.setattr(session_views, "INDEX_PAGE_SIZE", 1)
    first = _open(alice, f"{SESSIONS}?namespace=alpha")
    assert ">s-2</a>" in first and ">s-1</a>" not in first and "Page 1 of 2" in first
    assert ">s-1</a>" in _open(alice, f"{SESSIONS}?namespace=alpha&page=2")


def test_another_tenants_nodes_and_sessions_are_not_found(alice, bob, beta, history, alpha):
    beta_day = RollupNode.objects.get(namespace__slug="beta", level="day")
    assert alice.get(TIMELINE, {"node": str(beta_day.pk)}).status_code == 404
    assert alice.get(TIMELINE, {"node": "not-a-uuid"}).status_code == 404
    assert alice.get(TIMELINE, {"namespace": "beta"}).status_code == 404
    assert alice.get(f"{SESSIONS}s-beta/", {"namespace": "beta"}).status_code == 404
    assert alice.get(f"{SESSIONS}s-beta/", {"namespace": "alpha"}).status_code == 404
    assert alice.get(SESSIONS, {"namespace": "beta"}).status_code == 404
    assert alice.get(f"{TIMELINE}rebuild/", {"namespace": "beta"}).status_code == 404
    alpha_day = RollupNode.objects.filter(namespace__slug="alpha", level="day").first()
    # The node's own namespace decides; naming another one does not reach it either.
    assert alice.get(TIMELINE, {"node": str(alpha_day.pk), "namespace": "beta"}).status_code == 404
    assert bob.get(TIMELINE, {"node": str(alpha_day.pk)}).status_code == 404
    assert b"Beta&#x27;s walnut vault" not in alice.get(TIMELINE, {"node": str(alpha_day.pk)}).content
    # A person who manages beta but only reads alpha: alpha's timeline is not theirs here.
    reading = person("rhea", beta)
    set_role(alpha, get_user_model().objects.get(username="rhea"), Role.READER)
    assert reading.get(TIMELINE, {"node": str(alpha_day.pk)}).status_code == 404
    assert reading.get(f"{SESSIONS}s-1/", {"namespace": "alpha"}).status_code == 404
    assert reading.get(TIMELINE, {"node": str(beta_day.pk)}).status_code == 200


def test_readers_and_agents_get_no_dashboard(alpha, history):
    for role in (Role.READER, Role.AGENT):
        client = person(f"member-{role.value}", alpha, role=role)
        for url in (TIMELINE, f"{TIMELINE}?namespace=alpha", f"{SESSIONS}s-1/?namespace=alpha",
                    SESSIONS, f"{TIMELINE}rebuild/?namespace=alpha"):
            response = client.get(url, follow=True)
            assert response.status_code == 403 and b"No dashboard access" in response.content
            assert b"Dana asked" not in response.content


def test_a_system_admin_sees_every_namespace(root, history):
    assert ">2024</a>" in _open(root, f"{TIMELINE}?namespace=beta")
    assert "walnut vault" in _open(root, f"{SESSIONS}s-beta/?namespace=beta")
    picker = _open(root, TIMELINE)
    assert '<option value="alpha"' in picker and '<option value="beta"' in picker


def test_an_empty_timeline_explains_how_it_gets_built(alice, alpha):
    page = _open(alice, TIMELINE)
    assert "No timeline yet" in page and "Not built yet." in page
    assert "manage.py rollup --namespace alpha" in page and "build_rollups" in page
    assert "<code>rollups</code>" in page and "MEMORYWEB_ROLLUPS_SCHEDULED" in page
    assert "This namespace is not scheduled" in page  # no events, no setting
    _events(alpha, "s-9", [("z1", "user_message", "Hello.", "2024-03-05T09:00:00Z")])
    assert "This namespace is scheduled." in _open(alice, TIMELINE)  # it holds events now


def test_rebuild_asks_first_then_builds_and_is_audited(alice, alpha):
    _events(alpha, "s-1", S1)
    url = f"{TIMELINE}rebuild/?namespace=alpha"
    confirm = _open(alice, url)
    assert 'id="mw-confirm"' in confirm and "Bring the timeline of alpha up to date now." in confirm
    assert "6 memories and events" in confirm and ">Build now</button>" in confirm
    assert not RollupNode.objects.filter(namespace=alpha).exists()
    # A POST without the confirmation's own field asks again and builds nothing.
    assert 'id="mw-confirm"' in alice.post(url).content.decode()
    assert not RollupNode.objects.filter(namespace=alpha).exists()

    done = alice.post(url, {"confirm": "yes"}, follow=True)
    assert done.redirect_chain[-1][0] == f"{TIMELINE}?namespace=alpha"
    text = done.content.decode()
    assert "Timeline of alpha built: 1 segment, 1 day, 1 week, 1 month, 1 year" in text
    assert ">2024</a>" in text
    entry = AuditEntry.objects.get(operation="timeline.build_requested")
    assert entry.actor == "user:alice" and entry.namespace == "alpha"
    assert entry.summary["rebuild"] is False and entry.summary["built"]["day"] == 1
    assert AuditEntry.objects.filter(operation="timeline.build", actor="system:timeline").count() == 5

    # Again: nothing changed, nothing built; "everything" summarises every node again.
    again = alice.post(url, {"confirm": "yes"}, follow=True).content.decode()
    assert "Timeline of alpha built: nothing new; " in again
    full = _open(alice, url + "&full=1")
    assert "Summarise every period of the timeline of alpha again, now." in full
    rebuilt = alice.post(url + "&full=1", {"confirm": "yes"}, follow=True).content.decode()
    assert "1 segment, 1 day, 1 week, 1 month, 1 year" in rebuilt
    assert AuditEntry.objects.filter(operation="timeline.build_requested").count() == 3
    assert AuditEntry.objects.filter(operation="timeline.build_requested",
                                     summary__rebuild=True).count() == 1


def test_a_failed_or_busy_build_says_so(alice, alpha, monkeypatch):
    _events(alpha, "s-1", S1)
    url = f"{TIMELINE}rebuild/?namespace=alpha"
    state = RollupState.objects.create(namespace=alpha, running_since=timezone.now(), lease="held")
    busy = alice.post(url, {"confirm": "yes"}, follow=True).content.decode()
    assert "Another build of the timeline of alpha is running" in busy
    assert not RollupNode.objects.filter(namespace=alpha).exists()
    state.delete()

    class Down:
        name = "openai:test"

        def summarize(self, sources, *, max_chars, focus=""):
            raise SummarizerError("upstream answered 429 Too Many Requests", retryable=True)

    monkeypatch.setattr("apps.core.summarizer.get_summarizer", Down)
    failed = alice.post(url, {"confirm": "yes"}, follow=True).content.decode()
    assert "1 node(s) could not be summarised and kept their previous version" in failed
    assert "429 Too Many Requests" in failed
    entries = AuditEntry.objects.filter(operation="timeline.build_requested").order_by("seq")
    assert [(e.summary["skipped"], e.summary["failed"]) for e in entries] == [("busy", 0), ("", 1)]


def test_rebuild_needs_the_csrf_token(alpha):
    _events(alpha, "s-1", S1)
    strict = person("carla", alpha)
    strict.handler.enforce_csrf_checks = True
    response = strict.post(f"{TIMELINE}rebuild/?namespace=alpha", {"confirm": "yes"})
    assert response.status_code == 403
    assert not RollupNode.objects.filter(namespace=alpha).exists()
    assert not AuditEntry.objects.filter(operation="timeline.build_requested").exists()


def test_an_archived_namespace_is_not_rebuilt(alice, alpha):
    alpha.archived_at = timezone.now()
    alpha.save(update_fields=["archived_at"])
    page = _open(alice, f"{TIMELINE}rebuild/?namespace=alpha")
    assert "archived" in page and 'id="mw-confirm-button"' not in page


def test_timeline_pages_take_a_bounded_number_of_queries(alice, alpha, history,
                                                         django_assert_max_num_queries):
    day = RollupNode.objects.get(namespace=alpha, level="day", start__date="2024-03-05")
    with django_assert_max_num_queries(15):
        alice.get(TIMELINE)
    with django_assert_max_num_queries(15) as few:
        alice.get(TIMELINE, {"node": str(day.pk)})
    # More sources and grips on that day: the same number of queries.
    _events(alpha, "s-3", [(f"y{n}", "user_message", f"Sam filed ticket T-{n} about the printer.",
                            f"2024-03-05T16:{n:02d}:00Z") for n in range(20)])
    assert build(alpha).ok
    day.refresh_from_db()
    assert Grip.objects.filter(node=day).count() > 3
    with django_assert_max_num_queries(len(few.captured_queries)):
        alice.get(TIMELINE, {"node": str(day.pk)})


def test_an_events_page_links_to_its_session(alice, alpha, history):
    page = alice.get(f"/admin/memories/memory/{history['e4']}/change/").content.decode()
    link = re.search(r'<a class="mw-session-link" id="mw-session-link"[^>]*href="([^"]+)">([^<]+)</a>', page)
    assert link, "no session link on the event's page"
    assert unescape(link.group(1)) == (f"/admin/dashboard/sessions/s-1/?namespace=alpha&at="
                                       f"{history['e4']}#m-{history['e4']}")
    assert link.group(2).startswith("This event in its session (s-1)")
    assert "Its session (s-1)" in alice.get(
        f"/admin/memories/memory/{history['note']}/change/").content.decode()
    plain = store(alpha, "No session here.")
    assert "mw-session-link" not in alice.get(
        f"/admin/memories/memory/{plain.pk}/change/").content.decode()


def test_the_tools_and_the_overview_link_the_timeline_and_sessions(alice, history):
    index = alice.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/timeline/"' in index and ">Timeline<" in index
    assert 'href="/admin/dashboard/sessions/"' in index and ">Sessions<" in index
    overview = alice.get("/admin/dashboard/overview/").content.decode()
    assert 'href="/admin/dashboard/timeline/?namespace=alpha"' in overview
    assert 'href="/admin/dashboard/sessions/?namespace=alpha"' in overview


@pytest.mark.parametrize(("session_id", "path"), [
    ("team/a b?c#1", "team/a%20b%3Fc%231"),
    ("100% done/", "100%25%20done/"),
    ("two\nlines", "two%0Alines"),
])
def test_any_session_id_round_trips(alice, alpha, session_id, path):
    ids = _events(alpha, session_id, [("o1", "user_message", "An odd session id.",
                                       "2024-03-05T09:00:00Z")])
    index = _open(alice, f"{SESSIONS}?namespace=alpha")
    href = unescape(re.search(r'<td data-label="Session"><a href="([^"]+)">', index).group(1))
    assert href == f"/admin/dashboard/sessions/{path}/?namespace=alpha"
    assert f'id="m-{ids["o1"]}"' in _open(alice, href)
    assert build(alpha).ok  # a grip links to it too
    day = RollupNode.objects.get(namespace=alpha, level="day")
    assert f'href="/admin/dashboard/sessions/{path}/?namespace=alpha&amp;at={ids["o1"]}' in _open(
        alice, f"?node={day.pk}")
