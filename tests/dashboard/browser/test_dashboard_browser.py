"""The dashboard in a real browser (Chromium via Playwright) against a real Daphne.

What the Django test client cannot show: the allauth form as typed into, buttons that
submit (or not) the forms they name, the live feed's WebSocket and script, a download.
Alice is the team admin of alpha, bob of beta, root a superuser (see conftest.py).
Each test stands on its own memories, so the order does not matter.
"""

from __future__ import annotations

import hashlib
import json
import re

from playwright.sync_api import expect

from tests.helpers.browser import PASSWORD, TIMEOUT_MS, click_submit

MISSED = "\u2013"  # the en dash shown when a channel did not find the memory
# Each explain cell: raw / rank / contribution.
PART = re.compile(r"^\d+\.\d{4} / \d+ / \d+\.\d{4}$")


def memory_url(memory: dict) -> str:
    return f"/admin/memories/memory/{memory['id']}/change/"


# 1 -------------------------------------------------------------------------------------
def test_login_through_the_allauth_form(anonymous_page, site, screenshot):
    page = anonymous_page
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=(/|%2F)admin(/|%2F)$"))
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "not-the-password")
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("username and/or password you specified are not correct")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.locator("input[name=login]")).to_have_value("alice")

    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{site.url}/admin/")
    expect(page.locator("#site-name")).to_contain_text("MemoryWeb")
    expect(page.locator("h1")).to_have_text("Dashboard")
    tools = page.locator(".app-dashboard")
    for title in ("Namespace overview", "Recall playground", "Live feed"):
        expect(tools.get_by_role("link", name=title)).to_be_visible()
    expect(page.get_by_role("link", name="Memories").first).to_be_visible()
    screenshot(page, "dashboard-index")


