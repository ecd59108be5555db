"""Issue 20 item 7 in a real browser: a team admin opens the timeline from the dashboard's
Tools, builds it (confirmation page, real build in the server), drills year → month →
week → day, opens a grip's source, goes from the memory's page to its session view
(scrolled to that event), reads the session in order and unfolds a long tool output —
also at a phone's width, without the page scrolling sideways.

Events are posted over REST by alpha's agent key (``POST /api/v1/events``), as hooks do.
With MEMORYWEB_SCREENSHOTS=1 the screens are kept as docs/screenshots/timeline-day.png
and docs/screenshots/session-view.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import click_submit

LONG_OUTPUT = "\n".join(f"line {n}: tests/test_launch.py::test_review PASSED" for n in range(40))
SESSION = [
    ("session_start", "", "2024-03-05T09:00:00Z"),
    ("user_message", "Dana asked to move the launch review to Friday.", "2024-03-05T09:01:00Z"),
    ("tool_call", "calendar.move(event='launch review', day='Friday')", "2024-03-05T09:02:00Z"),
    ("tool_result", LONG_OUTPUT, "2024-03-05T09:03:00Z"),
    ("assistant_message", "The launch review is now on Friday <b>at 10:00</b>.", "2024-03-05T09:04:00Z"),
    ("session_end", "", "2024-03-05T09:05:00Z"),
]
#: A build in the server's request: the summary memories are embedded and indexed.
BUILD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def site(site):
    """The shared site plus a session of events on Tue 5 March 2024 and one the next day."""
    events = [{"id": f"sess-42-{n}", "event_type": kind, "session_id": "sess-42", "occurred_at": at,
               **({"text": text} if text else {})} for n, (kind, text, at) in enumerate(SESSION)]
    events.append({"id": "sess-43-0", "event_type": "user_message", "session_id": "sess-43",
                   "occurred_at": "2024-03-06T14:00:00Z",
                   "text": "Priya booked the Berlin venue near Alexanderplatz."})
    response = site.api("alpha_agent", "POST", "events", json={"events": events})
    assert response.status_code in (200, 201), response.text
    return site


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1


def test_timeline_drill_down_grip_source_and_session(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/")
    page.locator(".app-dashboard").get_by_role("link", name="Timeline").click()
    expect(page).to_have_url(re.compile(r"/admin/dashboard/timeline/$"))
    expect(page.locator("#timeline-empty")).to_contain_text("manage.py rollup --namespace alpha")

    # Build it: a confirmation page first, then the build runs in the server.
    page.locator("#timeline-build").click()
    expect(page.locator("#mw-effect")).to_have_text("Bring the timeline of alpha up to date now.")
    click_submit(page.locator("#mw-confirm-button"))
    expect(page.locator("ul.messagelist")).to_contain_text("Timeline of alpha built:",
                                                           timeout=BUILD_TIMEOUT_MS)
    expect(page.locator("#timeline-state")).to_contain_text("Last built")
    expect(page.locator("#timeline-years a.mw-open-node").first).to_have_text("2024")
    screenshot(page, "timeline-years")

    # Year → month → week → day.
    for label in ("2024", "March 2024", "Week 10, 2024 (4 Mar \u2013 10 Mar)", "Tue 5 Mar 2024"):
        page.locator("a.mw-open-node", has_text=label).click()
        expect(page.locator("#timeline-trail [aria-current=page]")).to_have_text(label)
    node = page.locator("#timeline-node")
    expect(node).to_have_attribute("data-level", "day")
    expect(page.locator("#timeline-trail a")).to_have_text([
        "Timeline of alpha", "2024", "March 2024", "Week 10, 2024 (4 Mar \u2013 10 Mar)"])
    expect(page.locator("#node-meta")).to_contain_text("6 sources")
    grips = node.locator("li.mw-grip")
    expect(grips.first).to_be_visible()
    screenshot(page, "timeline-day")

    # A grip opens its source: the memory's page, which links to its session.
    grip = grips.filter(has_text="Dana asked").first
    memory_id = grip.get_attribute("data-memory")
    grip.locator("a.mw-grip-source").click()
    expect(page).to_have_url(re.compile(rf"/admin/memories/memory/{memory_id}/change/$"))
    expect(page.locator("textarea[name=content]")).to_have_value(
        "Dana asked to move the launch review to Friday.")
    page.locator("#mw-session-link").click()
    expect(page).to_have_url(re.compile(rf"/admin/dashboard/sessions/sess-42/\?namespace=alpha"
                                        rf"&at={memory_id}#m-{memory_id}$"))
    assert page.evaluate("document.querySelector(':target') && document.querySelector(':target').id") \
        == f"m-{memory_id}"

    # The session, in the order it happened; agents' text shown as text; a long output folded.
    turns = page.locator("#session-turns > li.mw-turn")
    expect(turns).to_have_count(len(SESSION))
    assert [turns.nth(i).get_attribute("data-event-type") for i in range(len(SESSION))] == [
        kind for kind, _, _ in SESSION]
    expect(turns.nth(4)).to_contain_text("The launch review is now on Friday <b>at 10:00</b>.")
    tool = turns.nth(3)
    expect(tool.get_by_text("line 39:", exact=False)).to_be_hidden()
    expect(tool.locator(".mw-preview")).to_be_visible()
    tool.locator("details.mw-fold summary").click()
    expect(tool.get_by_text("line 39:", exact=False)).to_be_visible()
    expect(tool.locator(".mw-preview")).to_be_hidden()  # the full text replaces the first lines
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "session-view")

    # From the grip straight to the session, and the session view at a phone's width.
    page.go_back()
    page.go_back()
    expect(page.locator("#timeline-node")).to_have_attribute("data-level", "day")
    page.locator("li.mw-grip", has_text="Dana asked").first.locator("a.mw-grip-session").click()
    expect(page).to_have_url(re.compile(rf"#m-{memory_id}$"))
    page.set_viewport_size({"width": 375, "height": 812})
    _no_sideways_scroll(page)
    page.go_back()
    _no_sideways_scroll(page)

    # The sessions index, the latest first, leads to each session.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto("/admin/dashboard/timeline/?namespace=alpha")
    page.locator("#timeline-sessions").click()
    sessions = page.locator("#session-index tbody tr")
    expect(sessions.locator("td:first-child")).to_have_text(["sess-43", "sess-42"])
    sessions.get_by_role("link", name="sess-43").click()
    expect(page.locator("#session-turns > li.mw-turn")).to_have_text(
        [re.compile("Priya booked the Berlin venue")])


def test_another_namespaces_session_is_not_found_in_the_browser(person, site):
    page = person("bob")
    response = page.goto("/admin/dashboard/sessions/sess-42/?namespace=alpha")
    assert response.status == 404
    response = page.goto("/admin/dashboard/sessions/sess-42/?namespace=beta")
    assert response.status == 404
