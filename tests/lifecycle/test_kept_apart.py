"""A person's rejection of a consolidation proposal, kept (docs/lifecycle.md, "Kept
apart"): every pair of the rejected memories gets a ``kept_apart`` link, and consolidation
never groups two of them again — dry runs, applied runs, the seeds' doors — nor does
``merge``; allowing them together undoes it. Audited, ids only; exported and imported
with the lineage; gone with an erased memory. REST here; the dashboard's pages below."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEntry
from apps.memories.models import Memory, MemoryLink
from apps.tenancy.principal import Principal
from tests.helpers.erasure import erase_through_requests

pytestmark = pytest.mark.django_db(transaction=True)
STAGING = ["The staging database runs PostgreSQL 15 on host db-2.",
           "Staging database: PostgreSQL 15, running on host db-2.",
           "Note: the staging database runs on PostgreSQL 15 (host db-2)."]
DEPLOYS = ["Deployments to production happen every Tuesday afternoon.",
           "Production deploys happen on Tuesday afternoons."]
OTHERS = ["Our office is closed on public holidays.",
          "The mobile app is written in Kotlin and Swift."]
URL = "/api/v1/namespaces/alpha/consolidate"
APART, TOGETHER = "/api/v1/namespaces/alpha/keep-apart", "/api/v1/namespaces/alpha/allow-together"


@pytest.fixture
def corpus(agent) -> dict[str, str]:
    response = agent.post("/api/v1/memories/batch",
                          {"memories": [{"content": t} for t in STAGING + DEPLOYS + OTHERS]})
    assert response.status_code == 201, response.json()
    return {row["content"]: row["id"] for row in response.json()["results"]}


def _groups(body) -> set[frozenset[str]]:
    return {frozenset(p["members"]) for p in body["proposals"]}


def _dry(team_admin) -> dict:
    response = team_admin.post(URL, {"dry_run": True, "threshold": 0.85})
    assert response.status_code == 200, response.json()
    return response.json()


def _links() -> set[frozenset[str]]:
    return {frozenset((str(s), str(t))) for s, t in MemoryLink.objects.filter(
        relation="kept_apart").values_list("source_id", "target_id")}


def test_a_group_kept_apart_is_never_proposed_or_merged_until_allowed(team_admin, corpus):
    deploys = frozenset(corpus[t] for t in DEPLOYS)
    assert deploys in _groups(_dry(team_admin))
    response = team_admin.post(APART, {"members": sorted(deploys)})
    assert response.status_code == 200, response.json()
    assert response.json()["pairs"] == 1 and set(response.json()["members"]) == deploys
    assert _links() == {deploys}
    entry = AuditEntry.objects.get(operation="memory.keep_apart")
    assert set(entry.record_ids) == deploys and entry.summary == {"pairs": 1}

    assert deploys not in _groups(_dry(team_admin))
    applied = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    assert deploys not in _groups(applied) and applied["merged"] == 1  # staging still merges
    assert not Memory.objects.filter(pk__in=deploys, superseded_by__isnull=False).exists()
    for door, body in (("/cmm/consolidate", {"dry_run": True, "threshold": 0.85}),
                       ("/v1/consolidate", {"dry_run": True, "threshold": 0.85})):
        answer = team_admin.post(door, body)
        assert answer.status_code == 200, answer.json()
        assert not answer.json()["groups"]  # staging was merged above; deploys kept apart
    again = team_admin.post(APART, {"members": sorted(deploys)})
    assert again.json()["pairs"] == 0  # already apart: nothing new, no second entry
    assert AuditEntry.objects.filter(operation="memory.keep_apart").count() == 1

    allowed = team_admin.post(TOGETHER, {"members": sorted(deploys)})
    assert allowed.status_code == 200 and allowed.json()["pairs"] == 1
    assert not _links()
    assert AuditEntry.objects.filter(operation="memory.allow_together").count() == 1
    assert deploys in _groups(_dry(team_admin))


def test_two_of_three_kept_apart_are_never_in_one_group(team_admin, corpus):
    a, b, c = (corpus[t] for t in STAGING)
    assert team_admin.post(APART, {"members": [a, b]}).status_code == 200
    for group in _groups(_dry(team_admin)):
        assert not {a, b} <= group
    assert any(c in group for group in _groups(_dry(team_admin)))  # c still joins one of them


def test_merge_refuses_memories_kept_apart(team_admin, corpus):
    from apps.lifecycle.consolidation import merge

    a, b = (corpus[t] for t in DEPLOYS)
    team_admin.post(APART, {"members": [a, b]})
    with pytest.raises(Exception, match="kept apart") as refused:
        merge(Principal.for_key(team_admin.key), "alpha", [a, b], a)
    assert refused.value.status == 409
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


@pytest.mark.parametrize("body, status, field", [
    ({"members": ["{a}"]}, 400, "members"),
    ({"members": ["{a}", "{a}"]}, 400, "members"),
    ({"members": ["{a}", "not-an-id"]}, 400, "members"),
    ({"members": "{a}"}, 400, "members"),
    ({}, 400, "members"),
    ({"members": ["{a}", "00000000-0000-4000-8000-000000000000"]}, 404, "members"),
    ({"members": ["{a}", "{b}"], "extra": 1}, 400, "extra"),
])
def test_bad_input_is_refused_naming_it_and_changes_nothing(team_admin, corpus, body, status,
                                                            field):
    a, b = (corpus[t] for t in DEPLOYS)
    sent = json.loads(json.dumps(body).replace("{a}", a).replace("{b}", b))
    response = team_admin.post(APART, sent)
    assert response.status_code == status, response.json()
    assert field in json.dumps(response.json()["error"])
    assert not _links() and not AuditEntry.objects.filter(operation="memory.keep_apart").exists()


def test_roles_and_tenants(reader, agent, outsider, system_admin, corpus):
    a, b = (corpus[t] for t in DEPLOYS)
    assert reader.post(APART, {"members": [a, b]}).status_code == 403
    assert agent.post(APART, {"members": [a, b]}).status_code == 403
    assert outsider.post(APART, {"members": [a, b]}).status_code == 404
    assert not _links()
    assert system_admin.post(APART, {"members": [a, b]}).status_code == 200


def test_a_memory_of_another_namespace_is_not_found(team_admin, corpus, beta):
    from tests.helpers.people import store

    other = store(beta, "Deployments to production happen every Tuesday afternoon.")
    response = team_admin.post(APART, {"members": [corpus[DEPLOYS[0]], str(other.pk)]})
    assert response.status_code == 404, response.json()
    assert not _links()


def test_erasing_a_memory_takes_its_links_and_the_certificate_verifies(team_admin, system_admin,
                                                                       corpus):
    a, b = (corpus[t] for t in DEPLOYS)
    team_admin.post(APART, {"members": [a, b]})
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "ids": [a]})
    assert not _links()
    assert certificate["verification"]["memory_links"] == {"remaining": 0, "ok": True}


def test_an_export_import_round_trip_keeps_them_apart(team_admin, corpus, beta, tmp_path):
    a, b = (corpus[t] for t in DEPLOYS)
    team_admin.post(APART, {"members": [a, b]})
    response = team_admin.get("/api/v1/export")
    path = tmp_path / "alpha.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    rows = {row["id"]: row for row in map(json.loads, path.read_text().splitlines())
            if row["type"] == "memory"}
    assert rows[a]["kept_apart"] == [{"id": b}] and rows[b]["kept_apart"] == [{"id": a}]
    assert "kept_apart" not in rows[corpus[OTHERS[0]]]  # only where there is one
    out = io.StringIO()
    call_command("import_memories", "--namespace", "beta", "--format", "jsonl", str(path),
                 "--no-progress", stdout=out, stderr=io.StringIO())
    assert "1 kept-apart links restored" in out.getvalue()
    copies = dict(Memory.objects.filter(namespace=beta).values_list("content", "pk"))
    link = MemoryLink.objects.get(namespace=beta, relation="kept_apart")
    assert {link.source_id, link.target_id} == {copies[t] for t in DEPLOYS}


# --- the dashboard --------------------------------------------------------------------------

KEEP_APART = "/admin/dashboard/consolidation/keep-apart/"


@pytest.fixture
def alice(alpha):
    from tests.helpers.people import person

    return person("alice", alpha)


def test_the_dashboard_keeps_a_proposal_apart_and_the_memory_page_allows_it_again(alice, alpha,
                                                                                   corpus):
    page = alice.get("/admin/dashboard/consolidation/",
                     {"namespace": "alpha", "threshold": "0.85", "run": "1"})
    assert page.status_code == 200 and "Keep apart…" in page.content.decode()
    a, b = (corpus[t] for t in DEPLOYS)
    query = {"namespace": "alpha", "threshold": "0.85", "members": [a, b], "survivor": a}
    confirm = alice.get(KEEP_APART, query)
    assert confirm.status_code == 200 and not _links()  # a GET asks first, changes nothing
    assert "never proposes or merges two of them together" in confirm.content.decode()
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    done = alice.post(url, {"confirm": "yes"})
    assert done.status_code == 302 and _links() == {frozenset((a, b))}
    assert done["Location"].startswith("/admin/dashboard/consolidation/?")

    memory_page = alice.get(f"/admin/memories/memory/{a}/change/").content.decode()
    assert 'id="lineage-kept-apart"' in memory_page
    allow = re.search(r'href="([^"]*allow=1[^"]*)"', memory_page).group(1).replace("&amp;", "&")
    confirm = alice.get(allow)
    assert confirm.status_code == 200 and _links()
    url = confirm.request["PATH_INFO"] + "?" + confirm.request["QUERY_STRING"]
    done = alice.post(url, {"confirm": "yes"})
    assert done.status_code == 302 and not _links()
    assert done["Location"] == f"/admin/memories/memory/{a}/change/#lineage"


def test_the_dashboard_refuses_a_foreign_memory_and_needs_csrf(alice, alpha, beta, corpus):
    from django.test import Client

    from tests.helpers.people import store

    other = store(beta, "Production deploys happen on Tuesday afternoons.")
    a = corpus[DEPLOYS[0]]
    refused = alice.get(KEEP_APART, {"namespace": "alpha", "members": [a, str(other.pk)]})
    assert refused.status_code == 404 and not _links()
    assert alice.get(KEEP_APART, {"namespace": "beta", "members": [a, a]}).status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = alice.cookies
    response = strict.post(KEEP_APART + f"?namespace=alpha&members={a}&members="
                           f"{corpus[DEPLOYS[1]]}", {"confirm": "yes"})
    assert response.status_code == 403 and not _links()


def test_a_memory_kept_apart_from_one_merged_since_stays_apart_from_its_survivor(team_admin,
                                                                               agent, alpha):
    """A and B kept apart; B merged into C (allowed: B-C is not kept apart). A must not
    join C's group afterwards: it would sit under one survivor with B."""
    from apps.lifecycle.consolidation import merge

    third = "Every Tuesday afternoon we deploy to production."
    a, b, c = (agent.post("/api/v1/memories", {"content": t}).json()["id"]
               for t in [*DEPLOYS, third])
    assert {a, b, c} in [set(g) for g in _groups(_dry(team_admin))]  # one group before
    assert team_admin.post(APART, {"members": [a, b]}).status_code == 200
    admin = Principal.for_key(team_admin.key)
    assert merge(admin, "alpha", [b, c], c).merged == 1
    assert not any(a in group and c in group for group in _groups(_dry(team_admin)))
    with pytest.raises(Exception, match="kept apart") as refused:
        merge(admin, "alpha", [a, c], c)
    assert refused.value.status == 409
