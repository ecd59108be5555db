"""A memory's strength (issue 21, item 4): its parts, the agent's track record counted by
the write path, shown on GET /api/v1/memories/{id}, and a recall prior."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.roles import Role
from apps.memories import strength, writes
from apps.memories.models import AgentRecord, Memory, MemoryLink
from apps.memories.recall import ranking
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller

EARLY = "The backup job runs at 2am on Sundays"
LATE = "The backup job runs at 3am on Sundays"


def _memory(**fields) -> Memory:
    now = timezone.now()
    values = {"content": "x", "agent_id": "agent-1", "importance": 0.5, "confidence": 1.0,
              "access_count": 0, "created_at": now}
    return Memory(**{**values, **fields})


def test_a_fresh_memory_of_an_agent_without_history():
    found = strength.compute(_memory(), record=None, conflicted=False, half_life=90)
    assert found.parts == pytest.approx({"importance": 0.5, "confidence": 1.0, "use": 0.0,
                                         "age": 1.0, "track": 0.9})
    assert found.value == pytest.approx((0.5 + 1 + 0 + 1 + 0.9) / 5)
    assert found.factors == {}


def test_age_halves_per_half_life_and_a_recall_refreshes_it():
    now = timezone.now()
    old = _memory(occurred_at=now - timedelta(days=90))
    assert strength.compute(old, record=None, conflicted=False, half_life=90, now=now
                            ).parts["age"] == pytest.approx(0.5)
    old.last_recalled_at = now
    assert strength.compute(old, record=None, conflicted=False, half_life=90, now=now
                            ).parts["age"] == pytest.approx(1.0)


def test_use_superseded_and_conflicted():
    used = strength.compute(_memory(access_count=5), record=None, conflicted=False, half_life=90)
    assert used.parts["use"] == pytest.approx(0.632, abs=1e-3)
    plain = strength.compute(_memory(), record=None, conflicted=False, half_life=90).value
    superseded = _memory()
    superseded.superseded_by_id = "00000000-0000-0000-0000-000000000001"
    assert strength.compute(superseded, record=None, conflicted=False, half_life=90
                            ).value == pytest.approx(plain * 0.1)
    assert strength.compute(_memory(), record=None, conflicted=True, half_life=90
                            ).value == pytest.approx(plain * 0.8)


def test_the_track_record_is_counted_by_the_write_path(alpha, agent, team_admin, stored):
    ids = [stored(f"Fact number {i} about the garden shed")["id"] for i in range(4)]
    # The team admin edits its own memory: not a correction.
    own = team_admin.post("/api/v1/memories", {"content": "The admin's own note"}).json()["id"]
    assert team_admin.patch(f"/api/v1/memories/{own}", {"content": "The admin's note, reworded"}
                            ).status_code == 200
    assert AgentRecord.objects.get(agent_id="admin-1").corrected == 0
    # The team admin corrects one of the agent's (a tags edit is no correction); one is
    # deleted.
    assert team_admin.patch(f"/api/v1/memories/{ids[1]}", {"content": "Fact one, corrected"}
                            ).status_code == 200
    assert team_admin.patch(f"/api/v1/memories/{ids[2]}", {"tags": ["x"]}).status_code == 200
    assert team_admin.delete(f"/api/v1/memories/{ids[3]}").status_code == 204
    record = AgentRecord.objects.get(namespace=alpha, agent_id="agent-1")
    assert (record.stored, record.corrected, record.deleted) == (4, 1, 1)

    body = agent.get(f"/api/v1/memories/{ids[0]}").json()
    track = 1 - (2 + 1) / (4 + 10)
    assert body["strength"]["parts"]["track"] == {"value": pytest.approx(track, abs=1e-4),
                                                  "weight": 1.0}
    assert set(body["strength"]["parts"]) == {"importance", "confidence", "use", "age", "track"}
    assert 0 < body["strength"]["value"] < 1


def test_events_and_system_deletes_do_not_count(alpha, agent):
    response = agent.post("/api/v1/events", {"events": [
        {"id": "e1", "event_type": "user_message", "session_id": "s1",
         "occurred_at": timezone.now().isoformat(), "text": "hello"}]})
    assert response.status_code in (200, 201), response.content
    assert not AgentRecord.objects.filter(namespace=alpha).exists()
    memory = agent.post("/api/v1/memories", {"content": "A fact to expire"}).json()
    retention = Principal(label="system:retention", agent_id="", role=Role.SYSTEM)
    with writes.atomic() as write:
        write.delete(alpha, [memory["id"]], actor=retention, audit=lambda *args: None)
    assert not Memory.objects.filter(pk=memory["id"]).exists()
    record = AgentRecord.objects.get(namespace=alpha, agent_id="agent-1")
    assert record.stored == 1 and record.deleted == 0


def test_a_conflict_link_lowers_strength_on_the_detail(alpha, agent, stored):
    first, second = stored(EARLY)["id"], stored(LATE)["id"]
    before = agent.get(f"/api/v1/memories/{first}").json()["strength"]["value"]
    MemoryLink.objects.create(namespace=alpha, source_id=first, target_id=second,
                              relation=MemoryLink.Relation.CONFLICTS_WITH, similarity=0.9,
                              differs_in=["number"], created_by="test")
    after = agent.get(f"/api/v1/memories/{first}").json()["strength"]
    assert after["factors"] == {"conflicted": 0.8}
    assert after["value"] == pytest.approx(before * 0.8, abs=1e-3)


def test_shared_memories_show_no_strength(alpha, beta, agent, team_admin, stored):
    memory = stored(EARLY)["id"]
    grant = team_admin.post("/api/v1/namespaces/alpha/grants", {"grantee": "beta"})
    assert grant.status_code == 201, grant.content
    outsider = make_caller(Role.AGENT, beta, "outsider-2")
    body = outsider.get(f"/api/v1/memories/{memory}").json()
    assert body["strength"] is None


@pytest.mark.parametrize("strong", [EARLY, LATE])
def test_the_strength_prior_lifts_the_stronger_of_two_equal_matches(alpha, agent, stored, strong):
    alpha.recall_defaults = {"weights": {"strength": 5.0}}
    alpha.full_clean()
    alpha.save()
    for content in (EARLY, LATE):
        stored(content, importance=1.0 if content == strong else 0.0,
               confidence=1.0 if content == strong else 0.0)
    body = agent.post("/api/v1/recall", {"query": "When does the backup job run?",
                                         "mode": "hybrid", "explain": True}).json()
    assert body["results"][0]["content"] == strong
    shown = body["results"][0]["explain"]["strength"]
    assert 0 < shown["raw"] <= 1 and set(shown["parts"]) == set(strength.WEIGHTS)
    assert "strength" in ranking.PRIORS


def test_explain_of_a_shared_hit_shows_its_strength_but_not_the_grantors_parts(
        alpha, beta, team_admin, stored):
    stored(EARLY)
    assert team_admin.post("/api/v1/namespaces/alpha/grants", {"grantee": "beta"}
                           ).status_code == 201
    beta.recall_defaults = {"weights": {"strength": 1.0}}
    beta.full_clean()
    beta.save()
    outsider = make_caller(Role.AGENT, beta, "outsider-2")
    body = outsider.post("/api/v1/recall", {"query": "When does the backup job run?",
                                            "mode": "hybrid", "explain": True,
                                            "include_shared": True}).json()
    shared = [hit for hit in body["results"] if hit["shared"]]
    assert shared and "raw" in shared[0]["explain"]["strength"]
    assert "parts" not in shared[0]["explain"]["strength"]
    assert "factors" not in shared[0]["explain"]["strength"]


def test_explain_shows_the_strength_with_no_contribution_at_the_default_weight(alpha, agent,
                                                                                stored):
    """At the strength prior's default weight (0) explain still shows each own result's
    strength and its parts, contributing 0: the ranking is the same as without it."""
    from django.conf import settings

    assert settings.MEMORYWEB_FUSION_WEIGHTS.get("strength", 0) == 0
    for content in (EARLY, LATE):
        stored(content)
    query = {"query": "When does the backup job run?", "mode": "hybrid"}
    plain = agent.post("/api/v1/recall", query).json()["results"]
    # Read before the explained recall, which counts as a use (after its strengths are read).
    details = {r["id"]: agent.get(f"/api/v1/memories/{r['id']}").json()["strength"]
               for r in plain}
    body = agent.post("/api/v1/recall", {**query, "explain": True}).json()
    results = body["results"]
    assert [(r["id"], r["score"]) for r in results] == [(r["id"], r["score"]) for r in plain]
    for rank, result in enumerate(sorted(results, key=lambda r: -r["explain"]["strength"]["raw"]),
                                  start=1):
        shown = result["explain"]["strength"]
        assert shown["contribution"] == 0 and shown["rank"] == rank
        assert shown["raw"] == pytest.approx(details[result["id"]]["value"], abs=1e-3)
        assert set(shown["parts"]) == set(strength.WEIGHTS) and "factors" in shown
        total = sum(part["contribution"] for part in result["explain"].values())
        assert total == pytest.approx(result["score"], abs=1e-5)
    assert body["explain"]["weights"].get("strength", 0) == 0
    lexical = agent.post("/api/v1/recall", {**query, "mode": "lexical", "explain": True}).json()
    assert all(list(r["explain"]) == ["lexical"] for r in lexical["results"])
