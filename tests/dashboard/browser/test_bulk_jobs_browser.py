"""Bulk work as jobs and the forget-agents rail, in Chromium against a real Daphne server
whose in-process huey consumer runs the jobs (issue 17, items 7 and 3).

This module starts its own server (as the shared ``site`` fixture does, plus small job
settings: jobs above 5 memories, batches of 10) and keeps its data directory, so a
test can also act beside the server with ``manage.py shell`` — to hold a job still
while the page is watched, then hand it to the server's worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import PASSWORD, SETUP, VIEWPORT, Site, watch
from tests.helpers.embedded import embedded_environment, manage, migrate
from tests.servers import DaphneServer

#: Long enough for a job of 60 memories on a loaded 2-core box (huey's idle worker
#: polls its queue at most every 10 s).
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The shared fixture's server and people, with small bulk-job settings, and
    ``site.env`` for ``manage.py`` beside it."""
    base = tmp_path_factory.mktemp("bulk-jobs-site")
    env = embedded_environment(base / "data", MEMORYWEB_DASHBOARD_BULK_INLINE_MAX="5",
                               MEMORYWEB_DASHBOARD_BULK_BATCH="10")
    migrate(env)
    out = manage(env, "shell", "-c", SETUP.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    with DaphneServer(base / "daphne.log", env) as server:
        found = Site(url=server.url, keys=keys)
        found.env = env
        found.memories["leaver"] = found.store(
            "alpha_leaver", "Leaver seven keeps the spare badge in the blue drawer.")
        found.memories["stays"] = found.store("alpha_agent", "The staging database restarts on Sundays.")
        yield found


def _shell(site: Site, code: str) -> str:
    """Python run beside the server on its data directory (the last line printed)."""
    return manage(site.env, "shell", "-c", code).strip().splitlines()[-1]


def _exists(site: Site, memory_id: str) -> bool:
    return site.api("alpha_admin", "GET", f"memories/{memory_id}").status_code == 200


def test_a_large_re_tag_runs_as_a_job_to_its_result(person, site, screenshot):
    response = site.api("alpha_agent", "POST", "memories/batch", json={"memories": [
        {"content": f"Inbox item {i}: follow up on the quarterly roadmap review.", "tags": ["inbox"]}
        for i in range(60)]})
    assert response.status_code == 201 and response.json()["created"] == 60, response.text
    stored = [row["id"] for row in response.json()["results"]]

    page = person("alice")
    page.goto("/admin/memories/memory/?tag=inbox")
    page.locator("#action-toggle").check()
    page.get_by_role("button", name=re.compile(r"Select all 60")).click()
    page.select_option("select[name=action]", "retag")
    page.locator("button[name=index]").click()  # the action bar's Go
    expect(page.locator("#bulk-as-job")).to_contain_text("runs as a background job")
    expect(page.locator("#bulk-confirm")).to_contain_text("60 memories selected")
    page.fill("input[name=add]", "reviewed")
    page.fill("input[name=remove]", "inbox")
    page.locator("#bulk-confirm-button").click()

    page.wait_for_url(re.compile(r"/admin/memories/bulkjob/[0-9a-f-]+/change/$"))
    expect(page.locator("#mw-job-percent")).to_have_text("100%", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#mw-job-result")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#mw-job-summary")).to_have_text("60 memories re-tagged.")
    expect(page.locator("#mw-job-count")).to_have_text("60 of 60")
    bar = page.locator("#mw-job-progress")
    assert bar.evaluate("el => [el.value, el.max]") == [60, 60]
    screenshot(page, "bulk-job-result")

    for memory_id in (stored[0], stored[-1]):
        assert site.api("alpha_admin", "GET", f"memories/{memory_id}").json()["tags"] == ["reviewed"]
    page.goto("/admin/memories/bulkjob/")
    expect(page.locator("#result_list")).to_contain_text("60 of 60 (100%)")


HOLD = """
from django.utils import timezone
from datetime import timedelta
from apps.memories.bulk_models import BulkJob
from apps.memories.models import Memory
from apps.tenancy.models import Namespace
from django.contrib.auth import get_user_model
ids = sorted(str(pk) for pk in Memory.objects.filter(namespace__slug="alpha", agent_id="agent-1")
             .values_list("pk", flat=True)[:4])
job = BulkJob.objects.create(action="retag", params={"add": ["followed"]}, targets=ids, total=4,
    started_by=get_user_model().objects.get(username="alice"), started_by_label="user:alice",
    started_role="admin", state="running", lease="held-by-the-test",
    heartbeat_at=timezone.now() + timedelta(hours=1))
job.namespaces.set([Namespace.objects.get(slug="alpha")])
print(job.pk)
"""


def test_the_progress_bar_follows_a_running_job(person, site, browser, screenshot):
    """A job held still (its lease taken by the test) while the page is watched, with and
    without script; then released to the server's worker, which finishes it."""
    job = _shell(site, HOLD)
    url = f"/admin/memories/bulkjob/{job}/change/"
    page = person("alice")
    page.goto(url)
    expect(page.locator("#mw-job")).to_have_attribute("data-finished", "false")
    expect(page.locator("#mw-job-state")).to_have_text("Running")
    expect(page.locator("#mw-job-percent")).to_have_text("0%")

    plain = browser.new_context(viewport=VIEWPORT, base_url=site.url, java_script_enabled=False,
                                storage_state=site.storage["alice"])
    problems: list[str] = []
    try:
        no_script = plain.new_page()
        watch(no_script, problems)
        no_script.goto(url)
        expect(no_script.locator("#mw-job-percent")).to_have_text("0%")

        _shell(site, f"from apps.memories.bulk_models import BulkJob; "
                     f"print(BulkJob.objects.filter(pk='{job}').update(cursor=2, done=2))")
        expect(page.locator("#mw-job-percent")).to_have_text("50%")  # polled by jobs.js
        expect(page.locator("#mw-job-count")).to_have_text("2 of 4")
        assert page.locator("#mw-job-progress").evaluate("el => [el.value, el.max]") == [2, 4]
        screenshot(page, "bulk-job-progress")
        # Without script the page reloads itself (<noscript> meta refresh).
        expect(no_script.locator("#mw-job-percent")).to_have_text("50%")
    finally:
        plain.close()
    assert not problems, problems

    _shell(site, "from apps.memories.bulk_models import BulkJob; from apps.memories import "
                 f"bulk_jobs; BulkJob.objects.filter(pk='{job}').update(lease='', "
                 f"heartbeat_at=None); bulk_jobs.enqueue('{job}'); print('queued')")
    expect(page.locator("#mw-job-result")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#mw-job-percent")).to_have_text("100%")
    expect(page.locator("#mw-job-summary")).to_have_text("2 memories re-tagged.")


def test_forgetting_an_agent_needs_its_id_typed_and_cancel_changes_nothing(person, site, screenshot):
    leaver = site.memories["leaver"]["id"]
    page = person("root")
    page.goto("/admin/memories/memory/?agent=leaver-7")
    page.locator("input.action-select").first.check()
    page.select_option("select[name=action]", "forget_agents")
    page.locator("button[name=index]").click()  # the action bar's Go

    danger = page.locator("#bulk-confirm.mw-danger")
    expect(danger.locator("#mw-effect")).to_have_text("Forget 1 memory from 1 agent")
    expect(danger.locator("#agent-counts")).to_contain_text("leaver-7")
    expect(page.locator("#bulk-confirm-button")).to_have_text("Forget 1 memory from 1 agent")
    expect(page.locator("label[for=mw-typed]")).to_have_text("Type leaver-7 to confirm")
    screenshot(page, "forget-agents-confirm")

    page.fill("#mw-typed", "leaver")  # not the agent id
    page.locator("#bulk-confirm-button").click()
    expect(page.locator("#bulk-confirm-error")).to_have_text(
        "Type leaver-7 exactly to confirm; nothing was forgotten.")
    assert _exists(site, leaver)

    page.locator("#bulk-confirm-cancel").click()
    expect(page).to_have_url(re.compile(r"/admin/memories/memory/\?agent=leaver-7$"))
    expect(page.locator("#result_list")).to_contain_text("Leaver seven keeps the spare badge")
    assert _exists(site, leaver)

    page.locator("input.action-select").first.check()
    page.select_option("select[name=action]", "forget_agents")
    page.locator("button[name=index]").click()  # the action bar's Go
    page.fill("#mw-typed", "leaver-7")
    page.locator("#bulk-confirm-button").click()
    expect(page.locator(".messagelist")).to_contain_text("1 memory forgotten from 1 agent.")
    assert not _exists(site, leaver)
    assert _exists(site, site.memories["stays"]["id"])
