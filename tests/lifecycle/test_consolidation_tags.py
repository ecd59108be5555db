"""Consolidation across differing tags: the survivor takes the union of its group's tags as a
versioned edit (so a tag-filtered recall that found a member finds it), unmerge takes the
gained tags back (unless the survivor was edited since), and a tag named by a tag-scoped
sharing grant is never gained (docs/lifecycle.md, "How groups are found")."""

from __future__ import annotations

import numpy as np
import pytest

from apps.audit.models import AuditEntry
from apps.lifecycle import consolidation, grouping
from apps.lifecycle import facets as facets_module
from apps.memories.models import Memory, MemoryVersion
from apps.tenancy.models import SharingGrant

URL = "/api/v1/namespaces/alpha/consolidate"
DEPLOYS = ["Deployments to production happen every Tuesday afternoon.",
           "Production deploys happen on Tuesday afternoons."]
APPLY = {"dry_run": False, "threshold": 0.85}


@pytest.fixture
def deploys(stored) -> list[dict]:
    """The two paraphrases, tagged apart: neither's tags hold the other's."""
    return [stored(DEPLOYS[0], tags=["ops", "prod"]), stored(DEPLOYS[1], tags=["release"])]


def _grant(team_admin, tags: list[str]) -> dict:
    """Alpha shares its memories tagged with any of ``tags`` with beta."""
    response = team_admin.post("/api/v1/namespaces/alpha/grants", {"grantee": "beta", "tags": tags})
    assert response.status_code == 201, response.content
    return response.json()


def _proposal(body: dict, member: str) -> dict:
    return next(p for p in body["proposals"] if member in p["members"])


def _recall(caller, tags: list[str], mode: str = "hybrid", **filters) -> set[str]:
    response = caller.post("/api/v1/recall", {"query": "production deploys on Tuesday",
                                              "k": 10, "mode": mode,
                                              "filters": {"tags": tags, **filters}})
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_a_dry_run_proposes_memories_whose_tags_differ_and_shows_the_survivors_tags(
        team_admin, deploys):
    body = team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()
    proposal = _proposal(body, deploys[0]["id"])
    assert set(proposal["members"]) == {d["id"] for d in deploys}
    own = next(d for d in deploys if d["id"] == proposal["survivor"])["tags"]
    assert proposal["tags"][:len(own)] == own  # its own first, then the others'
    assert sorted(proposal["tags"]) == ["ops", "prod", "release"]
    assert not MemoryVersion.objects.exists()  # a dry run edits nothing


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_applying_gives_the_survivor_the_union_so_a_tag_filtered_recall_still_finds_it(
        team_admin, agent, deploys, mode):
    before = {d["id"]: _recall(agent, d["tags"][:1], mode) for d in deploys}
    assert all(member in found for member, found in before.items())
    body = team_admin.post(URL, APPLY).json()
    survivor = _proposal(body, deploys[0]["id"])["survivor"]
    other = next(d for d in deploys if d["id"] != survivor)
    kept = Memory.objects.get(pk=survivor)
    assert sorted(kept.tags) == ["ops", "prod", "release"] and kept.version == 2
    edit = MemoryVersion.objects.get(memory=kept, version=2)
    assert edit.changes["tags"]["after"] == kept.tags and edit.changes["tags"]["by"] == "merge"
    # Every tag of the member that is now superseded finds the survivor, and not the member.
    for tag in other["tags"]:
        found = _recall(agent, [tag], mode)
        assert survivor in found and other["id"] not in found
    listed = agent.get(f"/api/v1/memories?tag={other['tags'][0]}").json()["results"]
    assert [m["id"] for m in listed] == [survivor]
    entry = AuditEntry.objects.get(operation="memory.consolidate")
    assert entry.summary["tags_gained"] == len(other["tags"])


def test_unmerge_takes_the_gained_tags_back(team_admin, agent, deploys):
    body = team_admin.post(URL, APPLY).json()
    survivor = _proposal(body, deploys[0]["id"])["survivor"]
    own = next(d for d in deploys if d["id"] == survivor)["tags"]
    assert team_admin.post(f"/api/v1/memories/{survivor}/unmerge").status_code == 200
    kept = Memory.objects.get(pk=survivor)
    assert kept.tags == own and kept.version == 3
    assert MemoryVersion.objects.get(memory=kept, version=3).changes["tags"]["by"] == "unmerge"
    other = next(d for d in deploys if d["id"] != survivor)
    assert _recall(agent, other["tags"][:1]) & {survivor, other["id"]} == {other["id"]}
    assert AuditEntry.objects.get(operation="memory.unmerge").summary["tags_dropped"] == \
        len(other["tags"])


