"""The dashboard's quarantine review (apps/gateway/admin.py): list, scope, edit, approve and
reject one by one (confirmation first) and in bulk (a confirmation page with counts), all
through the learning services (audited, promoted through the write path)."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.gateway import facts
from apps.gateway.models import FactState, LearnedFact
from apps.memories.models import Memory
from tests.helpers.people import person

LIST = "/admin/gateway/learnedfact/"


def learned(namespace, text: str, key=None, agent_id: str = "agent-1", **fields) -> LearnedFact:
    return LearnedFact.objects.create(namespace=namespace, api_key=key, agent_id=agent_id,
                                      text=text, key=facts.key(text), **fields)


@pytest.fixture
def quarantine(alpha, beta, agent, outsider):
    return {
        "alpha": [learned(alpha, "The staging database is on host db-2.", agent.key),
                  learned(alpha, "Deploys happen on Tuesdays.", agent.key, agent_id="agent-2",
                          seen_count=1)],
        "decided": learned(alpha, "An old rejected fact.", agent.key, state=FactState.REJECTED),
        "beta": learned(beta, "Beta's build server is called hopper.", outsider.key,
                        agent_id="outsider-1"),
    }


def change_url(fact) -> str:
    return reverse("admin:gateway_learnedfact_change", args=[fact.pk])


def test_list_shows_quarantined_facts_of_managed_namespaces_only(alice, quarantine):
    page = alice.get(LIST)
    assert page.status_code == 200
    body = page.content.decode()
    assert "The staging database is on host db-2." in body
    assert "Deploys happen on Tuesdays." in body
    assert "An old rejected fact." not in body  # quarantined by default
    assert "hopper" not in body  # beta's
    assert "An old rejected fact." in alice.get(LIST + "?state=rejected").content.decode()
    everything = alice.get(LIST + "?state=all").content.decode()
    assert "An old rejected fact." in everything and "hopper" not in everything
    assert alice.get(LIST + "?state=bogus").status_code == 200


def test_filters_search_and_agent_choices_stay_in_scope(alice, alpha, quarantine):
    body = alice.get(LIST + "?agent_id=agent-2").content.decode()
    assert "Deploys happen" in body and "staging database" not in body
    found = alice.get(LIST + "?q=staging").content.decode()
    assert "staging database" in found and "Deploys happen" not in found
    assert "outsider-1" not in alice.get(LIST).content.decode()  # beta's agent not offered
    assert "beta" not in alice.get(LIST).content.decode().split('id="changelist-filter"')[1]


def test_another_tenants_fact_is_not_found(alice, quarantine):
    other = quarantine["beta"]
    answer = alice.get(change_url(other), follow=True)  # the admin: "doesn't exist"
    assert b"hopper" not in answer.content and b"exist" in answer.content
    for name in ("approve", "reject"):
        url = reverse(f"admin:gateway_learnedfact_{name}", args=[other.pk])
        assert alice.get(url).status_code == 404
        assert alice.post(url, {"confirm": "yes"}).status_code == 404
    other.refresh_from_db()
    assert other.state == FactState.QUARANTINED


def test_a_reader_gets_no_review(alpha, quarantine):
    reader = person("rita", alpha, role=Role.READER)
    page = reader.get(LIST, follow=True)
    assert page.status_code == 403 and b"No dashboard access" in page.content
    assert b"staging" not in page.content
    url = reverse("admin:gateway_learnedfact_reject", args=[quarantine["alpha"][0].pk])
    assert reader.post(url, {"confirm": "yes"}, follow=True).status_code == 403
    assert LearnedFact.objects.get(pk=quarantine["alpha"][0].pk).state == FactState.QUARANTINED


def test_a_reader_of_alpha_who_manages_beta_gets_404_for_alpha(alpha, beta, quarantine):
    from django.contrib.auth import get_user_model

    from apps.tenancy.members import set_role

    both = person("dora", beta)
    set_role(alpha, get_user_model().objects.get(username="dora"), Role.READER)
    fact = quarantine["alpha"][0]
    assert b"staging" not in both.get(LIST).content
    assert both.get(reverse("admin:gateway_learnedfact_approve", args=[fact.pk])).status_code == 404
    assert both.post(reverse("admin:gateway_learnedfact_reject", args=[fact.pk]),
                     {"confirm": "yes"}).status_code == 404


def test_system_admin_sees_every_namespace(root, quarantine):
    body = root.get(LIST).content.decode()
    assert "hopper" in body and "staging database" in body


def test_no_add_no_delete(alice, quarantine):
    assert alice.get(LIST + "add/").status_code == 403
    fact = quarantine["alpha"][0]
    assert alice.post(change_url(fact).replace("change/", "delete/"),
                      {"post": "yes"}).status_code == 403
    assert LearnedFact.objects.filter(pk=fact.pk).exists()


def test_edit_goes_through_the_service(alice, quarantine):
    fact = quarantine["alpha"][0]
    page = alice.get(change_url(fact))
    assert page.status_code == 200 and b"Approve" in page.content
    answer = alice.post(change_url(fact), {"text": "Staging DB: host db-3."})
    assert answer.status_code == 302
    fact.refresh_from_db()
    assert fact.text == "Staging DB: host db-3." and fact.state == FactState.QUARANTINED
    assert AuditEntry.objects.filter(operation="gateway.fact.edit").count() == 1
    refused = alice.post(change_url(fact), {"text": "   "})
    assert refused.status_code == 200  # the form's own required check
    fact.refresh_from_db()
    assert fact.text == "Staging DB: host db-3."


def test_a_decided_fact_is_read_only(alice, quarantine):
    fact = quarantine["decided"]
    page = alice.get(change_url(fact))
    assert page.status_code == 200 and b'name="text"' not in page.content
    alice.post(change_url(fact), {"text": "changed"})
    fact.refresh_from_db()
    assert fact.text == "An old rejected fact."


def test_approve_asks_first_then_promotes_with_edited_text(alice, quarantine):
    fact = quarantine["alpha"][0]
    url = reverse("admin:gateway_learnedfact_approve", args=[fact.pk])
    page = alice.get(url)
    assert page.status_code == 200 and b"Approve and store as a memory" in page.content
    assert alice.post(url, {"text": "x"}).status_code == 200  # no confirm: nothing
    assert not Memory.objects.exists()
    answer = alice.post(url, {"confirm": "yes", "text": "Staging lives on db-2 (approved)."})
    assert answer.status_code == 302
    fact.refresh_from_db()
    assert fact.state == FactState.PROMOTED
    memory = Memory.objects.get(pk=fact.memory_id)
    assert memory.content == "Staging lives on db-2 (approved)." and memory.tags == ["learned"]
    assert AuditEntry.objects.filter(operation="gateway.fact.approve").count() == 1
    again = alice.post(url, {"confirm": "yes"})
    assert again.status_code == 200 and Memory.objects.count() == 1  # nothing twice


def test_approve_unchanged_text_stores_the_fact(alice, quarantine):
    fact = quarantine["alpha"][1]
    url = reverse("admin:gateway_learnedfact_approve", args=[fact.pk])
    alice.post(url, {"confirm": "yes", "text": fact.text})
    fact.refresh_from_db()
    assert Memory.objects.get(pk=fact.memory_id).content == "Deploys happen on Tuesdays."
    entry = AuditEntry.objects.get(operation="gateway.fact.approve")
    assert entry.summary == {"edited": False}


def test_reject_asks_first(alice, quarantine):
    fact = quarantine["alpha"][0]
    url = reverse("admin:gateway_learnedfact_reject", args=[fact.pk])
    assert alice.get(url).status_code == 200
    fact.refresh_from_db()
    assert fact.state == FactState.QUARANTINED  # GET never writes
    assert alice.post(url, {"confirm": "yes"}).status_code == 302
    fact.refresh_from_db()
    assert fact.state == FactState.REJECTED and fact.decided_by == "user:alice"


def test_decisions_need_csrf(alpha, quarantine):
    strict = Client(enforce_csrf_checks=True)
    person("carol", alpha)
    strict.login(username="carol", password="pw")
    fact = quarantine["alpha"][0]
    url = reverse("admin:gateway_learnedfact_reject", args=[fact.pk])
    assert strict.post(url, {"confirm": "yes"}).status_code == 403
    fact.refresh_from_db()
    assert fact.state == FactState.QUARANTINED


def bulk(client, action: str, facts_: list, apply: bool = False, url: str = LIST):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(f.pk) for f in facts_]}
    if apply:
        data["apply"] = "1"
    return client.post(url, data)


def test_bulk_reject_confirms_with_counts_then_rejects(alice, quarantine):
    chosen = [*quarantine["alpha"], quarantine["decided"]]
    everything = LIST + "?state=all"  # the decided fact is listed, and selected
    page = bulk(alice, "reject_selected", chosen, url=everything)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Reject 2 facts" in body and "1 selected fact is not quarantined" in body
    assert LearnedFact.objects.filter(state=FactState.REJECTED).count() == 1  # nothing yet
    done = bulk(alice, "reject_selected", chosen, apply=True, url=everything)
    assert done.status_code == 302
    assert "2 facts rejected." in alice.get(everything).content.decode()
    assert LearnedFact.objects.filter(state=FactState.REJECTED).count() == 3
    assert AuditEntry.objects.filter(operation="gateway.fact.reject").count() == 2


def test_bulk_approve_promotes_each(alice, quarantine):
    page = bulk(alice, "approve_selected", quarantine["alpha"])
    assert "Approve 2 facts" in page.content.decode()
    bulk(alice, "approve_selected", quarantine["alpha"], apply=True)
    assert "2 facts approved." in alice.get(LIST).content.decode()
    assert set(Memory.objects.values_list("content", flat=True)) == {
        "The staging database is on host db-2.", "Deploys happen on Tuesdays."}
    assert not LearnedFact.objects.filter(namespace__slug="alpha",
                                          state=FactState.QUARANTINED).exists()


def test_bulk_never_reaches_another_tenants_fact(alice, quarantine):
    other = quarantine["beta"]
    bulk(alice, "reject_selected", [other, quarantine["alpha"][0]], apply=True)
    other.refresh_from_db()
    assert other.state == FactState.QUARANTINED
    assert LearnedFact.objects.get(pk=quarantine["alpha"][0].pk).state == FactState.REJECTED
