"""Sharing grants: alpha shares (some of) its memories with beta; beta reads them, read-only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.core.roles import Role
from apps.memories.models import Memory
from apps.tenancy.models import SharingGrant
from tests.helpers.callers import make_caller

GRANTS = "/api/v1/namespaces/alpha/grants"


@pytest.fixture
def beta_reader(beta):
    return make_caller(Role.READER, beta, "beta-reader")


@pytest.fixture
def alpha_notes(stored):
    """Two alpha memories: one tagged ``ops``, one tagged ``hr``."""
    return {
        "ops": stored("The deploy pipeline for the lighthouse service runs at midnight.",
                      tags=["ops"], kind="procedure"),
        "hr": stored("The lighthouse team offsite is planned for March in Lisbon.",
                     tags=["hr"], kind="fact"),
    }


def grant(team_admin, **body):
    response = team_admin.post(GRANTS, {"grantee": "beta", **body})
    assert response.status_code == 201, response.content
    return response.json()


def shared_recall(caller, query="lighthouse", **body):
    response = caller.post("/api/v1/recall", {"query": query, "include_shared": True, **body})
    assert response.status_code == 200, response.content
    return response.json()


def ids(body) -> set[str]:
    return {row["id"] for row in body["results"]}


def test_grant_shows_alpha_memories_to_beta_with_their_source(team_admin, outsider, alpha_notes):
    outsider.post("/api/v1/memories", {"content": "Beta keeps its own lighthouse notes here."})
    assert not ids(shared_recall(outsider)) & {m["id"] for m in alpha_notes.values()}

    created = grant(team_admin)
    assert created["grantor"] == "alpha" and created["grantee"] == "beta"
    assert created["status"] == "active" and created["created_by"].startswith("key:")

    body = shared_recall(outsider)
    assert body["searched"] == ["beta", "alpha"]
    by_id = {row["id"]: row for row in body["results"]}
    for memory in alpha_notes.values():
        assert by_id[memory["id"]]["namespace"] == "alpha"
        assert by_id[memory["id"]]["shared"] is True
    own = [row for row in body["results"] if row["namespace"] == "beta"]
    assert own and all(row["shared"] is False for row in own)
    # Without include_shared nothing changes: a grant is opt-in per recall.
    plain = outsider.post("/api/v1/recall", {"query": "lighthouse"}).json()
    assert {row["namespace"] for row in plain["results"]} == {"beta"}
    assert plain["searched"] == ["beta"]


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_tag_limited_grant_hides_other_tags(team_admin, outsider, alpha_notes, mode):
    grant(team_admin, tags=["ops"])
    found = ids(shared_recall(outsider, mode=mode))
    assert alpha_notes["ops"]["id"] in found
    assert alpha_notes["hr"]["id"] not in found


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_kind_and_window_limits(team_admin, outsider, alpha_notes, mode):
    grant(team_admin, kinds=["fact"])
    found = ids(shared_recall(outsider, mode=mode))
    assert alpha_notes["hr"]["id"] in found and alpha_notes["ops"]["id"] not in found

    SharingGrant.objects.all().delete()
    ops_created = Memory.objects.get(pk=alpha_notes["ops"]["id"]).created_at
    Memory.objects.filter(pk=alpha_notes["hr"]["id"]).update(
        created_at=ops_created + dt.timedelta(hours=1))
    grant(team_admin, created_before=(ops_created + dt.timedelta(minutes=30)).isoformat())
    found = ids(shared_recall(outsider, mode=mode))
    assert alpha_notes["ops"]["id"] in found and alpha_notes["hr"]["id"] not in found


def test_several_grants_add_up(team_admin, outsider, alpha_notes):
    grant(team_admin, tags=["ops"])
    grant(team_admin, kinds=["fact"])
    assert {m["id"] for m in alpha_notes.values()} <= ids(shared_recall(outsider))


def test_revoke_takes_effect_on_the_next_request(team_admin, outsider, alpha_notes):
    created = grant(team_admin)
    memory_id = alpha_notes["ops"]["id"]
    assert memory_id in ids(shared_recall(outsider))
    assert outsider.get(f"/api/v1/memories/{memory_id}").status_code == 200

    assert team_admin.delete(f"{GRANTS}/{created['id']}").status_code == 204
    assert memory_id not in ids(shared_recall(outsider))
    assert outsider.get(f"/api/v1/memories/{memory_id}").status_code == 404
    assert outsider.get("/api/v1/sharing/accessible").json() == []
    listed = team_admin.get(GRANTS).json()
    assert [g["status"] for g in listed] == ["revoked"]
    assert team_admin.delete(f"{GRANTS}/{created['id']}").status_code == 204  # idempotent


def test_expiry_takes_effect_on_the_next_request(team_admin, outsider, alpha_notes):
    soon = timezone.now() + dt.timedelta(hours=1)
    created = grant(team_admin, expires_at=soon.isoformat())
    memory_id = alpha_notes["ops"]["id"]
    assert memory_id in ids(shared_recall(outsider))
    SharingGrant.objects.filter(pk=created["id"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert memory_id not in ids(shared_recall(outsider))
    assert outsider.get(f"/api/v1/memories/{memory_id}").status_code == 404
    assert team_admin.get(f"{GRANTS}/{created['id']}").json()["status"] == "expired"


def test_shared_memories_are_read_only_to_the_grantee(team_admin, beta, alpha_notes):
    grant(team_admin)
    beta_admin = make_caller(Role.ADMIN, beta, "beta-admin")
    memory_id = alpha_notes["ops"]["id"]
    fetched = beta_admin.get(f"/api/v1/memories/{memory_id}")
    assert fetched.status_code == 200 and fetched.json()["namespace"] == "alpha"
    for response in (beta_admin.patch(f"/api/v1/memories/{memory_id}", {"importance": 1.0}),
                     beta_admin.put(f"/api/v1/memories/{memory_id}", {"content": "mine now"}),
                     beta_admin.delete(f"/api/v1/memories/{memory_id}")):
        assert response.status_code == 403, response.content
        assert "read-only" in response.json()["error"]["message"]
    # Past versions may hold content outside the grant's scope: not shared.
    assert beta_admin.get(f"/api/v1/memories/{memory_id}/versions").status_code == 404
    memory = Memory.objects.get(pk=memory_id)
    assert memory.importance != 1.0 and memory.content.startswith("The deploy pipeline")
    # Nor do shared memories join the grantee's own listing.
    listed = beta_admin.get("/api/v1/memories").json()["results"]
    assert memory_id not in {row["id"] for row in listed}


def test_grant_scope_is_checked_on_the_rows_too(team_admin, outsider, alpha_notes):
    """If the indexes still say "tagged ops" after the row changed, the row wins."""
    grant(team_admin, tags=["ops"])
    memory_id = alpha_notes["ops"]["id"]
    Memory.objects.filter(pk=memory_id).update(tags=["retired"])  # indexes not told
    for mode in ("vector", "lexical", "hybrid"):
        assert memory_id not in ids(shared_recall(outsider, mode=mode))
    assert outsider.get(f"/api/v1/memories/{memory_id}").status_code == 200  # SQL scope: tag rows
    Memory.objects.filter(pk=memory_id).delete()
    assert outsider.get(f"/api/v1/memories/{memory_id}").status_code == 404


def test_identical_content_has_the_same_meaning_score_in_either_namespace(team_admin, outsider,
                                                                          stored):
    text = "Quarterly revenue for the glacier project grew by twelve percent."
    mine = outsider.post("/api/v1/memories", {"content": text}).json()
    theirs = stored(text)
    grant(team_admin)
    body = shared_recall(outsider, query="glacier project quarterly revenue", mode="vector")
    scores = {row["id"]: row["score"] for row in body["results"]}
    assert scores[mine["id"]] == pytest.approx(scores[theirs["id"]], abs=1e-6)


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_a_strong_shared_match_outranks_a_weak_own_one(team_admin, outsider, stored, mode):
    weak = outsider.post("/api/v1/memories", {"content": "The cafeteria menu changes on "
                                              "Mondays."}).json()
    strong = stored("Glacier project quarterly revenue figures are in the finance folder.")
    grant(team_admin)
    body = shared_recall(outsider, query="glacier project quarterly revenue", mode=mode, k=10)
    scores = {row["id"]: row["score"] for row in body["results"]}
    assert scores[strong["id"]] > scores.get(weak["id"], 0.0)


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_the_merge_does_not_favour_the_callers_own_namespace(db, mode):
    """Mirror worlds: swapping which namespace holds which memories (the caller's own
    or the grantor's) leaves the merged ranking of contents and scores unchanged."""
    from apps.tenancy.services import create_namespace

    first = ["The glacier survey found the ice shelf thinning by two metres.",
             "Survey teams leave base camp at dawn.", "Budget review is due on Friday."]
    second = ["Ice shelf thickness was measured with radar during the survey.",
              "The glacier camp stores fuel for three weeks.", "Lunch is served at noon."]
    ranked = []
    for own, shared in ((first, second), (second, first)):
        grantee, grantor = create_namespace(f"own-{len(ranked)}"), create_namespace(
            f"shared-{len(ranked)}")
        SharingGrant.objects.create(grantor=grantor, grantee=grantee)
        for namespace, contents in ((grantee, own), (grantor, shared)):
            writer = make_caller(Role.AGENT, namespace, "writer")
            for content in contents:
                assert writer.post("/api/v1/memories", {"content": content}).status_code == 201
        body = shared_recall(make_caller(Role.READER, grantee, "asker"), k=10, mode=mode,
                             query="glacier ice shelf survey")
        ranked.append(sorted((-round(row["score"], 6), row["content"]) for row in body["results"]))
    assert ranked[0] == ranked[1]


def test_the_grantors_unshared_memories_do_not_move_shared_scores(team_admin, agent, outsider,
                                                                  alpha_notes):
    """Keyword statistics are per namespace: the grantor's other memories must not show
    through the scores (or explain) of what it shares."""
    grant(team_admin, tags=["ops"])
    query = {"query": "lighthouse deploy pipeline midnight", "explain": True}
    before = {mode: shared_recall(outsider, mode=mode, **query)["results"]
              for mode in ("lexical", "hybrid")}
    for i in range(6):  # unshared: tagged hr
        agent.post("/api/v1/memories", {"content": f"Deploy pipeline incident {i} at midnight.",
                                        "tags": ["hr"]})
    for mode, rows in before.items():
        after = shared_recall(outsider, mode=mode, **query)["results"]
        assert [(r["id"], r["score"], r["explain"]) for r in after] == [
            (r["id"], r["score"], r["explain"]) for r in rows], mode


def test_shared_recall_works_with_mmr_min_score_and_explain(team_admin, outsider, alpha_notes):
    grant(team_admin)
    body = shared_recall(outsider, mmr_lambda=0.5, explain=True, k=5)
    assert alpha_notes["ops"]["id"] in ids(body)
    assert all("explain" in row for row in body["results"])
    high = shared_recall(outsider, min_score=0.999999)
    assert all(row["score"] >= 0.999999 for row in high["results"])


def test_ingest_and_recall_can_include_shared(team_admin, outsider, alpha_notes):
    grant(team_admin, tags=["ops"])
    response = outsider.post("/api/v1/ingest_and_recall", {
        "content": "Beta also wants the lighthouse deploy pipeline schedule.",
        "include_shared": True})
    assert response.status_code == 201, response.content
    assert alpha_notes["ops"]["id"] in {row["id"] for row in response.json()["results"]}


def test_accessible_lists_live_grants_to_the_callers_namespace(team_admin, outsider, beta_reader,
                                                               reader, alpha_notes):
    created = grant(team_admin, tags=["ops"])
    grant(team_admin, kinds=["fact"])
    SharingGrant.objects.filter(kinds=["fact"]).update(revoked_at=timezone.now())
    for caller in (outsider, beta_reader):
        listed = caller.get("/api/v1/sharing/accessible").json()
        assert [(g["id"], g["grantor"], g["tags"]) for g in listed] == [
            (created["id"], "alpha", ["ops"])]
        assert "created_by" not in listed[0]
    assert reader.get("/api/v1/sharing/accessible").json() == []  # alpha receives nothing
    assert outsider.get("/api/v1/sharing/accessible?namespace=alpha").status_code == 404


def test_beta_reader_recalls_shared_memories(team_admin, beta_reader, alpha_notes):
    grant(team_admin)
    assert alpha_notes["hr"]["id"] in ids(shared_recall(beta_reader))


def test_grants_are_one_way(team_admin, outsider, stored, reader):
    grant(team_admin)
    beta_note = outsider.post("/api/v1/memories", {"content": "Beta's lighthouse budget."}).json()
    assert beta_note["id"] not in ids(shared_recall(reader))
    assert reader.get(f"/api/v1/memories/{beta_note['id']}").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"grantee": "alpha"}, "grantee"),
    ({"grantee": "nowhere"}, "grantee"),
    ({"grantee": "Not A Slug!"}, "grantee"),
    ({"grantee": "beta", "kinds": ["gossip"]}, "kinds"),
    ({"grantee": "beta", "tags": "ops"}, "tags"),
    ({"grantee": "beta", "created_after": "2026-02-01T00:00:00Z",
      "created_before": "2026-01-01T00:00:00Z"}, "created_before"),
    ({"grantee": "beta", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"grantee": "beta", "scope": "all"}, "scope"),
    ({}, "grantee"),
])
def test_bad_grant_input_is_a_400_naming_the_field(team_admin, beta, body, field):
    response = team_admin.post(GRANTS, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"].startswith(field)
    assert not SharingGrant.objects.exists()


def test_only_the_grantors_team_admin_manages_grants(team_admin, agent, outsider, beta):
    created = grant(team_admin)
    assert agent.post(GRANTS, {"grantee": "beta"}).status_code == 403
    assert agent.get(GRANTS).status_code == 403
    assert agent.delete(f"{GRANTS}/{created['id']}").status_code == 403
    beta_admin = make_caller(Role.ADMIN, beta, "beta-admin")
    assert beta_admin.delete(f"{GRANTS}/{created['id']}").status_code == 404
    assert beta_admin.get(f"/api/v1/namespaces/beta/grants/{created['id']}").status_code == 404
    assert beta_admin.get("/api/v1/namespaces/beta/grants").json() == []  # given by beta: none
    assert SharingGrant.objects.get().status == "active"


def test_archived_namespace_cannot_grant(team_admin, alpha, beta):
    alpha.archived_at = timezone.now()
    alpha.save()
    response = team_admin.post(GRANTS, {"grantee": "beta"})
    assert response.status_code == 409
    assert not SharingGrant.objects.exists()


def test_deleting_either_namespace_removes_its_grants(team_admin, system_admin, beta,
                                                      alpha_notes):
    grant(team_admin)
    assert system_admin.delete("/api/v1/namespaces/beta").status_code == 204
    assert not SharingGrant.objects.exists()


def test_sessions_of_different_namespaces_are_not_mates(team_admin, outsider, stored):
    """Session context pairs memories of one conversation; the same session_id in two
    namespaces is two conversations."""
    from apps.memories.recall.context import _sessions_of

    mine = outsider.post("/api/v1/memories", {"content": "a", "session_id": "s1"}).json()
    theirs = stored("b", session_id="s1")
    sessions = _sessions_of([Memory.objects.get(pk=m["id"]).pk for m in (mine, theirs)])
    assert len(set(sessions.values())) == 2


def test_a_grantors_common_words_are_not_pruned_for_the_grantee(monkeypatch, team_admin, agent,
                                                                 outsider):
    """Pruning by the grantor's word counts would tell the grantee how common a word is
    among memories it was not shown: shared sources are searched unpruned."""
    from apps.memories import lexical

    monkeypatch.setattr(lexical, "PRUNE_FROM_ROWS", 1)
    for i in range(6):  # unshared: "merger" in every one of them
        agent.post("/api/v1/memories", {"content": f"Merger memo {i}."})
    shared = agent.post("/api/v1/memories", {"content": "Merger talks resume.",
                                             "tags": ["ops"]}).json()
    grant(team_admin, tags=["ops"])
    found = ids(shared_recall(outsider, query="merger schedule", mode="lexical"))
    assert shared["id"] in found


def test_shared_rows_leave_out_the_grantors_statistics_and_links(team_admin, agent, outsider,
                                                                 alpha_notes):
    grant(team_admin)
    memory_id = alpha_notes["ops"]["id"]
    before = Memory.objects.get(pk=memory_id).access_count
    row = next(r for r in shared_recall(outsider)["results"] if r["id"] == memory_id)
    assert row["access_count"] is None and row["last_recalled_at"] is None
    assert row["near_duplicate_of"] is None
    fetched = outsider.get(f"/api/v1/memories/{memory_id}").json()
    assert fetched["access_count"] is None
    assert Memory.objects.get(pk=memory_id).access_count == before  # not counted for alpha
    own = agent.get(f"/api/v1/memories/{memory_id}").json()
    assert own["access_count"] == before


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_a_restricted_grant_shares_summaries_only_when_its_kinds_name_them(team_admin, outsider,
                                                                          stored, mode):
    """A summary (the timeline's, rebuilt with a new created_at) quotes memories of any
    time, kind and tag: a window or a tag grant would not bound what it carries."""
    summary = stored("The lighthouse summary: the offsite moved to Lisbon in March.",
                     tags=["ops"], kind="summary")
    note = stored("The lighthouse deploy runs at midnight.", tags=["ops"], kind="procedure")
    grant(team_admin, tags=["ops"])
    found = ids(shared_recall(outsider, mode=mode))
    assert note["id"] in found and summary["id"] not in found
    assert outsider.get(f"/api/v1/memories/{summary['id']}").status_code == 404

    SharingGrant.objects.all().delete()
    grant(team_admin, created_after=(timezone.now() - dt.timedelta(days=1)).isoformat())
    found = ids(shared_recall(outsider, mode=mode))
    assert note["id"] in found and summary["id"] not in found

    SharingGrant.objects.all().delete()
    grant(team_admin, kinds=["summary"])
    found = ids(shared_recall(outsider, mode=mode))
    assert summary["id"] in found and note["id"] not in found

    SharingGrant.objects.all().delete()
    grant(team_admin)  # unrestricted: everything, summaries included
    assert {summary["id"], note["id"]} <= ids(shared_recall(outsider, mode=mode))
