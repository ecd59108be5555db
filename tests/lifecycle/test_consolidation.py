"""Consolidation over REST: proposals on a dry run, merges with lineage, conflicts never
merged, unmerge, superseded memories out of default lists and recall (docs/lifecycle.md)."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEntry
from apps.memories.models import Memory, MemoryLink

STAGING = ["The staging database runs PostgreSQL 15 on host db-2.",
           "Staging database: PostgreSQL 15, running on host db-2.",
           "Note: the staging database runs on PostgreSQL 15 (host db-2)."]
DEPLOYS = ["Deployments to production happen every Tuesday afternoon.",
           "Production deploys happen on Tuesday afternoons."]
#: Alike but contradicting: never merged.
CONFLICTS = [("The API timeout is 30 seconds.", "The API timeout is 45 seconds.", "number"),
             ("Maria leads the billing migration project.",
              "Anna leads the billing migration project.", "name"),
             ("The team uses Redis for session caching.",
              "The team does not use Redis for session caching.", "negation")]
OTHERS = ["Our office is closed on public holidays.",
          "The mobile app is written in Kotlin and Swift."]

URL = "/api/v1/namespaces/alpha/consolidate"


@pytest.fixture
def corpus(agent) -> dict[str, str]:
    """Content -> id of every memory stored."""
    texts = [*STAGING, *DEPLOYS, *(t for a, b, _ in CONFLICTS for t in (a, b)), *OTHERS]
    response = agent.post("/api/v1/memories/batch",
                          {"memories": [{"content": t} for t in texts]})
    assert response.status_code == 201, response.json()
    return {row["content"]: row["id"] for row in response.json()["results"]}


def _groups(body) -> set[frozenset[str]]:
    return {frozenset(p["members"]) for p in body["proposals"]}


def test_a_dry_run_proposes_the_paraphrases_and_reports_the_conflicts(team_admin, corpus):
    response = team_admin.post(URL, {"dry_run": True, "threshold": 0.85})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dry_run"] is True and body["candidates"] == len(corpus)
    assert _groups(body) == {frozenset(corpus[t] for t in STAGING),
                             frozenset(corpus[t] for t in DEPLOYS)}
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    assert staging["merged_content"] in STAGING and staging["survivor"] in staging["members"]
    assert 0.85 <= staging["min_similarity"] <= staging["similarity"] <= 1
    conflicts = {frozenset(c["members"]): c["differs_in"] for c in body["conflicts"]}
    for a, b, facet in CONFLICTS:
        assert facet in conflicts[frozenset((corpus[a], corpus[b]))]
    assert not any(frozenset((corpus[a], corpus[b])) <= group for a, b, _ in CONFLICTS
                   for group in _groups(body))
    # Nothing changed.
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert not MemoryLink.objects.exists()


def test_applying_supersedes_all_but_the_survivor_with_lineage_and_audit(team_admin, agent,
                                                                           corpus):
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    assert body["merged"] == 2 and body["superseded"] == 3 and body["stale"] == 0
    assert body["conflicts_linked"] == 3
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    survivor = staging["survivor"]
    others = set(staging["members"]) - {survivor}
    assert set(Memory.objects.filter(superseded_by=survivor).values_list("pk", flat=True)
               .iterator()) == {Memory.objects.get(pk=o).pk for o in others}
    links = MemoryLink.objects.filter(source_id=survivor, relation="derived_from")
    assert {str(link.target_id) for link in links} == others
    assert {str(link.target_id): link.similarity for link in links} == staging["member_similarity"]
    assert AuditEntry.objects.filter(operation="memory.consolidate").count() == 2
    # Out of default lists and recall; visible on request and by id.
    listed = {m["id"] for m in agent.get("/api/v1/memories?limit=100").json()["results"]}
    assert survivor in listed and not others & listed
    everything = agent.get("/api/v1/memories?limit=100&include_superseded=true").json()
    assert others <= {m["id"] for m in everything["results"]}
    one = agent.get(f"/api/v1/memories/{next(iter(others))}").json()
    assert one["superseded_by"] == survivor and one["derived_from"] == []
    kept = agent.get(f"/api/v1/memories/{survivor}").json()
    assert set(kept["derived_from"]) == others and kept["superseded_by"] is None
    a, b, facet = CONFLICTS[0]
    assert agent.get(f"/api/v1/memories/{corpus[a]}").json()["conflicts_with"] == [
        {"id": corpus[b], "differs_in": [facet]}]
    hits = agent.post("/api/v1/recall", {"query": "staging database PostgreSQL", "k": 10}).json()
    assert survivor in {h["id"] for h in hits["results"]}
    assert not others & {h["id"] for h in hits["results"]}
    shown = agent.post("/api/v1/recall", {"query": "staging database PostgreSQL", "k": 10,
                                          "filters": {"include_superseded": True}}).json()
    assert others <= {h["id"] for h in shown["results"]}
    # A second run finds nothing more to merge (superseded memories are no candidates).
    again = team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()
    assert again["proposals"] == [] and again["candidates"] == len(corpus) - 3


def test_conflict_links_are_written_a_chunk_per_transaction(team_admin, corpus, monkeypatch):
    """A dense namespace finds hundreds of thousands of conflicts: writing them in one
    transaction held SQLite's write lock long enough for other writers to time out."""
    from apps.lifecycle import consolidation

    monkeypatch.setattr(consolidation, "CONFLICT_CHUNK", 2)
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    assert body["conflicts_linked"] == 3
    entries = AuditEntry.objects.filter(operation="memory.conflicts").order_by("seq")
    assert [e.summary["linked"] for e in entries] == [2, 1]
    assert MemoryLink.objects.filter(relation="conflicts_with").count() == 3


