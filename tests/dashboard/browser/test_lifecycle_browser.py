"""Issue 21 item 6 in a real browser: a team admin opens Forgetting from the dashboard's
Tools, sees the weak memories the review proposed, forgets one (confirmation page, then
the erasure request it opened) and keeps another, at a laptop's width (1366 px) and a
phone's (375 px) without the page scrolling sideways; a system admin follows a namespace
merge to its report and reverts it with the source's slug typed.

This module starts its own server (as the shared ``site`` fixture does) with
``MEMORYWEB_FORGET_AFTER_DAYS=0``, so the review proposes at once what is weak, a third
namespace (gamma) to merge, and a system key to merge it over REST. The review job runs
beside the server (``manage.py jobs run review_strength``) on its data directory. With
MEMORYWEB_SCREENSHOTS=1 the screens are kept as docs/screenshots/forgetting-*.png and
namespace-merge-*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.dashboard.browser.test_layouts import CHECK, MIN_CONTRAST
from tests.helpers.browser import PASSWORD, SETUP, Site, click_submit
from tests.helpers.embedded import embedded_environment, manage, migrate
from tests.servers import DaphneServer

WIDTHS = {"1366": {"width": 1366, "height": 900}, "375": {"width": 375, "height": 812}}
WEAK = ["The printer on floor 2 was jammed once in March.",
        "Someone said the canteen might open late one Monday.",
        "A visitor once parked in the loading bay by mistake."]
#: gamma's own setup: the namespace, its agent's key, a system admin's key.
MORE = """
run("create_namespace", "gamma")
keys["gamma_agent"] = run("create_api_key", "--namespace", "gamma", "--role", "agent",
                          "--agent-id", "gamma-agent")
keys["system"] = run("create_api_key", "--system-admin", "--name", "ops")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The shared fixture's people and keys, forgetting without delay, three weak
    memories and a strong one in alpha (reviewed), two memories in gamma."""
    base = tmp_path_factory.mktemp("lifecycle-site")
    env = embedded_environment(base / "data", MEMORYWEB_FORGET_AFTER_DAYS="0")
    migrate(env)
    setup = SETUP.replace('print("KEYS="', MORE + 'print("KEYS="')
    out = manage(env, "shell", "-c", setup.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    with DaphneServer(base / "daphne.log", env) as server:
        found = Site(url=server.url, keys=keys)
        long_ago = (datetime.now(UTC) - timedelta(days=3 * 365)).isoformat()
        for n, text in enumerate(WEAK):
            found.memories[f"weak{n}"] = found.store("alpha_agent", text, importance=0.0,
                                                     confidence=0.1, occurred_at=long_ago)
        found.memories["strong"] = found.store("alpha_agent", "The release train leaves every "
                                               "second Tuesday.", importance=1.0)
        for text in ("Gamma's build agents run on the blue rack.", "The office closes at six."):
            found.store("gamma_agent", text)
        assert "proposed': 3" in manage(env, "jobs", "run", "review_strength")
        yield found


def _fits_and_reads(page, where: str) -> None:
    """Nothing scrolls sideways and every text reads against its background."""
    page.wait_for_load_state("networkidle")
    found = page.evaluate(CHECK, MIN_CONTRAST)
    width = page.evaluate("document.documentElement.clientWidth")
    assert found["scroll"] <= width + 1, f"{where}: the page is {found['scroll']} px wide"
    assert not found["poor"], f"{where}: low contrast: {found['poor']}"


def _request_state(site: Site, request_id: str) -> str:
    response = site.api("alpha_admin", "GET", f"erasure-requests/{request_id}")
    assert response.status_code == 200, response.text
    return response.json()["state"]


def _forget_one(page, site: Site, memory: str, width: str, screenshot) -> None:
    """From the list, through the confirmation, to the erasure request's page."""
    row = page.locator(f'tr.mw-weak[data-memory="{site.memories[memory]["id"]}"]')
    expect(row.locator("a.mw-memory-link")).to_have_attribute(
        "href", f"/admin/memories/memory/{site.memories[memory]['id']}/change/")
    expect(row).to_contain_text("importance 0.00")
    row.locator("input[name=ids]").check()
    page.locator("#forgetting-forget").click()
    expect(page.locator("#mw-effect")).to_have_text(
        "Forget 1 memory in alpha: open a certified erasure request for it.")
    expect(page.locator("#mw-confirm-details")).to_contain_text("Nothing is erased yet")
    expect(page.locator("#mw-confirm-button")).to_have_text("Request erasure of 1 memory")
    _fits_and_reads(page, f"the confirmation at {width} px")
    if width == "1366":
        screenshot(page, "forgetting-confirm")
    click_submit(page.locator("#mw-confirm-button"))
    expect(page).to_have_url(re.compile(r"/admin/privacy/erasurerequest/[0-9a-f-]+/change/$"))
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Forgetting 1 memory in alpha is now this erasure request")
    _fits_and_reads(page, f"the erasure request at {width} px")
    request_id = page.url.rstrip("/").split("/")[-2]
    assert _request_state(site, request_id) == "requested"
    assert site.api("alpha_admin", "GET", f"memories/{site.memories[memory]['id']}").status_code == 200
    page.locator("#forgetting-back-link").click()
    expect(page).to_have_url(re.compile(r"/admin/dashboard/forgetting/\?namespace=alpha$"))


