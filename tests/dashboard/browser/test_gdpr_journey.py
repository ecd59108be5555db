"""The whole GDPR journey in a real browser (issue 17, acceptance): a data-protection
officer with no API key and no shell finds a data subject's memories, exports them,
opens an erasure request and reviews it (opening the matches, exporting them first);
another team admin approves it (four-eyes is on); a system admin executes it with the
typed confirmation; the certificate is verified ("Verify now") and printed.

Its own Daphne (four-eyes on), with priya the DPO (team admin of alpha), alice another
team admin of alpha, bob beta's and root a superuser. Agents store the memories over
REST, as they would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.memories import stores
from tests.helpers.browser import COLOUR_JS, PASSWORD, SETUP, TIMEOUT_MS, Site, click_submit
from tests.helpers.embedded import embedded_environment, manage, migrate
from tests.servers import DaphneServer

#: The stores a certificate asks (apps/memories/stores.py): nine before the registry, ten
#: since it added the admin's change log; "Verify now" adds three checks of its own.
CHECKED_STORES = [store for store in stores.stores() if store.remaining is not None]
VERIFY_CHECKS = 3 + len(CHECKED_STORES)

SUBJECT = "jane-doe-4411"
#: Who else the journey needs: the DPO, a second team admin of alpha.
PEOPLE = """
run("add_member", "alpha", "priya", "--role", "admin", "--password", PASSWORD)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The shared browser site (conftest.py) with four-eyes on and priya the DPO; three
    memories about the data subject in alpha, one unrelated, one about the same subject id
    in beta (another tenant's, untouched)."""
    base = tmp_path_factory.mktemp("gdpr-site")
    env = embedded_environment(base / "data", MEMORYWEB_ERASURE_FOUR_EYES="true")
    migrate(env)
    setup = SETUP.replace('print("KEYS="', PEOPLE + 'print("KEYS="')
    out = manage(env, "shell", "-c", setup.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    with DaphneServer(base / "daphne.log", env) as server:
        found = Site(url=server.url, keys=keys)
        about = {"metadata": {"subject_id": SUBJECT}}
        for name, key, content, fields in [
            ("tea", "alpha_agent", "Jane Doe prefers green tea in meetings.", about),
            ("badge", "alpha_agent", "Jane Doe's badge number is 4411.", about),
            ("move", "alpha_leaver", "Jane Doe moved to the Lyon office.", about),
            ("office", "alpha_agent", "The office closes at six on Fridays.", {}),
            ("beta", "beta_agent", "Beta's Jane Doe plays chess.", about),
        ]:
            found.memories[name] = found.store(key, content, **fields)
        yield found


#: The GDPR screens' own text (statuses, verdicts, story, hash): each must read against
#: its background, light or dark (WCAG contrast of at least 3:1, with ::before marks).
OWN_TEXT = (".mw-status-ok, .mw-status-bad, .mw-cert-verdict, .mw-step-title, .mw-step-line, "
            ".mw-hash, .mw-lead, .errorlist li, #print-hash, .mw-print-sheet p, "
            ".mw-print-sheet li, .mw-print-sheet td")
LAYOUT = """
(selector) => {
""" + COLOUR_JS + """
  const poor = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.getClientRects().length) continue;
    for (const pseudo of [null, '::before']) {
      const style = getComputedStyle(el, pseudo);
      if (pseudo && (style.content === 'none' || style.content === 'normal')) continue;
      const fg = parse(style.color); if (!fg) continue;
      const r = ratio(fg, behind(el));
      const text = el.textContent.trim().slice(0, 25);
      if (r < 3) poor.push(`${el.className || el.tagName}${pseudo || ''} "${text}" ${r.toFixed(2)}`);
    }
  }
  // What sticks out: elements, and text running out of its element (a long hash).
  const right = (el) => { const range = document.createRange(); range.selectNodeContents(el);
    return Math.max(el.getBoundingClientRect().right, range.getBoundingClientRect().right); };
  const wide = [...document.querySelectorAll('body *')].filter(el =>
    right(el) > window.innerWidth + 1).sort((a, b) => right(b) - right(a)).slice(0, 4).map(el =>
    `${el.tagName.toLowerCase()}#${el.id}.${el.className} ${Math.round(right(el))}`);
  return {overflow: document.documentElement.scrollWidth - window.innerWidth, poor, wide};
}
"""


def _fits_and_reads(page, where: str) -> None:
    found = page.evaluate(LAYOUT, OWN_TEXT)
    assert found["overflow"] <= 0, (f"{where}: the page is {found['overflow']} px too wide "
                                    f"(the widest: {found['wide']})")
    assert not found["poor"], f"{where}: text too faint against its background: {found['poor']}"


def _download(page, click, tmp_path: Path) -> list[dict]:
    """Click, catch the download, return its JSON lines."""
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    return [json.loads(line) for line in saved.read_text().splitlines()]


def _memory_ids(lines: list[dict]) -> set[str]:
    return {line["id"] for line in lines if line["type"] == "memory"}


def test_the_whole_gdpr_journey(person, browser, site, screenshot, tmp_path):
    jane = {site.memories[name]["id"] for name in ("tea", "badge", "move")}

    # Find and export: the DPO starts from the memory list's Export button.
    priya = person("priya")
    priya.goto("/admin/memories/memory/")
    priya.locator("#memory-privacy-export").click()
    expect(priya.locator("h1")).to_have_text("Export memories")
    expect(priya.locator("#id_namespace")).to_have_value("alpha")  # the only one she manages
    expect(priya.locator("#id_namespace option")).to_have_count(1)
    priya.fill("#id_subject_id", "nobody-at-all")
    priya.locator("#privacy-submit").click()  # a subject with no memories: said, not downloaded
    expect(priya.locator(".field-subject_id .errorlist")).to_contain_text("matches no memory")
    priya.fill("#id_subject_id", SUBJECT)
    screenshot(priya, "gdpr-export-form")
    lines = _download(priya, lambda: priya.locator("#privacy-submit").click(), tmp_path)
    assert _memory_ids(lines) == jane
    assert lines[-1]["type"] == "manifest" and lines[-1]["counts"]["memory"] == 3
    assert {line["content"] for line in lines if line["type"] == "memory"} == {
        site.memories[name]["content"] for name in ("tea", "badge", "move")}

    # Open an erasure request from the memory list.
    priya.goto("/admin/memories/memory/")
    priya.locator("#memory-privacy-erasure").click()
    expect(priya.locator("h1")).to_have_text("New erasure request")
    priya.locator("#privacy-submit").click()  # nothing named: a clear error, nothing created
    expect(priya.locator("#privacy-form-errors")).to_contain_text("Name whose memories")
    priya.fill("#id_subject_id", SUBJECT)
    priya.fill("#id_reason", "DSR-2026-017 (e-mail of 3 March)")
    screenshot(priya, "gdpr-new-erasure-request")
    priya.locator("#privacy-submit").click()
    expect(priya.locator("ul.messagelist")).to_contain_text(
        f"Erasure requested: data subject id “{SUBJECT}” in alpha, 3 memories.")
    expect(priya.locator("#erasure-state")).to_have_text("requested")
    expect(priya.locator("#erasure-count")).to_have_text("3")
    expect(priya.locator("#erasure-four-eyes")).to_be_visible()  # she asked: not her approval
    expect(priya.locator("#erasure-approve-button")).to_have_count(0)
    change = priya.url
    screenshot(priya, "gdpr-erasure-review")

    # Review: open the matches (exactly the subject's memories), export them first.
    priya.locator("#erasure-matches-link").click()
    expect(priya.locator("#result_list tbody tr")).to_have_count(3)
    for name in ("tea", "badge", "move"):
        expect(priya.locator("#result_list")).to_contain_text(site.memories[name]["content"][:40])
    expect(priya.locator("#result_list")).not_to_contain_text("office closes")
    screenshot(priya, "gdpr-erasure-matches")
    priya.locator("#memory-privacy-request").click()
    expect(priya.locator("#erasure-state")).to_have_text("requested")
    before = _download(priya, lambda: click_submit(priya.locator("#erasure-export-button")),
                       tmp_path)
    assert _memory_ids(before) == jane
    priya.reload()
    expect(priya.locator("#erasure-story")).to_contain_text("Exported before erasing")

    # Approve: another team admin of alpha (four eyes).
    alice = person("alice")
    alice.goto(change)
    alice.locator("#erasure-approve-button").click()
    expect(alice.locator("#mw-effect")).to_have_text("Approve erasing 3 memories in alpha?")
    click_submit(alice.locator("#mw-confirm-button"))
    expect(alice.locator("#erasure-state")).to_have_text("approved")
    expect(alice.locator("#erasure-story")).to_contain_text("team admin (alice)")

    # Execute: a system admin, typing the namespace.
    root = person("root")
    root.goto(change)
    root.locator("#erasure-execute-button").click()
    expect(root.locator("#mw-confirm-button")).to_have_text("Erase 3 memories in alpha")
    root.locator("#mw-typed").fill("alpha")
    click_submit(root.locator("#mw-confirm-button"))
    expect(root.locator("ul.messagelist")).to_contain_text("3 memories erased in alpha.")
    expect(root.locator("#erasure-state")).to_have_text("executed")

    # The certificate as proof: its card, Verify now, the printable view (as the DPO).
    priya.goto(change)
    card = priya.locator("#certificate-card")
    expect(card).to_contain_text("✓ Erased and checked in every store")
    # One row per store the registry asks (apps/memories/stores.py): nine before the
    # registry, ten since it added the admin's change log.
    assert len(CHECKED_STORES) >= 10
    expect(priya.locator("#certificate-checks tr")).to_have_count(len(CHECKED_STORES))
    expect(priya.locator("#certificate-checks")).not_to_contain_text("✗")
    expect(priya.locator("#certificate-audit-link")).to_have_text(
        re.compile(r"entry #\d+"))
    for step in ("Requested", "Exported before erasing", "Approved", "Executed", "Certified"):
        expect(priya.locator(f'#erasure-story [data-step="{step}"]')).to_be_visible()
    card.scroll_into_view_if_needed()
    screenshot(priya, "gdpr-certificate-card")
    digest = priya.locator("#certificate-hash").inner_text()
    click_submit(priya.locator("#certificate-verify-button"))
    # The hash, the audit entry, the chain, then one check per store asked.
    expect(priya.locator("#verify-verdict")).to_have_text(
        f"✓ Certificate verified: all {VERIFY_CHECKS} checks passed.")
    expect(priya.locator("#verify-checks tbody tr.mw-check-ok")).to_have_count(VERIFY_CHECKS)
    screenshot(priya, "gdpr-certificate-verified")
    priya.locator("#verify-print-link").click()
    expect(priya.locator("h1")).to_have_text("Certificate of erasure")
    expect(priya.locator("#header")).to_have_count(0)  # no dashboard chrome
    expect(priya.locator("#print-hash")).to_have_text(digest)
    expect(priya.locator("#print-what")).to_contain_text("3 memories")
    expect(priya.locator("#print-people")).to_contain_text("team admin (priya)")
    expect(priya.locator("#print-people")).to_contain_text("team admin (alice)")
    expect(priya.locator("#print-people")).to_contain_text("system admin (root)")
    expect(priya.locator("#print-how")).to_contain_text("manage.py verify_certificate")
    screenshot(priya, "gdpr-certificate-print")
    priya.emulate_media(media="print")
    expect(priya.locator("#print-button")).to_be_hidden()  # print CSS hides the tools
    assert len(priya.pdf()) > 1000  # Chromium prints it

    # Every GDPR screen fits a phone and a laptop, and reads in the light and dark themes.
    screens = {"export": "/admin/privacy/erasurerequest/export/",
               "new-request": "/admin/privacy/erasurerequest/new/", "request": change,
               "print": change.replace("/change/", "/certificate/print/")}
    for width, height in ((1366, 900), (375, 812)):
        for theme in ("light", "dark"):
            context = browser.new_context(viewport={"width": width, "height": height},
                                          base_url=site.url, color_scheme=theme,
                                          storage_state=site.storage["priya"])
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            for name, url in screens.items():
                page.goto(url)
                _fits_and_reads(page, f"{name} at {width} px, {theme}")
                if name == "request" and width == 375:
                    page.locator("#certificate-card").scroll_into_view_if_needed()
                    screenshot(page, f"gdpr-certificate-card-375-{theme}")
            page.goto(change)
            click_submit(page.locator("#certificate-verify-button"))
            expect(page.locator("#verify-verdict")).to_contain_text(
                f"all {VERIFY_CHECKS} checks passed")
            _fits_and_reads(page, f"verify at {width} px, {theme}")
            context.close()

    # The subject is gone over REST too; beta's memory with the same subject id is not.
    for name in ("tea", "badge", "move"):
        gone = site.api("alpha_admin", "GET", f"memories/{site.memories[name]['id']}")
        assert gone.status_code == 404, gone.text
    kept = site.api("beta_agent", "GET", f"memories/{site.memories['beta']['id']}")
    assert kept.status_code == 200, kept.text


def test_export_the_selected_memories_from_the_list(person, site, tmp_path):
    """The list's checkboxes and action: a download of exactly the ticked memories."""
    priya = person("priya")
    priya.goto("/admin/memories/memory/")
    row = priya.locator("#result_list tbody tr", has_text="office closes at six")
    expect(row).to_have_count(1)
    row.locator("input.action-select").check()
    priya.select_option("select[name=action]", "export_selected")
    lines = _download(priya, lambda: priya.locator("button[name=index]").click(), tmp_path)
    assert _memory_ids(lines) == {site.memories["office"]["id"]}
    assert lines[-1]["selector"] == {"namespace": "alpha", "ids": [site.memories["office"]["id"]]}


def test_bob_cannot_reach_alphas_request_or_export(person, site):
    """Another tenant's admin: alpha is not offered, and alpha's pages are not found."""
    bob = person("bob")
    bob.goto("/admin/privacy/erasurerequest/export/")
    expect(bob.locator("#id_namespace option")).to_have_text(["beta"])
    bob.goto("/admin/privacy/erasurerequest/")
    expect(bob.locator("#result_list")).to_have_count(0)  # alpha's requests are not listed