def test_unmerge_makes_them_current_again(team_admin, agent, corpus):
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    one = next(m for m in staging["members"] if m != staging["survivor"])
    # One superseded memory alone, then the rest through the survivor.
    single = team_admin.post(f"/api/v1/memories/{one}/unmerge")
    assert single.status_code == 200 and single.json()["released"] == [one]
    rest = team_admin.post(f"/api/v1/memories/{staging['survivor']}/unmerge").json()
    assert set(rest["released"]) == set(staging["members"]) - {one, staging["survivor"]}
    assert not Memory.objects.filter(pk__in=staging["members"], superseded_by__isnull=False).exists()
    assert not MemoryLink.objects.filter(source_id=staging["survivor"]).exists()
    assert AuditEntry.objects.filter(operation="memory.unmerge").count() == 2
    again = team_admin.post(f"/api/v1/memories/{one}/unmerge")
    assert again.status_code == 409


def test_deleting_a_survivor_makes_its_merged_memories_current(team_admin, corpus):
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    assert team_admin.delete(f"/api/v1/memories/{staging['survivor']}").status_code == 204
    left = Memory.objects.filter(pk__in=staging["members"])
    assert left.count() == 2 and all(m.superseded_by_id is None and m.superseded_at is None
                                     for m in left)


def test_roles_and_tenants(reader, agent, outsider, system_admin, corpus):
    assert reader.post(URL, {"dry_run": True}).status_code == 403
    assert agent.post(URL, {"dry_run": True}).status_code == 403
    assert outsider.post(URL, {"dry_run": True}).status_code == 404
    assert system_admin.post(URL, {"dry_run": True}).status_code == 200
    member = corpus[STAGING[0]]
    assert agent.post(f"/api/v1/memories/{member}/unmerge").status_code == 403
    assert outsider.post(f"/api/v1/memories/{member}/unmerge").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"threshold": 0.2}, "threshold"),
    ({"threshold": "high"}, "threshold"),
    ({"dry_run": "maybe"}, "dry_run"),
    ({"filters": {"kind": "event"}}, "filters.kind"),
    ({"filters": {"created_after": "2025-01-02T00:00:00Z",
                  "created_before": "2025-01-01T00:00:00Z"}}, "filters.created_before"),
    ({"filters": {"agent": "x"}}, "filters.agent"),
    ({"apply": True}, "apply"),
])
def test_bad_input_is_a_400_naming_it_and_changes_nothing(team_admin, corpus, body, field):
    response = team_admin.post(URL, {"dry_run": False, **body})
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["field"] == field
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


