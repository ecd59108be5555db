"""Issue 22 item 6 in a real browser: a team admin opens the gateway's quarantine review,
approves one learned fact (its confirmation page), bulk-rejects the rest (the bulk
confirmation with its count), then changes the namespace's trace level on the gateway
settings page; the REST API then shows what the pages did.

This module starts its own server (as the shared ``site`` fixture does) with three
quarantined facts in alpha and one in beta, written in the set-up shell as the learner
would have left them (apps/gateway/learning.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import PASSWORD, SETUP, Site
from tests.helpers.embedded import embedded_environment, manage, migrate
from tests.servers import DaphneServer

FACTS = ["The staging database is on host db-2.", "Deploys happen on Tuesdays.",
         "The on-call phone is in the red drawer."]
#: The learner's leftovers: quarantined facts taught by alpha's agent, one of beta's.
MORE = f"""
from apps.gateway import facts as learned_facts
from apps.gateway.models import LearnedFact
from apps.tenancy.models import ApiKey, Namespace
for slug, agent, texts in (("alpha", "agent-1", {FACTS!r}),
                           ("beta", "beta-agent", ["Beta's build server is hopper."])):
    namespace = Namespace.objects.get(slug=slug)
    key = ApiKey.objects.get(namespace=namespace, agent_id=agent)
    for text in texts:
        LearnedFact.objects.create(namespace=namespace, api_key=key, agent_id=agent, text=text,
                                   key=learned_facts.key(text))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("gateway-dashboard-site")
    env = embedded_environment(base / "data")
    migrate(env)
    setup = SETUP.replace('print("KEYS="', MORE + 'print("KEYS="')
    out = manage(env, "shell", "-c", setup.replace("PASSWORD", repr(PASSWORD)))
    keys = json.loads(next(line for line in out.splitlines() if line.startswith("KEYS="))[5:])
    with DaphneServer(base / "daphne.log", env) as server:
        yield Site(url=server.url, keys=keys)


def test_review_approve_bulk_reject_and_trace_level(site, person):
    page = person("alice")
    page.goto("/admin/")
    page.get_by_role("link", name="Learned facts").first.click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#result_list")).not_to_contain_text("hopper")  # beta's

    # Approve one, with its text edited on the confirmation page.
    page.get_by_role("link", name=FACTS[0]).click()
    page.locator("#fact-approve").click()
    expect(page.locator("#mw-effect")).to_contain_text("Approve this fact in alpha")
    page.fill("#mw-text", "The staging database lives on host db-2.")
    page.locator("#mw-confirm-button").click()
    expect(page.locator(".messagelist")).to_contain_text("Fact approved with the edited text")

    # Bulk-reject the other two, after the confirmation page.
    page.goto("/admin/gateway/learnedfact/")
    expect(rows).to_have_count(2)
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "reject_selected")
    page.locator("button[name=index]").click()
    expect(page.locator("#bulk-effect")).to_contain_text("Reject 2 facts")
    expect(page.locator("#bulk-facts li")).to_have_count(2)
    page.locator("#bulk-confirm-button").click()
    expect(page.locator(".messagelist")).to_contain_text("2 facts rejected.")
    expect(page.locator("#result_list")).to_have_count(0)  # nothing left in quarantine

    # The settings page: the counts, then the trace level.
    page.locator("#gateway-settings-link").click()
    page.get_by_role("link", name="alpha").click()
    expect(page.locator("#count-promoted")).to_have_text("1")
    expect(page.locator("#count-rejected")).to_have_text("2")
    expect(page.locator("#count-quarantined")).to_have_text("0")
    page.select_option("select[name=trace]", "metadata")
    page.locator("#settings-save").click()
    expect(page.locator(".messagelist")).to_contain_text("Gateway settings of alpha saved")
    expect(page.locator("select[name=trace]")).to_have_value("metadata")

    namespace = site.api("alpha_admin", "GET", "namespaces/alpha").json()
    assert namespace["gateway"] == {"trace": "metadata"}
    found = site.api("alpha_admin", "GET", "memories", params={"tag": "learned"}).json()
    contents = [m["content"] for m in found.get("results", found)]
    assert contents == ["The staging database lives on host db-2."]
