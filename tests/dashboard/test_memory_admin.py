"""Editing memories in the dashboard goes through the services: versions with a readable
diff, revert, bulk actions with confirmation pages, filters, and no N+1 in the list."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories import services
from apps.memories.models import Memory
from apps.tenancy.principal import Principal
from tests.helpers.people import store


def _form(memory: Memory, **changes) -> dict:
    data = {"content": memory.content, "kind": memory.kind, "tags": json.dumps(memory.tags),
            "metadata": json.dumps(memory.metadata), "importance": memory.importance,
            "confidence": memory.confidence, "expires_at_0": "", "expires_at_1": "",
            "valid_from_0": "", "valid_from_1": "", "valid_until_0": "", "valid_until_1": "",
            "occurred_at_0": "", "occurred_at_1": ""}
    data.update(changes)
    return data


def _recall_ids(namespace, query: str) -> list[str]:
    principal = Principal(label="key:t", agent_id="t", role=Role.READER, namespace_id=namespace.pk,
                          namespace=namespace)
    return [str(hit.memory.pk) for hit in services.recall(principal, {"query": query, "k": 3}).hits]


@pytest.mark.django_db(transaction=True)
def test_edit_shows_the_new_version_with_a_word_diff_and_revert_restores(alice, alpha, memories):
    memory = memories["alpha"][0]
    url = f"/admin/memories/memory/{memory.pk}/change/"
    response = alice.post(url, _form(memory, content="The deploy key rotates every thirty days."))
    assert response.status_code == 302, response.content[-2000:]
    memory.refresh_from_db()
    assert memory.version == 2 and memory.content.endswith("thirty days.")
    page = alice.get(url).content.decode()
    assert "<del>ninety</del><ins>thirty</ins>" in page
    assert 'data-version="2"' in page and "Revert to v1" in page
    assert "memory.update" in page  # the audit trail names the edit
    assert str(memory.pk) in _recall_ids(alpha, "thirty days")  # re-indexed

    response = alice.post(f"/admin/memories/memory/{memory.pk}/revert/1/", {"confirm": "yes"},
                          follow=True)
    assert b"Reverted to version 1; this is now version 3." in response.content
    memory.refresh_from_db()
    assert memory.content == "The deploy key rotates every ninety days." and memory.version == 3
    entry = AuditEntry.objects.filter(operation="memory.update").order_by("-seq").first()
    assert entry.summary["reverted_to"] == 1 and entry.actor == "user:alice"
    assert memory.versions.get(version=3).changes["content"]["after"].endswith("ninety days.")
    # GET: the confirmation page (test_safety_rails.py), no change
    assert alice.get(f"/admin/memories/memory/{memory.pk}/revert/1/").status_code == 200
    memory.refresh_from_db()
    assert memory.version == 3


def test_revert_to_a_version_that_does_not_exist_changes_nothing(alice, memories):
    memory = memories["alpha"][0]
    response = alice.post(f"/admin/memories/memory/{memory.pk}/revert/7/", {"confirm": "yes"},
                          follow=True)
    assert b"ersion must be between 1 and 1." in response.content
    memory.refresh_from_db()
    assert memory.version == 1


def test_revert_undoes_every_later_field(alpha, memories):
    memory = memories["alpha"][0]
    admin = Principal(label="user:a", agent_id="user:a", role=Role.SYSTEM)
    services.update(admin, memory.pk, {"tags": ["x"], "importance": 0.9})
    services.update(admin, memory.pk, {"content": "changed", "kind": "note"})
    reverted = services.revert(admin, memory.pk, 1)
    assert (reverted.content, reverted.tags, reverted.importance, reverted.kind) == (
        "The deploy key rotates every ninety days.", ["ops"], 0.5, "fact")
    assert reverted.version == 4
    assert services.revert(admin, memory.pk, 4).version == 4  # already there: no new version


def _action(client, name: str, memories, **extra):
    return client.post("/admin/memories/memory/", {
        "action": name, "_selected_action": [str(m.pk) for m in memories], **extra}, follow=True)


def test_retag_asks_first_then_goes_through_the_service(alice, memories):
    chosen = memories["alpha"]
    page = _action(alice, "retag", chosen)
    assert b"2 memories selected." in page.content and b"Yes, apply" in page.content
    alpha_memories = Memory.objects.filter(namespace__slug="alpha").order_by("created_at")
    assert [m.tags for m in alpha_memories] == [["ops"], []]
    page = _action(alice, "retag", chosen, apply="1", add="reviewed, ops", remove="ops")
    assert b"2 memories re-tagged." in page.content
    tags = {m.content[:5]: m.tags for m in Memory.objects.filter(namespace__slug="alpha")}
    assert tags == {"The d": ["reviewed", "ops"], "Lunch": ["reviewed", "ops"]}
    assert AuditEntry.objects.filter(operation="memory.update", actor="user:alice").count() == 2


def test_change_kind(alice, memories):
    page = _action(alice, "change_kind", memories["alpha"], apply="1", kind="procedure")
    assert b"memories changed to procedure" in page.content
    assert set(Memory.objects.filter(namespace__slug="alpha").values_list("kind", flat=True)) == {"procedure"}
    bad = _action(alice, "change_kind", memories["alpha"], apply="1", kind="gossip")
    assert b"Select a valid choice" in bad.content


def test_forget_agent_is_for_system_admins_and_shows_counts_first(alice, root, alpha, memories):
    more = store(alpha, "Another note from agent one.")
    assert "forget_agents" not in alice.get("/admin/memories/memory/").content.decode()
    refused = _action(alice, "forget_agents", [memories["alpha"][0]], apply="1")
    assert b"No action selected" in refused.content
    assert Memory.objects.filter(pk=more.pk).exists()
    page = _action(root, "forget_agents", [memories["alpha"][0]])
    assert b"<td>agent-1</td><td>alpha</td><td>2</td>" in page.content  # all of them, not 1
    assert Memory.objects.filter(agent_id="agent-1").count() == 3
    page = _action(root, "forget_agents", [memories["alpha"][0]], apply="1", typed="agent-1")
    assert b"2 memories forgotten from 1 agent." in page.content
    left = Memory.objects.filter(agent_id="agent-1").values_list("namespace__slug", flat=True)
    assert list(left) == ["beta"]
    assert AuditEntry.objects.filter(operation="memory.delete_by_agent").count() == 1


def test_delete_selected_goes_through_the_service(alice, memories):
    target = memories["alpha"][1]
    confirm = _action(alice, "delete_selected", [target])
    assert b"Are you sure" in confirm.content
    _action(alice, "delete_selected", [target], post="yes")
    assert not Memory.objects.filter(pk=target.pk).exists()
    assert AuditEntry.objects.filter(operation="memory.delete", actor="user:alice").exists()


@pytest.mark.parametrize(("query", "expected"), [
    ({"kind__exact": "preference"}, {"Lunch"}),
    ({"agent": "agent-2"}, {"Lunch"}),
    ({"tag": "ops"}, {"The d"}),
    ({"importance": "high"}, {"Durab"}),
    ({"importance": "low"}, set()),
    ({"duplicates": "copy"}, set()),
])
def test_filters(alice, alpha, memories, query, expected):
    store(alpha, "Durable importance.", importance=0.9)
    page = alice.get("/admin/memories/memory/", query).content.decode()
    marks = {"The d": "ninety days", "Lunch": "noon on Fridays", "Durab": "Durable importance"}
    found = {text for text, mark in marks.items() if mark in page}
    assert found == expected


def test_near_duplicates_are_linked_on_the_change_page(alice, alpha, memories):
    alpha.near_duplicate_policy = "link"
    alpha.save()
    copy = store(alpha, "The deploy key rotates every ninety days!")
    copy.refresh_from_db()
    if copy.near_duplicate_of_id is None:  # the embedding found them less alike than the threshold
        pytest.fail("expected a near-duplicate link for an almost identical sentence")
    page = alice.get(f"/admin/memories/memory/{memories['alpha'][0].pk}/change/").content.decode()
    assert f"/admin/memories/memory/{copy.pk}/change/" in page
    listed = alice.get("/admin/memories/memory/", {"duplicates": "copy"}).content.decode()
    assert "ninety days!" in listed and "noon on Fridays" not in listed


def test_memory_list_query_count_does_not_grow_with_rows(root, alpha):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert root.get("/admin/memories/memory/").status_code == 200
        return len(queries)

    for i in range(3):
        store(alpha, f"memory number {i}", agent_id=f"agent-{i}", tags=[f"t{i}"])
    few = count()
    for i in range(3, 45):
        store(alpha, f"memory number {i}", agent_id=f"agent-{i % 7}", tags=[f"t{i}"])
    assert count() == few
    # alpha is a small namespace (no FTS5 table): its keyword index is built in memory at
    # its first search in the process (apps/memories/small_keywords.py), once
    root.get("/admin/memories/memory/", {"q": "memory number"})
    search = CaptureQueriesContext(connection)
    with search:
        root.get("/admin/memories/memory/", {"q": "memory number"})
    # the keyword lookup per namespace, not per row (+3 with its FTS5 table or PostgreSQL;
    # a small namespace's is the table's statement SQLite refuses, then the change log's
    # newest number: +4)
    from apps.memories import small_keywords

    assert len(search) <= few + (4 if small_keywords.is_small(alpha.pk) else 3)