def test_filters_narrow_the_candidates(team_admin, agent, corpus):
    other = team_admin.post("/api/v1/memories", {"content": STAGING[1] + " Again.",
                                                 "tags": ["infra"]}).json()
    body = team_admin.post(URL, {"dry_run": True, "threshold": 0.85,
                                 "filters": {"tags": ["infra"]}}).json()
    assert body["candidates"] == 1 and body["proposals"] == []
    # Memories of different agents are never merged with each other.
    mixed = team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()
    assert not any(other["id"] in p["members"] for p in mixed["proposals"])


def test_a_request_over_the_cap_is_refused(team_admin, corpus, settings):
    settings.MEMORYWEB_CONSOLIDATE_MAX = 3
    response = team_admin.post(URL, {"dry_run": True})
    assert response.status_code == 400 and response.json()["error"]["field"] == "filters"


def test_the_command_lists_then_applies(corpus, capsys):
    from django.core.management import CommandError, call_command

    call_command("consolidate", "alpha", "--threshold", "0.85")
    dry = capsys.readouterr().out
    assert f"alpha: {len(corpus)} memories, 2 groups (5 memories), 3 conflicts; dry run" in dry
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    call_command("consolidate", "alpha", "--threshold", "0.85", "--apply")
    assert "merged 2, superseded 3, 0 changed meanwhile, 3 conflicts linked" in capsys.readouterr().out
    assert AuditEntry.objects.filter(operation="memory.consolidate",
                                     actor="system:consolidate").count() == 2
    with pytest.raises(CommandError, match="threshold"):
        call_command("consolidate", "alpha", "--threshold", "3")
    with pytest.raises(CommandError, match=r"not found|no namespace"):
        call_command("consolidate", "nowhere")


def test_the_mcp_tool_proposes_and_merges_for_a_team_admin_only(team_admin, agent, corpus):
    """Through the socket's ``mcp.call`` (what ``manage.py mcp`` and /mcp run: the key's
    principal calls the service)."""
    from apps.server.control import MCP_TOOLS, OPERATIONS

    assert "consolidate" in MCP_TOOLS
    call = OPERATIONS["mcp.call"]
    dry = call({"key": team_admin.raw, "tool": "consolidate",
                "args": [{"dry_run": True, "threshold": 0.85}]})
    assert _groups(dry) == {frozenset(corpus[t] for t in STAGING),
                            frozenset(corpus[t] for t in DEPLOYS)}
    applied = call({"key": team_admin.raw, "tool": "consolidate",
                    "args": [{"dry_run": False, "threshold": 0.85}]})
    assert applied["merged"] == 2 and applied["superseded"] == 3
    from apps.server.control import Refused

    with pytest.raises(Refused, match="permission_denied"):
        call({"key": agent.raw, "tool": "consolidate", "args": [{"dry_run": True}]})



def test_one_proposal_is_merged_as_accepted_and_checked(team_admin, agent, corpus):
    """What the dashboard's review calls: one group, checked again before it is written."""
    from apps.core.errors import Conflict, InvalidInput, PermissionDenied
    from apps.lifecycle.consolidation import merge
    from apps.tenancy.principal import Principal

    admin, helper = Principal.for_key(team_admin.key), Principal.for_key(agent.key)
    members = [corpus[t] for t in STAGING]
    with pytest.raises(PermissionDenied):
        merge(helper, "alpha", members, members[0])
    with pytest.raises(InvalidInput):
        merge(admin, "alpha", members[:1], members[0])
    with pytest.raises(InvalidInput):
        merge(admin, "alpha", members, corpus[OTHERS[0]])
    outcome = merge(admin, "alpha", members, members[1])
    assert outcome.merged == 1 and outcome.superseded == 2
    assert set(Memory.objects.filter(superseded_by=members[1]).values_list("pk", flat=True)
               .iterator()) == {Memory.objects.get(pk=m).pk for m in (members[0], members[2])}
    with pytest.raises(Conflict):  # superseded now: no longer a candidate
        merge(admin, "alpha", members, members[1])
    other = team_admin.post("/api/v1/memories", {"content": DEPLOYS[0] + " Noted."}).json()
    with pytest.raises(InvalidInput, match="agents"):  # kinds, agents, subjects, tags…
        merge(admin, "alpha", [corpus[DEPLOYS[0]], other["id"]], other["id"])