def test_unmerging_one_member_drops_only_the_tags_no_remaining_member_holds(
        team_admin, stored):
    texts = ["The staging database runs PostgreSQL 15 on host db-2.",
             "Staging database: PostgreSQL 15, running on host db-2.",
             "Note: the staging database runs on PostgreSQL 15 (host db-2)."]
    made = [stored(texts[0], tags=["db"]), stored(texts[1], tags=["infra", "pg"]),
            stored(texts[2], tags=["infra"])]
    body = team_admin.post(URL, APPLY).json()
    proposal = _proposal(body, made[0]["id"])
    assert set(proposal["members"]) == {m["id"] for m in made}
    survivor = proposal["survivor"]
    assert set(Memory.objects.get(pk=survivor).tags) == {"db", "infra", "pg"}
    others = [m for m in made if m["id"] != survivor]
    first = others[0]
    team_admin.post(f"/api/v1/memories/{first['id']}/unmerge")
    remaining = others[1]
    expected = {t for m in made if m["id"] != first["id"] for t in m["tags"]}
    assert set(Memory.objects.get(pk=survivor).tags) == expected
    team_admin.post(f"/api/v1/memories/{remaining['id']}/unmerge")
    own = next(m for m in made if m["id"] == survivor)["tags"]
    assert Memory.objects.get(pk=survivor).tags == own


def test_a_survivor_edited_since_keeps_its_tags_when_unmerged(team_admin, deploys):
    body = team_admin.post(URL, APPLY).json()
    survivor = _proposal(body, deploys[0]["id"])["survivor"]
    edited = team_admin.patch(f"/api/v1/memories/{survivor}", {"importance": 0.9})
    assert edited.status_code == 200
    tags = Memory.objects.get(pk=survivor).tags
    response = team_admin.post(f"/api/v1/memories/{survivor}/unmerge")
    assert response.status_code == 200 and len(response.json()["released"]) == 1
    kept = Memory.objects.get(pk=survivor)
    assert kept.tags == tags and kept.version == 3  # no edit of unmerge's


def test_a_tag_a_sharing_grant_names_is_never_gained(team_admin, outsider, deploys):
    grant = _grant(team_admin, ["release"])
    body = team_admin.post(URL, APPLY).json()
    assert body["proposals"] == [] and body["merged"] == 0
    assert all(Memory.objects.get(pk=d["id"]).version == 1 for d in deploys)
    shared = outsider.post("/api/v1/recall", {"query": "production deploys", "include_shared": True,
                                              "k": 10}).json()
    assert {r["id"] for r in shared["results"] if r["namespace"] == "alpha"} == {deploys[1]["id"]}
    # A grant on a tag no member would gain leaves the merge alone.
    assert team_admin.delete(f"/api/v1/namespaces/alpha/grants/{grant['id']}"
                             ).status_code == 204
    _grant(team_admin, ["hr"])
    assert len(team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()["proposals"]) == 1


def test_nested_tags_still_merge_under_a_grant_into_the_member_that_holds_it(
        team_admin, stored, beta):
    made = [stored(DEPLOYS[0], tags=["ops"]), stored(DEPLOYS[1], tags=["ops", "release"])]
    _grant(team_admin, ["release"])
    body = team_admin.post(URL, APPLY).json()
    assert body["merged"] == 1 and body["proposals"][0]["survivor"] == made[1]["id"]
    assert Memory.objects.get(pk=made[1]["id"]).version == 1  # nothing gained, no edit


def test_a_grant_given_between_the_read_and_the_apply_leaves_the_group(
        team_admin, deploys, alpha, beta, monkeypatch):
    real = consolidation.guarded_tags
    calls = []

    def at_read_time_none(ns):
        calls.append(ns)
        if len(calls) == 1:  # the groups are found with no grant yet; then one is given
            SharingGrant.objects.create(grantor=alpha, grantee=beta, tags=["release", "ops"],
                                        created_by="test")
            return frozenset()
        return real(ns)

    monkeypatch.setattr(consolidation, "guarded_tags", at_read_time_none)
    body = team_admin.post(URL, APPLY).json()
    assert len(body["proposals"]) == 1 and body["stale"] == 1 and body["merged"] == 0
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert all(Memory.objects.get(pk=d["id"]).version == 1 for d in deploys)


def test_the_reviewed_merge_refuses_a_survivor_that_would_gain_a_granted_tag(
        team_admin, deploys, beta):
    from apps.core.errors import InvalidInput
    from apps.lifecycle.consolidation import merge
    from apps.tenancy.principal import Principal

    admin = Principal.for_key(team_admin.key)
    ids = [d["id"] for d in deploys]
    _grant(team_admin, ["prod"])
    with pytest.raises(InvalidInput, match="sharing grant") as refused:
        merge(admin, "alpha", ids, ids[1])  # would gain "prod"
    assert refused.value.field == "survivor"
    outcome = merge(admin, "alpha", ids, ids[0])  # holds "prod": gains "release" only
    assert outcome.merged == 1 and list(outcome.groups[0].tags) == ["ops", "prod", "release"]
    assert Memory.objects.get(pk=ids[0]).tags == ["ops", "prod", "release"]


def test_a_union_over_the_tag_limit_is_not_merged(team_admin, stored, settings):
    settings.MEMORYWEB_LIMITS = {**settings.MEMORYWEB_LIMITS, "max_tags": 3}
    stored(DEPLOYS[0], tags=["a", "b"])
    stored(DEPLOYS[1], tags=["c", "d"])
    assert team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()["proposals"] == []