def test_forget_and_keep_from_the_review_list(person, site, screenshot):
    page = person("alice")
    page.set_viewport_size(WIDTHS["1366"])
    page.goto("/admin/")
    page.locator(".app-dashboard").get_by_role("link", name="Forgetting").click()
    expect(page).to_have_url(re.compile(r"/admin/dashboard/forgetting/$"))
    expect(page.locator("tr.mw-weak")).to_have_count(3)
    expect(page.locator("#forgetting-states")).to_contain_text("Proposed (3)")
    expect(page.locator("#forgetting-rows")).not_to_contain_text("release train")
    _fits_and_reads(page, "the list at 1366 px")
    screenshot(page, "forgetting-list")
    _forget_one(page, site, "weak0", "1366", screenshot)

    page.set_viewport_size(WIDTHS["375"])
    expect(page.locator("tr.mw-weak")).to_have_count(2)
    _fits_and_reads(page, "the list at 375 px")
    screenshot(page, "forgetting-list-375")
    _forget_one(page, site, "weak1", "375", screenshot)

    # Keep the last one: at once, no confirmation (nothing is deleted).
    page.locator(f'tr.mw-weak[data-memory="{site.memories["weak2"]["id"]}"] input[name=ids]').check()
    page.locator("#forgetting-keep").click()
    expect(page.locator("ul.messagelist")).to_contain_text("1 memory kept")
    expect(page.locator("#forgetting-empty")).to_contain_text("review_strength")
    _fits_and_reads(page, "the empty list at 375 px")
    page.locator("#forgetting-states a[data-state=requested]").click()
    expect(page.locator("tr.mw-weak a.mw-erasure-link")).to_have_count(2)
    _fits_and_reads(page, "the requested list at 375 px")
    page.emulate_media(color_scheme="dark")  # the admin's dark theme, by the system's preference
    page.reload()  # loaded dark: the admin's links fade their colour in (a transition)
    _fits_and_reads(page, "the requested list at 375 px, dark")
    page.goto("/admin/dashboard/forgetting/?namespace=alpha&state=dismissed")
    expect(page.locator("tr.mw-weak")).to_have_count(1)
    _fits_and_reads(page, "the kept list at 375 px, dark")


def test_a_team_admin_is_refused_namespace_merges(person):
    page = person("alice")
    expect(page.locator(".app-dashboard").get_by_role("link", name="Namespace merges")).to_have_count(0)
    assert page.goto("/admin/dashboard/namespace-merges/").status == 403
    expect(page.locator("#system-only")).to_contain_text("Namespace merges are for system admins.")
    page.locator("#system-only-home").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))


def test_follow_a_namespace_merge_and_revert_it(person, site, screenshot):
    merged = site.api("system", "POST", "namespaces/gamma/merge-into", json={"target": "beta"})
    assert merged.status_code == 200 and merged.json()["state"] == "done", merged.text
    page = person("root")
    for width in WIDTHS:
        page.set_viewport_size(WIDTHS[width])
        page.goto("/admin/")
        page.locator(".app-dashboard").get_by_role("link", name="Namespace merges").click()
        row = page.locator("tr.mw-merge")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("2 of 2 moved")
        _fits_and_reads(page, f"the merges at {width} px")
        row.locator("a.mw-merge-link").click()
        expect(page.locator("#merge-summary")).to_contain_text("Done: 2 of 2 memories")
        expect(page.locator("#merge-gains")).to_contain_text("bob")
        _fits_and_reads(page, f"a merge at {width} px")
        if width == "1366":
            screenshot(page, "namespace-merge")

    page.locator("#merge-revert").click()
    expect(page.locator("#mw-effect")).to_have_text(
        "Revert the merge of gamma into beta: move 2 memories back into gamma and unarchive it.")
    _fits_and_reads(page, "the revert confirmation at 375 px")
    screenshot(page, "namespace-merge-revert-375")
    page.emulate_media(color_scheme="dark")
    page.reload()
    _fits_and_reads(page, "the revert confirmation at 375 px, dark")
    page.fill("#mw-typed", "beta")
    click_submit(page.locator("#mw-confirm-button"))
    expect(page.locator("#mw-confirm-error")).to_contain_text("Type gamma exactly to confirm")
    page.fill("#mw-typed", "gamma")
    click_submit(page.locator("#mw-confirm-button"))
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Merge of gamma into beta reverted: 2 memories moved back into gamma")
    expect(page.locator("#merge-revert")).to_have_count(0)
    back = site.api("system", "GET", "memories", params={"namespace": "gamma"})
    assert back.status_code == 200 and back.json()["count"] == 2, back.text
    # gamma's agent key stays revoked: re-issuing access is for people.
    assert site.api("gamma_agent", "GET", "memories").status_code == 401
