"""The operational pages in a real browser (issue 17 item 8): the live feed's memory
links, filters and pause; the overview's charts readable in the dark theme; the recall
playground at a phone's width, and a reload that does not recall again.

Alice is the team admin of alpha (see conftest.py); agent-1 and leaver-7 are alpha's
agents, admin-1 its admin key. Each test stores its own memories.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.helpers.browser import TIMEOUT_MS, watch

LIVE = "/admin/dashboard/live/?namespace=alpha"
PHONE = {"width": 375, "height": 812}

#: Runs in the page: the WCAG contrast ratio of two computed CSS colours.
CONTRAST = """
([a, b]) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, bl] = rgb(c).map((v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl; };
  const [l1, l2] = [lum(a), lum(b)];
  return (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
}
"""


def open_live(page, cap: int | None = None):
    """The feed for alpha, live; ``cap`` shrinks the pause buffer so the cap can be seen
    without 500 events: the page's data-buffer-cap is changed as it is parsed, before
    live.js (fetched after it) reads it. (Not by rewriting the response with
    page.route: Chromium then treats the page as public and blocks its WebSocket to the
    loopback server.)"""
    if cap is not None:
        page.add_init_script("""new MutationObserver((changes, observer) => {
            const feed = document.getElementById("mw-feed");
            if (feed) { feed.dataset.bufferCap = "CAP"; observer.disconnect(); }
          }).observe(document, {childList: true, subtree: true});""".replace("CAP", str(cap)))
    page.goto(LIVE)
    if cap is not None:
        assert page.locator("#mw-feed").get_attribute("data-buffer-cap") == str(cap)
    expect(page.locator("#mw-live-status")).to_have_text("live", timeout=30_000)


def rows_with(page, text: str):
    return page.locator("#mw-feed .mw-event", has_text=text)


def test_live_feed_links_to_the_memory_and_filters_by_agent_and_event(person, site, screenshot):
    page = person("alice")
    open_live(page)
    stored = site.store("alpha_agent", "Feed link: the plant on the third floor needs water.")
    row = rows_with(page, "Feed link:")
    expect(row).to_have_count(1, timeout=15_000)
    link = row.locator("a.mw-event-memory")
    expect(link).to_have_text(stored["content"])
    expect(link).to_have_attribute("href", f"/admin/memories/memory/{stored['id']}/change/")

    # Untrusted content stays text: no element is made from it.
    hostile = '<img src=x onerror="document.title=\'owned\'"> Feed hostile note'
    site.store("alpha_agent", hostile)
    expect(rows_with(page, "Feed hostile note").locator(".mw-event-content")).to_have_text(hostile)
    expect(page.locator("#mw-feed img")).to_have_count(0)

    other = site.store("alpha_leaver", "Feed other agent: the leaver's locker is number 12.")
    expect(rows_with(page, "Feed other agent:")).to_have_count(1, timeout=15_000)

    # A deletion says so, and links nowhere (the memory's page is gone).
    assert site.api("alpha_admin", "DELETE", f"memories/{other['id']}").status_code == 204
    deleted = page.locator("#mw-feed .mw-event-deleted").first
    expect(deleted.locator(".mw-event-content")).to_have_text("1 memory deleted", timeout=15_000)
    expect(deleted.locator("a")).to_have_count(0)

    # Filter by agent: only agent-1's events stay; the address keeps the filter.
    page.select_option("#mw-live-agent", "agent-1")
    expect(rows_with(page, "Feed link:")).to_be_visible()
    expect(rows_with(page, "Feed other agent:")).to_be_hidden()
    expect(deleted).to_be_hidden()  # by admin-1
    expect(page).to_have_url(re.compile(r"[?&]agent=agent-1"))
    site.store("alpha_leaver", "Feed later other: arrives hidden.")
    site.store("alpha_agent", "Feed later mine: arrives shown.")
    expect(rows_with(page, "Feed later mine:")).to_be_visible(timeout=15_000)
    expect(rows_with(page, "Feed later other:")).to_have_count(1)
    expect(rows_with(page, "Feed later other:")).to_be_hidden()

    # Filter by event type: only deletions (of any agent).
    page.select_option("#mw-live-agent", "")
    page.uncheck("#mw-live-filters input[value=created]")
    expect(deleted).to_be_visible()
    expect(rows_with(page, "Feed link:")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"event=deleted"))
    page.check("#mw-live-filters input[value=created]")
    screenshot(page, "live-feed-filters")

    link.click()  # the memory's dashboard page
    expect(page).to_have_url(re.compile(rf"/admin/memories/memory/{stored['id']}/change/$"))
    expect(page.locator("textarea[name=content]")).to_have_value(stored["content"])


def test_live_feed_pause_buffers_and_resume_shows(person, site):
    page = person("alice")
    open_live(page, cap=2)
    button = page.locator("#mw-live-pause")
    button.click()
    expect(button).to_have_text("Resume")
    expect(button).to_have_attribute("aria-pressed", "true")
    before = page.locator("#mw-feed .mw-event").count()
    for n in (1, 2, 3):
        site.store("alpha_agent", f"Paused note number {n} about the fire doors.")
    note = page.locator("#mw-live-buffered")
    # Three arrived; at most two are kept (the cap, shrunk for the test), the oldest dropped.
    expect(note).to_have_text("Paused: 2 new events (1 older one dropped: at most 2 are kept)",
                              timeout=15_000)
    assert page.locator("#mw-feed .mw-event").count() == before  # nothing shown while paused

    button.click()
    expect(button).to_have_text("Pause")
    expect(note).to_have_text("")
    events = page.locator("#mw-feed .mw-event")
    expect(events).to_have_count(before + 2)
    expect(events.nth(0)).to_contain_text("Paused note number 3")  # newest on top
    expect(events.nth(1)).to_contain_text("Paused note number 2")
    expect(rows_with(page, "Paused note number 1")).to_have_count(0)
    site.store("alpha_agent", "Unpaused note: shown at once.")
    expect(events.nth(0)).to_contain_text("Unpaused note", timeout=15_000)


def _dark_page(browser, site, person, *, toggle: bool):
    """Alice's overview in the dark theme: by the system's preference, or (``toggle``)
    with a light preference and the admin's theme toggle set to dark."""
    person("alice")  # logs in once per module, keeps the cookies
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=site.url,
                                  color_scheme="light" if toggle else "dark",
                                  storage_state=site.storage["alice"])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    watch(page, problems)
    if toggle:  # what the admin's toggle does (admin/js/theme.js)
        page.add_init_script("localStorage.setItem('theme', 'dark')")
    return context, page, problems