# 2 -------------------------------------------------------------------------------------
def test_search_uses_the_keyword_index(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/memories/memory/")
    results = page.locator("#result_list tbody")
    expect(results).to_contain_text("Lunch is at noon on Fridays.")
    screenshot(page, "memory-list")

    page.fill("#searchbar", "ninety deploy")  # words in any order: the index, not LIKE
    page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=ninety\+deploy"))
    expect(results).to_contain_text("The deploy key rotates every ninety days.")
    expect(results.locator("tr")).to_have_count(1)
    expect(results).not_to_contain_text("Lunch")
    expect(results).not_to_contain_text("walnut vault")  # beta's deploy memory


# 3 -------------------------------------------------------------------------------------
def test_edit_shows_the_diff_and_reverts(person, site, screenshot):
    memory = site.memories["staging"]
    original, edited = memory["content"], memory["content"].replace("Sunday", "Saturday")
    page = person("alice")
    page.goto(memory_url(memory))
    expect(page.locator("#versions")).to_contain_text("Not edited since it was stored")
    page.fill("textarea[name=content]", edited)
    page.locator("input[name=_continue]").click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    expect(page.locator("textarea[name=content]")).to_have_value(edited)

    versions = page.locator("#versions")
    expect(versions.locator("h2")).to_have_text("Version history (now version 2)")
    v2 = versions.locator('tr.mw-version[data-version="2"]')
    expect(v2.locator(".mw-diff del")).to_have_text("Sunday")
    expect(v2.locator(".mw-diff ins")).to_have_text("Saturday")
    expect(v2.locator(".mw-diff strong")).to_have_text(["content"])  # nothing else changed
    expect(v2.locator("button.mw-revert")).to_have_count(0)  # the current version
    page.get_by_role("tab", name="Versions 2").click()  # the history: a tab above the form
    expect(v2).to_be_visible()
    screenshot(page, "memory-change")

    versions.locator('tr.mw-version[data-version="1"] a.mw-revert').click()
    # The confirmation page names the effect; Cancel goes back and changes nothing.
    expect(page.locator("#mw-effect")).to_contain_text("to version 1")
    page.locator("#mw-confirm-cancel").click()
    expect(versions.locator("h2")).to_have_text("Version history (now version 2)")
    versions.locator('tr.mw-version[data-version="1"] a.mw-revert').click()
    click_submit(page.locator("#mw-confirm-button"))
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Reverted to version 1; this is now version 3.")
    expect(page.locator("textarea[name=content]")).to_have_value(original)
    expect(versions.locator("h2")).to_have_text("Version history (now version 3)")
    v3 = versions.locator('tr.mw-version[data-version="3"]')
    expect(v3.locator(".mw-diff del")).to_have_text("Saturday")
    expect(v3.locator(".mw-diff ins")).to_have_text("Sunday")
    stored = site.api("alpha_admin", "GET", f"memories/{memory['id']}").json()
    assert (stored["content"], stored["version"]) == (original, 3)


# 4 -------------------------------------------------------------------------------------
def test_playground_shows_explain_scores(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/dashboard/playground/?namespace=alpha")
    form = page.locator("#playground-form")
    form.locator("input[name=query]").fill("how often does the deploy key rotate")
    form.locator("select[name=mode]").select_option("hybrid")
    form.locator("input[name=k]").fill("5")
    form.get_by_role("button", name="Recall").click()

    results = page.locator("#playground-results")
    expect(results.locator("h2")).to_contain_text("hybrid in alpha")
    first = results.locator("tr.mw-result").first
    expect(first).to_contain_text("The deploy key rotates every ninety days.")
    expect(first.locator("td.mw-score").first).to_have_text(re.compile(r"^\d+\.\d{4}$"))
    channels = [th.split("\n")[0].strip().lower() for th in results.locator("thead th").all_inner_texts()]
    assert {"lexical", "vector"} <= set(channels), channels
    for row in results.locator("tr.mw-result").all():
        parts = [part.strip() for part in row.locator("td.mw-part").all_inner_texts()]
        assert len(parts) == len(channels) - 3, (parts, channels)  # not #, score, memory
        assert all(PART.match(part) or part == MISSED for part in parts), parts
    # The best hit was found by both channels: words and meaning.
    parts = [part.strip() for part in first.locator("td.mw-part").all_inner_texts()]
    assert sum(PART.match(part) is not None for part in parts) >= 2, parts
    expect(results).not_to_contain_text("walnut vault")
    screenshot(page, "playground")


# 5 -------------------------------------------------------------------------------------
def test_live_feed_shows_a_stored_memory(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/dashboard/live/?namespace=alpha")
    expect(page.locator("#mw-live-status")).to_have_text("live", timeout=30_000)
    content = "Live check: the coffee machine descales itself on Tuesdays."
    site.store("alpha_agent", content, tags=["office"])
    event = page.locator("#mw-feed .mw-event")
    expect(event).to_have_count(1, timeout=15_000)  # it arrived over the WebSocket ...
    expect(event.locator("strong")).to_have_text("created")
    expect(event).to_contain_text("by agent-1")
    expect(event.locator(".mw-event-content")).to_have_text(content)  # ... showing what was stored
    screenshot(page, "live-feed")


# 6 -------------------------------------------------------------------------------------
def test_team_admin_cannot_reach_another_namespace(person, site):
    beta = site.memories["beta"]
    page = person("alice")
    page.goto("/admin/memories/memory/")
    expect(page.locator("#result_list")).to_contain_text("Lunch is at noon")
    expect(page.locator("#content-main")).not_to_contain_text("walnut")
    expect(page.locator("#changelist-filter")).not_to_contain_text("beta")

    page.goto(memory_url(beta))  # the admin answers "doesn't exist" on the index
    expect(page).to_have_url(f"{site.url}/admin/")
    expect(page.locator("ul.messagelist")).to_contain_text(re.compile(r"doesn.t exist"))
    expect(page.locator("body")).not_to_contain_text("walnut")

    page.goto("/admin/memories/memory/?q=walnut+vault")
    expect(page.locator("#result_list tbody tr")).to_have_count(0)
    expect(page.locator("#content-main")).to_contain_text("0 memories")

    page.goto("/admin/dashboard/playground/?namespace=beta&query=walnut+vault&mode=hybrid&k=10")
    options = page.locator("#playground-form select[name=namespace] option")
    expect(options).to_have_text(["alpha"])  # beta is not offered
    expect(page.locator("#playground-results")).to_have_count(0)
    expect(page.locator("#content-main")).not_to_contain_text("walnut vault")

    for tool in ("live", "overview"):
        response = page.goto(f"/admin/dashboard/{tool}/?namespace=beta")
        assert response.status == 404, (tool, response.status)
        expect(page.locator("body")).not_to_contain_text("walnut")

    # The feed's WebSocket (alice's session) refuses beta's events too.
    page.goto("/admin/dashboard/live/?namespace=alpha")
    answer = page.evaluate("""() => new Promise((resolve, reject) => {
        const socket = new WebSocket("ws://" + location.host + "/ws/v1/live");
        socket.onmessage = (message) => {
            const data = JSON.parse(message.data);
            if (data.type === "ready") {
                socket.send(JSON.stringify({type: "events", id: "b", namespace: "beta"}));
            } else { socket.close(); resolve(data); }
        };
        socket.onclose = (event) => resolve({type: "closed", code: event.code});
        setTimeout(() => reject(new Error("no answer")), 10000);
    })""")
    assert answer["type"] == "error" and answer["id"] == "b", answer
    assert answer["error"]["code"] in {"not_found", "forbidden", "permission_denied"}, answer

    page.goto("/admin/audit/auditentry/")
    expect(page.locator("#result_list")).to_contain_text("agent-1")
    expect(page.locator("#result_list")).not_to_contain_text("beta-agent")


# 7 -------------------------------------------------------------------------------------
def test_erasure_is_approved_executed_and_certified(person, site, screenshot, tmp_path):
    leaver = site.memories["leaver"]
    created = site.api("alpha_admin", "POST", "erasure-requests",
                       json={"namespace": "alpha", "agent_id": "leaver-7", "reason": "ticket 7"})
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    change = f"/admin/privacy/erasurerequest/{request_id}/change/"

    alice = person("alice")
    alice.goto(change)
    expect(alice.locator("#erasure-state")).to_have_text("requested")
    expect(alice.locator("#erasure-count")).to_have_text("1")
    expect(alice.locator("#erasure-execute-button")).to_have_count(0)  # system admins execute
    alice.locator("#erasure-approve-button").click()
    expect(alice.locator("#mw-effect")).to_have_text("Approve erasing 1 memory in alpha?")
    click_submit(alice.locator("#mw-confirm-button"))
    expect(alice.locator("ul.messagelist")).to_contain_text("Erasure request approved.")
    expect(alice.locator("#erasure-state")).to_have_text("approved")
    expect(alice.locator("#erasure-execute-button")).to_have_count(0)

    root = person("root")
    root.goto(change)
    expect(root.locator("#erasure-state")).to_have_text("approved")
    root.locator("#erasure-execute-button").click()
    # Typed confirmation: the red button names the effect; a wrong slug erases nothing.
    expect(root.locator("#mw-effect")).to_have_text("Erase 1 memory in alpha")
    expect(root.locator("#mw-confirm-button")).to_have_text("Erase 1 memory in alpha")
    root.locator("#mw-typed").fill("alpah")
    click_submit(root.locator("#mw-confirm-button"))
    expect(root.locator("#mw-confirm-error")).to_contain_text("Type the namespace slug alpha")
    root.locator("#mw-confirm-cancel").click()
    expect(root.locator("#erasure-state")).to_have_text("approved")
    root.locator("#erasure-execute-button").click()
    root.locator("#mw-typed").fill("alpha")
    screenshot(root, "erasure-execute-confirm")
    click_submit(root.locator("#mw-confirm-button"))
    expect(root.locator("ul.messagelist")).to_contain_text("1 memory erased in alpha.")
    expect(root.locator("ul.messagelist")).to_contain_text("Erasure request executed.")
    expect(root.locator("#erasure-state")).to_have_text("executed")
    root.locator("#erasure-review").scroll_into_view_if_needed()
    screenshot(root, "erasure-executed")

    with root.expect_download(timeout=TIMEOUT_MS) as download_info:
        root.locator("#certificate-download").click()
    download = download_info.value
    assert download.suggested_filename == f"erasure-{request_id}.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    certificate = json.loads(saved.read_text())
    assert certificate["request"] == request_id
    assert certificate["namespace"]["slug"] == "alpha"
    assert certificate["selector"]["agent_id"] == "leaver-7"
    assert certificate["erased"] == [{"id": leaver["id"], "content_sha256": leaver["content_hash"]}]
    assert certificate["counts"]["memories"] == 1
    assert "alice" in certificate["approved_by"] and "root" in certificate["executed_by"]
    body = {k: v for k, v in certificate.items() if k not in ("certificate_sha256", "audit")}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=True).encode()).hexdigest()
    assert certificate["certificate_sha256"] == digest
    assert leaver["content"] not in saved.read_text()  # hashes, never the content
    gone = site.api("alpha_admin", "GET", f"memories/{leaver['id']}")
    assert gone.status_code == 404, gone.text


# 8 (and the remaining pages) -----------------------------------------------------------
def test_overview_counts_and_charts(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/dashboard/overview/?namespace=alpha")
    before = int(page.locator("#memory-count").inner_text())
    assert before >= 2
    expect(page.locator("#outbox-backlog")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("svg.mw-chart")).to_have_count(3)  # held, new per day, recalls
    expect(page.locator("#per-agent")).to_contain_text("agent-1")
    expect(page.locator("#per-agent")).not_to_contain_text("beta-agent")
    site.store("alpha_agent", "Overview check: the fire drill is on the first Monday.")
    page.reload()
    expect(page.locator("#memory-count")).to_have_text(str(before + 1))
    screenshot(page, "overview")


def test_audit_chain_verifies(person, site, screenshot):
    page = person("root")
    page.goto("/admin/audit/auditentry/")
    expect(page.locator("#chain-status")).to_contain_text("not verified")
    expect(page.locator("#result_list")).to_contain_text("memory.create")
    page.locator("#audit-verify").click()
    expect(page.locator("#chain-status")).to_contain_text(re.compile(r"intact \(\d+ entries\)"))
    expect(page.locator("ul.messagelist")).to_contain_text("Audit chain intact")
    screenshot(page, "audit-list")


def test_a_reader_is_told_why_and_logs_out(anonymous_page, site, screenshot):
    """Rita reads alpha but manages nothing: her login works, the dashboard does not open
    (only a team-admin role or superuser does; is_staff plays no part). She is not left
    at a bare 403: a page in the admin's look names her role and what the dashboard
    needs, links to her invitations and two-factor settings, and logs her out."""
    page = anonymous_page
    page.goto("/accounts/login/?next=/admin/")
    expect(page.locator("body")).not_to_contain_text("sign up")  # sign-up is closed
    page.fill("input[name=login]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(re.compile(r"/admin/login/"))  # logged in, sent on, refused
    expect(page.locator("h1")).to_have_text("No dashboard access")
    expect(page.locator("#content")).to_contain_text("reader in alpha")
    expect(page.locator("#content")).to_contain_text("team admins")
    expect(page.locator("#header #site-name")).to_have_text("MemoryWeb")  # the admin's look
    expect(page.get_by_role("link", name="Your invitations")).to_have_attribute(
        "href", "/accounts/invitations/")
    expect(page.get_by_role("link", name="Two-factor authentication")).to_have_attribute(
        "href", "/accounts/2fa/")
    screenshot(page, "no-dashboard-access")
    for path in ("/admin/", "/admin/memories/memory/", "/admin/dashboard/overview/?namespace=alpha"):
        response = page.goto(path)
        assert response.status == 403, (path, response.status, page.url)
        expect(page.locator("body")).not_to_contain_text("Lunch is at noon")
        expect(page.locator("h1")).to_have_text("No dashboard access")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))  # the session is gone


# Safety rails (issue 17, item 3) -------------------------------------------------------
def test_member_removal_confirms_and_keeps_the_last_admin(person, site, screenshot):
    page = person("alice")
    page.goto("/admin/tenancy/namespace/")
    page.get_by_role("link", name="alpha", exact=True).click()
    members = page.locator("#members")
    rita = members.locator("tr", has_text="rita")
    rita.locator("a.mw-remove-member").click()
    expect(page.locator("#mw-effect")).to_have_text("Remove rita (reader) from alpha")
    page.locator("#mw-confirm-cancel").click()  # Cancel: rita stays
    expect(members.locator("tr", has_text="rita")).to_contain_text("reader")

    members.locator("tr", has_text="alice").locator("a.mw-remove-member").click()
    expect(page.locator("#mw-confirm-error")).to_contain_text("alice is the last admin of alpha")
    expect(page.locator("#mw-confirm-button")).to_have_count(0)
    screenshot(page, "member-last-admin")
    page.locator("#mw-confirm-cancel").click()
    expect(members.locator("tr", has_text="alice")).to_contain_text("admin")
