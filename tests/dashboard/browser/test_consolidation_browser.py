"""Issue 21 item 6 in a real browser: a team admin opens Consolidation from the dashboard's
Tools, runs a dry run, sees the proposals side by side, accepts one through its
confirmation (a real merge in the server), rejects another on the page, then goes from the
kept memory's page to a merged one, which says "Merged into", and unmerges it.

The memories are stored over REST by alpha's agent key, as agents do. With
MEMORYWEB_SCREENSHOTS=1 the screens are kept as docs/screenshots/consolidation-*.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import PASSWORD, click_submit
from tests.lifecycle.test_consolidation import CONFLICTS, DEPLOYS, STAGING


@pytest.fixture(scope="module")
def site(site):
    """The shared site plus two groups of paraphrases and three contradicting pairs in alpha."""
    texts = [*STAGING, *DEPLOYS, *(t for a, b, _ in CONFLICTS for t in (a, b))]
    response = site.api("alpha_agent", "POST", "memories/batch",
                        json={"memories": [{"content": t} for t in texts]})
    assert response.status_code == 201, response.text
    site.memories.update({row["content"]: row for row in response.json()["results"]})
    return site


def _superseded_by(site, memory_id: str) -> str | None:
    response = site.api("alpha_admin", "GET", f"memories/{memory_id}")
    assert response.status_code == 200, response.text
    return response.json()["superseded_by"]


def test_review_accept_and_unmerge(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/")
    page.locator(".app-dashboard").get_by_role("link", name="Consolidation").click()
    expect(page).to_have_url(re.compile(r"/admin/dashboard/consolidation/$"))
    expect(page.locator("#consolidation-summary")).to_have_count(0)  # opening runs nothing

    # The dry run: two proposals, side by side, the kept one marked; three conflicts.
    page.get_by_label("Threshold").fill("0.85")
    page.locator("#consolidation-run").click()
    expect(page.locator("#consolidation-summary")).to_contain_text("2 proposals, 3 conflicts")
    proposals = page.locator("section.mw-proposal")
    expect(proposals).to_have_count(2)
    staging = proposals.filter(has_text=STAGING[1])
    expect(staging.locator("li.mw-member")).to_have_count(3)
    expect(staging.locator("li.mw-survivor")).to_have_count(1)
    expect(staging.locator("li.mw-survivor input[type=radio]")).to_be_checked()
    expect(page.locator("#consolidation-conflicts li.mw-conflict")).to_have_count(3)
    screenshot(page, "consolidation-proposals")
    survivor_id = staging.get_attribute("data-survivor")
    members = staging.get_attribute("data-members").split()

    # Accept: the confirmation names the effect; confirming merges in the server.
    staging.get_by_role("button", name="Accept…").click()
    expect(page.locator("#mw-effect")).to_contain_text("Merge 3 memories in alpha, keeping")
    expect(page.locator("#mw-confirm-details")).to_contain_text("Edit the merged text below")
    expect(page.locator("#mw-text")).to_be_visible()  # the merged text, editable, left as it is
    screenshot(page, "consolidation-confirm")
    click_submit(page.locator("#mw-confirm-button"))
    expect(page.locator("ul.messagelist")).to_contain_text("Merged 3 memories in alpha")
    expect(proposals).to_have_count(1)  # a fresh dry run: what is left
    assert all(_superseded_by(site, m) == survivor_id for m in members if m != survivor_id)
    kept_link = page.locator("#consolidation-kept-link")  # in the message: the kept memory
    expect(kept_link).to_have_attribute("href", f"/admin/memories/memory/{survivor_id}/change/")

    # Reject hides the other proposal on the page only.
    proposals.first.get_by_role("link", name="Reject").click()
    expect(page.locator("#consolidation-hidden")).to_contain_text("1 proposal hidden")
    expect(proposals).to_have_count(0)
    expect(page.locator("#consolidation-none")).to_contain_text("Every proposal is hidden.")

    # The kept memory's page lists what was merged into it; a merged one says where it went.
    page.goto(f"/admin/memories/memory/{survivor_id}/change/")
    expect(page).to_have_url(re.compile(rf"/admin/memories/memory/{survivor_id}/change/$"))
    page.get_by_role("tab", name="Lineage 2").click()
    merged = page.locator("#lineage-merged li")
    expect(merged).to_have_count(2)
    merged_id = merged.first.get_attribute("data-memory")
    merged.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/admin/memories/memory/{merged_id}/change/$"))
    expect(page.locator("#mw-merged-into")).to_contain_text("Merged into")
    expect(page.locator("#mw-merged-into a").first).to_have_attribute(
        "href", f"/admin/memories/memory/{survivor_id}/change/")
    page.get_by_role("tab", name=re.compile(r"^Lineage")).click()
    screenshot(page, "consolidation-lineage")

    # Unmerge it: a confirmation, then it alone is current again.
    page.locator("#lineage-unmerge").click()
    expect(page.locator("#mw-effect")).to_contain_text("Unmerge “")
    click_submit(page.locator("#mw-confirm-button"))
    expect(page.locator("ul.messagelist")).to_contain_text("1 memory is current again")
    expect(page.locator("#mw-merged-into")).to_have_count(0)
    assert _superseded_by(site, merged_id) is None
    other = next(m for m in members if m not in (survivor_id, merged_id))
    assert _superseded_by(site, other) == survivor_id

    # At a phone's width the proposals stack and nothing scrolls sideways.
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto("/admin/dashboard/consolidation/?namespace=alpha&threshold=0.85&run=1")
    expect(page.locator("section.mw-proposal")).to_have_count(2)
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1


def test_a_reader_and_another_team_admin_get_no_review(anonymous_page, person, site):
    page = anonymous_page  # rita reads alpha: her login works, the dashboard does not open
    page.goto("/accounts/login/?next=/admin/")
    page.fill("input[name=login]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(re.compile(r"/admin/login/"))
    assert page.goto("/admin/dashboard/consolidation/?namespace=alpha&run=1").status == 403
    expect(page.locator("h1")).to_have_text("No dashboard access")
    bob = person("bob")  # beta's team admin: alpha is not found
    assert bob.goto("/admin/dashboard/consolidation/?namespace=alpha&run=1").status == 404
    memory = site.memories[STAGING[0]]["id"]
    assert bob.goto(f"/admin/dashboard/consolidation/unmerge/{memory}/").status == 404
