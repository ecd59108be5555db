"""Lookup precision in a real browser (issue 17, item 2 acceptance): an e-mail address
finds exactly that person's memories, the subject box narrows to a data subject, and a
capped search says so. The server runs with ``MEMORYWEB_DASHBOARD_SEARCH_LIMIT=5`` (set
before the module's Daphne starts), so a handful of memories is enough to cap a search.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

CAP_VAR = "MEMORYWEB_DASHBOARD_SEARCH_LIMIT"
JANE = ["Jane Doe (jane@example.com) asked for a copy of her invoices.",
        "Reply to jane@example.com about the refund on Monday."]
NOT_JANE = ["Mary Jane writes from mary.jane@example.com about the roof.",
            "jane@example.com.au is another Jane, in Sydney.",
            "Example.com hosts Jane's reading list; the com port stays open."]


@pytest.fixture(scope="module")
def lowered_cap() -> Iterator[None]:
    """The module's server lists at most 5 matches (the conftest's ``site`` copies the
    environment when it starts Daphne)."""
    before = os.environ.get(CAP_VAR)
    os.environ[CAP_VAR] = "5"
    yield
    if before is None:
        os.environ.pop(CAP_VAR, None)
    else:
        os.environ[CAP_VAR] = before


@pytest.fixture(scope="module")
def site(lowered_cap, site):
    """The shared site, started with the lowered cap, plus people's and invoices' memories."""
    for text in JANE[:1]:
        site.store("alpha_agent", text, metadata={"subject_id": "jane-doe"})
    for text in [*JANE[1:], *NOT_JANE]:
        site.store("alpha_agent", text)
    for i in range(7):
        site.store("alpha_agent", f"Invoice {i} for the walnut shelving order.")
    return site


def rows(page):
    return page.locator("#result_list tbody tr")


def test_an_email_address_finds_exactly_that_persons_memories(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/memories/memory/")
    page.fill("#searchbar", "jane@example.com")
    page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=jane%40example\.com"))
    expect(rows(page)).to_have_count(2)
    for text in JANE:
        expect(page.locator("#result_list")).to_contain_text(text)
    for text in NOT_JANE:
        expect(page.locator("#result_list")).not_to_contain_text(text[:30])
    expect(page.locator("#result_list mark").first).to_have_text(re.compile("jane@example.com", re.I))
    expect(page.locator("#lookup-notice")).to_contain_text("2 matches.")
    expect(page.locator("#lookup-notice")).to_contain_text("“jane@example.com” (exactly)")
    screenshot(page, "memory-lookup")

    # The same address with "any word" ticked: still exact.
    page.check("#match-any")
    page.click("#changelist-search input[type=submit]")
    expect(page).to_have_url(re.compile(r"[?&]match=any"))
    expect(rows(page)).to_have_count(2)

    # The data-subject box narrows to what export and erasure would take.
    page.goto("/admin/memories/memory/")
    page.fill("#filter-subject_id", "jane-doe")
    page.press("#filter-subject_id", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]subject_id=jane-doe"))
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text(JANE[0])


def test_a_capped_search_says_so(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/memories/memory/")
    page.fill("#searchbar", "invoice")  # 7 invoices + Jane's "invoices": over the cap of 5
    page.press("#searchbar", "Enter")
    notice = page.locator("#lookup-notice")
    expect(notice).to_contain_text("5+ matches — refine your search.")
    expect(page.locator("#search-count")).to_have_text(re.compile(r"^5\+ results"))
    expect(page.locator(".paginator")).to_contain_text("5+ memories (the first 5 listed)")
    expect(rows(page)).to_have_count(5)
    page.check("#action-toggle")  # every row on the page: no "Select all N" across pages
    expect(page.locator("#select-all-off")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Select all \d"))).to_have_count(0)
    screenshot(page, "memory-lookup-capped")

    page.fill("#searchbar", '"invoice 3"')  # refined: exact, no notice of a cap
    page.press("#searchbar", "Enter")
    expect(rows(page)).to_have_count(1)
    expect(notice).to_contain_text("1 match.")
    expect(notice).not_to_contain_text("refine")
