"""Erasure reaches consolidation lineage (issue 21, item 5), through the real certified
erasure: erasing a survivor makes the memories merged into it current again; erasing a
merged member removes the survivor's link to it; the certificate lists both (ids only) and
verifies that no link names an erased memory."""

from __future__ import annotations

import pytest

from apps.memories.models import Memory, MemoryLink
from tests.helpers.erasure import erase_through_requests

#: Commits for real: the erasure's steps and the audit anchor, as certificates check them.
pytestmark = pytest.mark.django_db(transaction=True)
STAGING = ["The staging database runs PostgreSQL 15 on host db-2.",
           "Note: the staging database runs on PostgreSQL 15 (host db-2).",
           "Staging database: PostgreSQL 15, running on host db-2."]


def _erase(team_admin, system_admin, ids: list[str]) -> dict:
    return erase_through_requests(team_admin, system_admin, {"namespace": "alpha", "ids": ids})


@pytest.fixture
def merged(agent, team_admin) -> dict:
    for text in STAGING:
        assert agent.post("/api/v1/memories", {"content": text}).status_code == 201
    body = team_admin.post("/api/v1/namespaces/alpha/consolidate",
                           {"dry_run": False, "threshold": 0.85}).json()
    assert body["merged"] == 1, body
    return body["proposals"][0]


def test_erasing_the_survivor_releases_the_merged_memories(merged, team_admin, system_admin):
    others = sorted(set(merged["members"]) - {merged["survivor"]})
    certificate = _erase(team_admin, system_admin, [merged["survivor"]])
    assert certificate["touched"]["memory_links"] == [
        {"memory": pk, "change": "released"} for pk in others]
    assert certificate["verification"]["memory_links"] == {"remaining": 0, "ok": True}
    assert not Memory.objects.filter(pk__in=others, superseded_by__isnull=False).exists()
    assert not MemoryLink.objects.exists()


def test_erasing_a_merged_member_removes_the_survivors_link_to_it(merged, team_admin,
                                                                    system_admin):
    member = next(m for m in merged["members"] if m != merged["survivor"])
    certificate = _erase(team_admin, system_admin, [member])
    assert certificate["touched"]["memory_links"] == [
        {"memory": merged["survivor"], "change": "lineage_removed"}]
    assert certificate["verification"]["memory_links"]["ok"] is True
    assert not MemoryLink.objects.filter(target_id=member).exists()
    assert MemoryLink.objects.filter(source_id=merged["survivor"]).count() == 1