def test_overview_charts_are_readable_in_dark_mode(browser, site, person, screenshot):
    site.store("alpha_agent", "Chart check: today's bar must be seen in the dark.")
    for toggle in (False, True):
        context, page, problems = _dark_page(browser, site, person, toggle=toggle)
        try:
            page.goto("/admin/dashboard/overview/?namespace=alpha")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert page.evaluate(CONTRAST, [background, "rgb(0, 0, 0)"]) < 1.5, background  # dark
            growth = page.locator("#growth svg.mw-chart-line")
            expect(growth).to_be_visible()
            expect(page.locator("svg.mw-chart")).to_have_count(3)  # held, new per day, recalls
            for selector, prop in [("#growth .mw-line", "stroke"), ("#growth .mw-end", "fill"),
                                   ("#growth svg.mw-chart-bars rect.bar", "fill"),
                                   ("#recalls rect.bar", "fill"), ("#growth .mw-day", "fill"),
                                   ("#growth .mw-axis-title", "fill"), ("#growth .mw-axis", "stroke")]:
                colour = page.locator(selector).first.evaluate(
                    f"(e) => getComputedStyle(e).{prop}")
                ratio = page.evaluate(CONTRAST, [colour, background])
                assert ratio >= 3, f"{selector} {prop} {colour} on {background}: {ratio:.2f}"
            # Today's new-memories bar has a height, and today is labelled on every chart.
            today = page.locator("#growth svg.mw-chart-bars rect.bar").last
            assert float(today.get_attribute("data-value")) >= 1
            assert today.evaluate("(e) => e.getBBox().height") > 0
            expect(page.locator("svg.mw-chart .mw-today-label")).to_have_text(["today"] * 3)
            expect(growth.locator(".mw-axis-title")).to_have_text(["Memories held", "Day (UTC)"])
            if not toggle:
                screenshot(page, "overview-dark")
        finally:
            context.close()
        assert not problems, problems


def _access_count(site, memory: dict) -> int:
    return site.api("alpha_admin", "GET", f"memories/{memory['id']}").json()["access_count"]


def test_playground_at_375_px_and_a_reload_does_not_recall(browser, site, person, screenshot):
    person("alice")
    context = browser.new_context(viewport=PHONE, base_url=site.url,
                                  storage_state=site.storage["alice"])
    context.set_default_timeout(TIMEOUT_MS)
    page, problems = context.new_page(), []
    watch(page, problems)
    memory = site.store("alpha_agent", "Phone check: the bike shed key hangs by the door.")
    marker = site.store("alpha_agent", "Marker: the conference room projector remote is in the drawer.")
    try:
        page.goto("/admin/dashboard/playground/?namespace=alpha")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        form = page.locator("#playground-form")
        query = form.locator("input[name=query]")
        label = form.locator("label[for=id_query]")
        field, name = query.bounding_box(), label.bounding_box()
        assert field["y"] > name["y"] and field["x"] <= name["x"] + 2  # stacked: under its label
        assert field["x"] + field["width"] <= PHONE["width"]
        query.fill("where does the bike shed key hang")
        methods: list[str] = []
        page.on("request", lambda r: r.resource_type == "document" and methods.append(r.method))
        form.get_by_role("button", name="Recall").click()
        results = page.locator("#playground-results")
        first = results.locator("tr.mw-result").first
        expect(first).to_contain_text("bike shed key")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        box = first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # a card, wrapped
        screenshot(page, "playground-375")
        assert methods == ["POST", "GET"]  # the recall, then the redirect's page

        # The recall counted once: wait for the count to be written (the server buffers
        # counts and writes them every MEMORYWEB_RECALL_STATS_SECONDS).
        counted = _wait_for_count(site, memory, lambda n: n >= 1)
        marker_before = _access_count(site, marker)
        page.reload()
        expect(first).to_contain_text("bike shed key")  # the same results, shown again
        assert methods[-1] == "GET"
        # A marker recall over the API, of another memory only. The server writes counts
        # in arrival order, so once the marker's count is written, a recall made by the
        # reload (before it) is written too: the memory's count must not have moved.
        answer = site.api("alpha_admin", "POST", "recall",
                          json={"query": "conference room projector remote", "k": 1})
        assert [hit["id"] for hit in answer.json()["results"]] == [marker["id"]], answer.text
        _wait_for_count(site, marker, lambda n: n > marker_before)
        assert _access_count(site, memory) == counted
    finally:
        context.close()
    assert not problems, problems


def _wait_for_count(site, memory: dict, done) -> int:
    """The memory's access count once ``done(count)``, asking again until the server has
    written it (10 s at most)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        count = _access_count(site, memory)
        if done(count) or time.monotonic() > deadline:
            assert done(count), f"access count stayed at {count}"
            return count
        time.sleep(0.2)
