"""The memory edit page in Chromium (issue 17 item 5): tags as chips (and as commas with
script off), the metadata editor's live feedback, the tabs (mouse, keyboard, HISTORY), and
the page at 375 px wide without sideways scrolling.

Each test stores its own memory over REST, so the order does not matter (conftest.py)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.helpers.browser import TIMEOUT_MS, VIEWPORT

#: Horizontal overflow of the page: how far its content reaches past the viewport.
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def change_url(memory: dict) -> str:
    return f"/admin/memories/memory/{memory['id']}/change/"


def stored(site, memory: dict) -> dict:
    response = site.api("alpha_admin", "GET", f"memories/{memory['id']}")
    assert response.status_code == 200, response.text
    return response.json()


def save_and_continue(page) -> None:
    page.locator("input[name=_continue]").click()
    page.wait_for_load_state()


def test_tags_are_edited_as_chips_and_as_commas_without_script(person, site, browser):
    memory = site.store("alpha_agent", "The printer on floor two jams on Mondays.",
                        tags=["office", "printer"])
    page = person("alice")
    page.goto(change_url(memory))
    chips = page.locator(".mw-chip-text")
    expect(chips).to_have_text(["office", "printer"])
    field = page.locator("input[name=tags]")
    expect(field).to_be_hidden()  # the form's field, kept in step with the chips
    expect(field).to_have_value("office, printer")

    page.get_by_text("Tags:").click()  # the label leads to the chip entry
    entry = page.locator("#id_tags_entry")
    expect(entry).to_be_focused()
    entry.press_sequentially("urgent, facilities")  # a comma makes a chip
    entry.press("Enter")  # so does Enter, without submitting the form
    expect(chips).to_have_text(["office", "printer", "urgent", "facilities"])
    page.get_by_role("button", name="Remove tag printer").click()
    expect(page.locator(".mw-chip-note")).to_have_text("Removed tag printer.")
    entry.press("Backspace")  # on an empty entry: the last chip goes
    expect(chips).to_have_text(["office", "urgent"])
    expect(field).to_have_value("office, urgent")
    entry.press_sequentially("pending")  # typed, not yet a chip: saved all the same
    save_and_continue(page)
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    expect(chips).to_have_text(["office", "urgent", "pending"])
    after = stored(site, memory)
    assert (after["tags"], after["version"]) == (["office", "urgent", "pending"], 2)

    # Without script: a plain comma box, read the same way by the server.
    context = browser.new_context(viewport=VIEWPORT, base_url=site.url,
                                  java_script_enabled=False,
                                  storage_state=site.storage["alice"])
    context.set_default_timeout(TIMEOUT_MS)
    try:
        plain = context.new_page()
        plain.goto(change_url(memory))
        box = plain.locator("input[name=tags]")
        expect(box).to_be_visible()
        expect(box).to_have_value("office, urgent, pending")
        expect(plain.locator(".mw-chip")).to_have_count(0)
        box.fill("office, paper ,")
        plain.locator("input[name=_continue]").click()
        expect(plain.locator("ul.messagelist")).to_contain_text("was changed successfully")
        expect(box).to_have_value("office, paper")
    finally:
        context.close()
    assert stored(site, memory)["tags"] == ["office", "paper"]


def test_bad_metadata_is_flagged_as_typed_refused_on_save_and_fixed(person, site):
    memory = site.store("alpha_agent", "Room 2.14 has the good projector.",
                        metadata={"floor": 2})
    page = person("alice")
    page.goto(change_url(memory))
    editor, status = page.locator("textarea[name=metadata]"), page.locator(".mw-json-status")
    format_button = page.get_by_role("button", name="Format")
    expect(editor).to_have_value('{\n  "floor": 2\n}')  # pretty-printed
    assert "monospace" in editor.evaluate("e => getComputedStyle(e).fontFamily")
    expect(status).to_have_text("Valid JSON object (1 key).")

    editor.fill('{"floor": 2, "room": }')
    expect(status).to_contain_text("Not valid JSON")
    expect(status).to_have_class(re.compile(r"\bmw-invalid\b"))
    expect(editor).to_have_attribute("aria-invalid", "true")
    expect(format_button).to_be_disabled()
    editor.fill('["floor", 2]')
    expect(status).to_have_text(
        "Metadata must be a JSON object ({\"key\": value, …}), not a list.")

    editor.fill('{"floor": 2, "room": }')
    save_and_continue(page)  # the server is the judge: refused, named, nothing stored
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-metadata .errorlist")).to_have_text(
        "Not valid JSON: Expecting value at line 1, column 22.")
    expect(editor).to_have_value('{"floor": 2, "room": }')
    expect(status).to_contain_text("Not valid JSON")  # the feedback on the returned page too
    expect(page.locator("#mw-tab-edit")).to_have_attribute("aria-selected", "true")
    assert (stored(site, memory)["metadata"], stored(site, memory)["version"]) == ({"floor": 2}, 1)

    editor.fill('{"floor":2,"room":"2.14","kit":["projector","hdmi"]}')
    expect(status).to_have_text("Valid JSON object (3 keys).")
    expect(editor).to_have_attribute("aria-invalid", "false")
    format_button.click()
    expect(editor).to_have_value('{\n  "floor": 2,\n  "room": "2.14",\n  "kit": [\n'
                                 '    "projector",\n    "hdmi"\n  ]\n}')
    save_and_continue(page)
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    after = stored(site, memory)
    assert after["metadata"] == {"floor": 2, "room": "2.14", "kit": ["projector", "hdmi"]}
    assert after["version"] == 2


def test_versions_and_audit_trail_are_tabs_above_the_form(person, site, screenshot):
    memory = site.store("alpha_agent", "The fire drill is on the first Tuesday.", tags=["safety"])
    edited = site.api("alpha_admin", "PATCH", f"memories/{memory['id']}",
                      json={"content": "The fire drill is on the first Wednesday."})
    assert edited.status_code == 200, edited.text
    page = person("alice")
    page.set_viewport_size({"width": 1366, "height": 860})
    page.goto(change_url(memory))
    tabs = page.get_by_role("tablist", name="This memory")
    edit_tab = tabs.get_by_role("tab", name="Edit")
    versions_tab = tabs.get_by_role("tab", name="Versions 2")
    audit_tab = tabs.get_by_role("tab", name=re.compile(r"^Audit trail \d+$"))
    expect(edit_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("textarea[name=content]")).to_be_visible()
    expect(page.locator("#versions")).to_be_hidden()
    box = tabs.bounding_box()
    assert box["y"] < page.locator("textarea[name=content]").bounding_box()["y"]  # above
    screenshot(page, "memory-edit")

    versions_tab.click()
    expect(versions_tab).to_have_attribute("aria-selected", "true")
    expect(page).to_have_url(re.compile(r"#versions$"))
    panel = page.get_by_role("tabpanel", name="Versions 2")
    expect(panel).to_be_visible()
    expect(panel.locator('tr.mw-version[data-version="2"] .mw-diff ins')).to_have_text("Wednesday")
    expect(page.locator("textarea[name=content]")).to_be_hidden()
    assert page.evaluate(OVERFLOW) <= 0
    screenshot(page, "memory-edit-versions")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "memory-edit-versions-dark")
    page.emulate_media(color_scheme="light")

    versions_tab.press("ArrowRight")  # keyboard: the next tab, focused and shown
    expect(audit_tab).to_be_focused()
    expect(audit_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#audit-trail")).to_be_visible()
    expect(page.locator("#audit-trail")).to_contain_text("memory.update")
    expect(page.locator("#versions")).to_be_hidden()
    audit_tab.press("End")
    expect(tabs.get_by_role("tab", name=re.compile("^Near-duplicates"))).to_be_focused()
    page.keyboard.press("Home")
    expect(edit_tab).to_be_focused()
    expect(page.locator("textarea[name=content]")).to_be_visible()

    # HISTORY (the admin's object tool) opens the versions, not an empty admin log.
    page.locator(".object-tools").get_by_role("link", name="History").click()
    expect(page).to_have_url(re.compile(rf"{change_url(memory)}#versions$"))
    expect(versions_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#versions h2")).to_have_text("Version history (now version 2)")
    page.reload()  # the open tab is in the URL
    expect(versions_tab).to_have_attribute("aria-selected", "true")


def test_the_edit_page_fits_a_375px_screen(person, site, screenshot):
    memory = site.store(
        "alpha_agent", "A long-winded memory " + "about the quarterly-planning-spreadsheet "
        * 8, tags=["planning", "quarterly-planning-spreadsheet-owners", "finance"],
        metadata={"source": "https://wiki.example.org/" + "very-long-path-segment/" * 8,
                  "nested": {"level": {"deeper": ["a", "b", {"c": "d" * 80}]}}})
    site.api("alpha_admin", "PATCH", f"memories/{memory['id']}",
             json={"tags": ["planning", "finance", "x" * 60]})
    page = person("alice")
    page.set_viewport_size({"width": 375, "height": 780})
    page.goto(change_url(memory))
    expect(page.locator(".mw-chip")).to_have_count(3)
    page.locator("details summary", has_text="Technical details").click()
    expect(page.locator(".field-content_hash")).to_be_visible()
    assert page.evaluate(OVERFLOW) <= 0, "the edit tab scrolls sideways at 375 px"
    screenshot(page, "memory-edit-375")
    for name in ("Versions", "Audit trail", "Near-duplicates"):
        page.get_by_role("tab", name=re.compile(f"^{name}")).click()
        expect(page.get_by_role("tabpanel")).to_be_visible()
        assert page.evaluate(OVERFLOW) <= 0, f"the {name} tab scrolls sideways at 375 px"
    page.emulate_media(color_scheme="dark")
    page.get_by_role("tab", name="Edit").click()
    screenshot(page, "memory-edit-375-dark")
    page.goto("/admin/memories/memory/add/")
    expect(page.locator("#id_tags_entry")).to_be_visible()
    assert page.evaluate(OVERFLOW) <= 0, "the add page scrolls sideways at 375 px"