@pytest.mark.parametrize("value", [0, 1, "yes", "false", None])
def test_dry_run_is_a_json_boolean_through_every_door(team_admin, corpus, value):
    for path, body in ((URL, {"dry_run": value}), ("/v1/consolidate", {"dry_run": value}),
                       ("/cmm/consolidate", {"dry_run": value})):
        response = team_admin.post(path, body)
        if value is None and path != URL:  # the seeds' null: the default
            assert response.status_code == 200, (path, response.content)
            continue
        assert response.status_code == 400, (path, value, response.content)


@pytest.mark.parametrize("body", ["null", "[1]", "5", '"x"', '[["dry_run", false]]'])
def test_a_body_that_is_no_object_is_a_400_and_merges_nothing(team_admin, corpus, body):
    for path in (URL, "/v1/consolidate", "/cmm/consolidate"):
        response = team_admin.client.post(path, body, content_type="application/json")
        assert response.status_code == 400, (path, body, response.content)
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


def test_a_member_edited_between_reading_and_applying_is_not_merged(team_admin, corpus,
                                                                     monkeypatch):
    from apps.lifecycle import consolidation

    real = consolidation._apply_group

    def edit_first(principal, outcome, group):
        Memory.objects.filter(pk=group.members[0]).update(version=7)  # a concurrent edit
        return real(principal, outcome, group)

    monkeypatch.setattr(consolidation, "_apply_group", edit_first)
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    assert body["merged"] == 0 and body["stale"] == 2
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


def test_storing_a_merged_memorys_text_again_answers_with_its_survivor(team_admin, agent,
                                                                      corpus):
    """The superseded member keeps its text's dedup slot: the duplicate answered is the
    memory that says it now (the survivor), not one left out of default recall."""
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    merged = next(t for t in STAGING if corpus[t] != staging["survivor"])
    again = agent.post("/api/v1/memories", {"content": merged})
    assert again.status_code == 200, again.json()
    assert again.json()["duplicate"] is True and again.json()["id"] == staging["survivor"]
    assert again.json()["superseded_by"] is None
    batch = agent.post("/api/v1/memories/batch", {"memories": [{"content": merged}]}).json()
    assert [r["id"] for r in batch["results"]] == [staging["survivor"]]
    assert Memory.objects.count() == len(corpus)


def test_deleting_a_survivor_names_the_memories_it_releases_in_the_audit_log(team_admin,
                                                                              corpus):
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    others = sorted(set(staging["members"]) - {staging["survivor"]})
    assert team_admin.delete(f"/api/v1/memories/{staging['survivor']}").status_code == 204
    entry = AuditEntry.objects.filter(operation="memory.delete").latest("seq")
    assert entry.record_ids == [staging["survivor"]]
    assert entry.summary == {"count": 1, "released": others}
    assert not Memory.objects.filter(pk__in=others, superseded_by__isnull=False).exists()


@pytest.mark.parametrize("policy", ["skip", "link"])
def test_a_near_repeat_of_a_merged_memory_meets_its_survivor(team_admin, agent, alpha, corpus,
                                                            policy):
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85}).json()
    staging = next(p for p in body["proposals"] if corpus[STAGING[0]] in p["members"])
    merged = next(t for t in STAGING if corpus[t] != staging["survivor"])
    alpha.near_duplicate_policy = policy
    alpha.save(update_fields=["near_duplicate_policy"])
    near = agent.post("/api/v1/memories", {"content": merged + " (confirmed)"}).json()
    if policy == "skip":  # the memory that stands in is the one recall serves
        assert near["duplicate"] is True and near["id"] == staging["survivor"]
    else:
        assert near["near_duplicate_of"] == staging["survivor"]
