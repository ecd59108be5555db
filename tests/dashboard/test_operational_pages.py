"""Issue 17 item 8, operational pages: the audit list by namespace (only the viewer's),
actors by key name, when the chain was last verified (also by the background job);
JSON shown as JSON; plural wording; "API keys"; the overview says when it adjusted
``?days=``."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from apps.audit import log
from apps.memories import services
from apps.ops.jobs import run_job
from apps.tenancy.principal import Principal
from apps.tenancy.roles import Role
from apps.tenancy.services import create_api_key

from .conftest import store

AUDIT = "/admin/audit/auditentry/"


def test_the_audit_list_filters_by_the_viewers_namespaces_only(alice, root, memories):
    page = alice.get(AUDIT).content.decode()
    assert "?namespace_id=" in page  # the filter is there…
    assert re.search(r'href="\?namespace_id=\d+"[^>]*>alpha<', page)
    assert ">beta<" not in page  # …with only alice's namespaces as choices
    alpha_id = memories["alpha"][0].namespace_id
    filtered = alice.get(AUDIT, {"namespace_id": alpha_id}).content.decode()
    assert "memory.created" in filtered or "memory.create" in filtered
    everything = root.get(AUDIT).content.decode()
    assert ">alpha<" in everything and ">beta<" in everything
    beta_id = memories["beta"][0].namespace_id
    only_beta = root.get(AUDIT, {"namespace_id": beta_id}).content.decode()
    assert "<td class=\"field-namespace\">alpha</td>" not in only_beta
    assert "<td class=\"field-namespace\">beta</td>" in only_beta


def test_actors_that_are_keys_are_shown_by_key_name(alice, alpha, django_assert_max_num_queries):
    keys = [create_api_key(role=Role.AGENT, agent_id=f"bot-{n}", namespace=alpha,
                           name=f"Support bot {n}")[0] for n in range(3)]
    for key in keys:
        services.ingest(Principal.for_key(key), {"content": f"note from {key.agent_id}"})
    log.record("user:alice", "test.note", namespace=alpha)
    page = alice.get(AUDIT).content.decode()
    for key in keys:
        assert f"Support bot {key.agent_id[-1]} ({key.prefix})" in page
    assert "user:alice" in page
    # One query for every key on the page, not one per row: 3 more keys, same count.
    with django_assert_max_num_queries(40) as few:
        alice.get(AUDIT)
    more = [create_api_key(role=Role.AGENT, agent_id=f"more-{n}", namespace=alpha, name=f"M{n}")[0]
            for n in range(3)]
    for key in more:
        services.ingest(Principal.for_key(key), {"content": f"note from {key.agent_id}"})
    with django_assert_max_num_queries(len(few.captured_queries)):
        alice.get(AUDIT)


@pytest.mark.django_db(transaction=True)  # the chain's anchor is written on commit
def test_the_audit_list_says_when_the_chain_was_last_verified(alice, root, memories):
    assert b"never been verified" in alice.get(AUDIT).content
    run_job("audit_checkpoint")
    page = alice.get(AUDIT).content.decode()
    assert re.search(r'id="chain-last-verified"[^>]*>Last verified [^<]*by the background '
                     r'audit_checkpoint job', page)
    root.post(f"{AUDIT}verify/")
    page = Client().get(AUDIT)  # anonymous: login page, nothing leaks
    assert b"Last verified" not in page.content
    fresh = alice.get(AUDIT).content.decode()
    assert re.search(r"Last verified [^<]*from the dashboard", fresh)


def test_json_is_shown_as_json_on_the_memory_page_and_the_audit_entry(alice, alpha):
    memory = store(alpha, "A memory with an audited summary.", tags=["ops"])
    entry = log.record("user:alice", "test.summary", namespace=alpha, record_ids=[str(memory.pk)],
                       summary={"count": 250, "flag": True, "none": None})
    page = alice.get(f"/admin/memories/memory/{memory.pk}/change/").content.decode()
    assert "{&#x27;count&#x27;: 250" not in page and "True" not in page.split('id="audit-trail"')[1]
    assert "{&quot;count&quot;: 250, &quot;flag&quot;: true, &quot;none&quot;: null}" in page
    detail = alice.get(f"{AUDIT}{entry.seq}/change/").content.decode()
    assert re.search(r'<pre class="mw-json">\{\n  &quot;count&quot;: 250,\n  &quot;flag&quot;: '
                     r'true,', detail)


def test_plural_wording_and_api_keys(alice, memories):
    home = alice.get("/admin/").content.decode()
    assert "Api keys" not in home and "API keys" in home
    text = alice.get("/admin/dashboard/playground/", {
        "namespace": "alpha", "query": "how often does the deploy key rotate", "mode": "hybrid",
        "k": "1"}).content.decode()
    assert "result(s)" not in text and "1 result —" in text


@pytest.mark.parametrize(("asked", "shown", "said"), [
    ("3", 7, "Showing 7 days: ?days= must be between 7 and 365 (3 was asked for)."),
    ("9999", 365, "Showing 365 days: ?days= must be between 7 and 365 (9999 was asked for)."),
    ("soon", 30, "Showing 30 days: ?days= must be a whole number of days (soon was asked for)."),
])
def test_the_overview_says_when_it_adjusted_days(alice, memories, asked, shown, said):
    page = alice.get("/admin/dashboard/overview/", {"days": asked}).content.decode()
    assert said in page.replace("&#x27;", "'")
    assert f"last {shown} days" in page or f'value="{shown}"' in page or f"{shown} days" in page


def test_the_overview_says_nothing_for_a_valid_days(alice, memories):
    page = alice.get("/admin/dashboard/overview/", {"days": "14"}).content.decode()
    assert "?days= must" not in page


def test_summary_json_helper_is_plain_json():
    from apps.dashboard.templatetags.dashboard_json import as_json

    assert json.loads(as_json({"a": [1, None]})) == {"a": [1, None]}
    assert as_json({"a": True}) == '{"a": true}'