# --- the rule itself (grouping) ----------------------------------------------------------

def _find(tags: list[set[str]], guarded, richness_first: int | None = None,
          max_tags: int | None = None) -> grouping.Found:
    texts = ["The office is closed on public holidays.", "Office closed on public holidays.",
             "Note: the office is closed on public holidays."][:len(tags)]
    if richness_first is not None:
        texts[richness_first] = "The office is closed on public holidays, Maria says."
    candidates = [grouping.Candidate(str(i), t, (), (0,), frozenset(tags[i]))
                  for i, t in enumerate(texts)]
    vectors = np.ones((len(texts), 4), dtype=np.float32) / 2
    everyone = [[(str(j), 1.0) for j in range(len(texts))]]
    return grouping.find_groups(candidates, vectors, lambda rows: everyone * len(rows), 0.8,
                                lambda pairs: [0.0] * len(pairs), guarded=guarded,
                                max_tags=max_tags)


def test_differing_tags_merge_unless_a_differing_tag_is_guarded():
    groups = _find([{"ops"}, {"office"}], frozenset()).groups
    assert len(groups) == 1 and set(groups[0].tags) == {"ops", "office"}
    assert _find([{"ops"}, {"office"}], frozenset({"office"})).groups == []
    assert _find([{"ops"}, {"office"}], None).groups == []  # None: every tag guarded
    assert len(_find([{"ops"}, {"office"}], frozenset({"hr"})).groups) == 1
    assert _find([{"ops"}, {"office"}], frozenset(), max_tags=1).groups == []


def test_the_survivor_is_the_most_precise_member_not_the_most_tagged():
    # Neither holds the other's tags: the one naming Maria survives, tags or not.
    groups = _find([{"a", "b", "c"}, {"d"}], frozenset(), richness_first=1).groups
    assert groups[0].survivor == "1" and groups[0].tags == ("d", "a", "b", "c")


def test_a_guarded_tag_decides_the_survivor():
    # 0 is the more precise, but only 1 may survive (0 would gain the guarded "shared").
    groups = _find([{"ops"}, {"ops", "shared"}], frozenset({"shared"}), richness_first=0).groups
    assert len(groups) == 1
    group = groups[0]
    assert group.survivor == "1" and "shared" in group.tags


# --- rephrasings that only change a word's form; names written in lower case -----------

@pytest.mark.parametrize(("a", "b"), [
    ("A memory leak caused the web frontend incident.",
     "Root cause of the web frontend incident: a memory leak."),  # caused / cause
    ("Bilal is the account manager for Wayne Retail.",
     "Wayne Retail's account is managed by Bilal."),  # manager / managed
    ("The auth.initech.net TLS cert expires soon.",
     "The auth.initech.net TLS certificate expires soon."),  # an abbreviation
    ("Theo works in the UTC+8 time zone.", "Theo works in the UTC+8 tz."),  # initials
])
def test_another_form_of_the_same_word_is_no_swapped_value(a, b):
    assert facets_module.swapped_term(facets_module.facets(a), facets_module.facets(b)) is None


def test_a_swapped_value_is_still_one():
    swap = facets_module.swapped_term(
        facets_module.facets("The staging database runs PostgreSQL 15."),
        facets_module.facets("The production database runs PostgreSQL 15."))
    assert swap == ("staging", "production")


def _found(texts: list[str]) -> grouping.Found:
    candidates = [grouping.Candidate(str(i), t, (), (0,)) for i, t in enumerate(texts)]
    vectors = np.ones((len(texts), 4), dtype=np.float32) / 2
    everyone = [[(str(j), 1.0) for j in range(len(texts))]]
    # The model rates every swapped word alike (as MiniLM rates two first names): only
    # the facets keep a pair apart.
    return grouping.find_groups(candidates, vectors, lambda rows: everyone * len(rows), 0.8,
                                lambda pairs: [1.0] * len(pairs), guarded=frozenset())


def test_a_name_another_memory_capitalises_is_a_name_in_lower_case_too():
    lower = ["Data scientist of the mobile team: Tomas.", "data scientist of the mobile team: jonas."]
    assert [g.members for g in _found(lower).groups] == [["0", "1"]]  # unknown: a word
    found = _found([*lower, "Ask Jonas about the budget."])  # Jonas is someone's name
    assert not any({"0", "1"} <= set(g.members) for g in found.groups)


def test_a_word_written_in_lower_case_by_a_normal_text_is_no_name():
    # "Team" capitalised in a plan's name; "team" in lower case elsewhere: a common word.
    texts = ["Kofi is on call for the search team the week of May 1, 2025.",
             "On-call for the search squad, week of 2025-05-01: Kofi.",
             "Wonka Candy is on the Team plan with 250 seats."]
    assert [g.members for g in _found(texts).groups] == [["0", "1"]]
    # An acronym is no name either ("EM" / "em").
    em = ["nadia is the em of the billing team.", "Nadia is the engineering manager of the "
          "billing team.", "Ask your EM about the Billing budget."]
    assert [g.members for g in _found(em).groups] == [["0", "1"]]
