"""As-of reads (issue 20, item 5): ``as_of`` on recall and on a memory's GET answer what the
namespace held at that moment — later memories left out, edited ones at their version then,
ranked by their text then — over the real SQLite keyword index and the real Chroma."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.memories import lexical
from apps.memories.models import Memory, RecallDay
from apps.memories.recall import as_of as as_of_module
from apps.memories.recall import as_of_keywords
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import SharingGrant

MODES = ["hybrid", "vector", "lexical"]

OLD = "Our office mascot is a purple walrus named Gerald who guards the snack drawer."
NEW = "Our office mascot is a green heron named Priya who sits by the window."
DISTRACTOR = "Walruses are large marine mammals with long tusks and whiskers."
LATER = "Gerald the purple walrus statue was moved to the lobby next to the walrus poster."
OLD_QUERY = "purple walrus Gerald"
NEW_QUERY = "green heron Priya"


def _iso(moment) -> str:
    return moment.isoformat()


def recall(caller, query, *, as_of=None, mode="hybrid", k=10, status=200, **body):
    payload = {"query": query, "k": k, "mode": mode, **body}
    if as_of is not None:
        payload["as_of"] = _iso(as_of) if hasattr(as_of, "isoformat") else as_of
    response = caller.post("/api/v1/recall", payload)
    assert response.status_code == status, response.content
    return response.json()


def ids(body) -> list[str]:
    return [row["id"] for row in body["results"]]


def by_id(body) -> dict[str, dict]:
    return {row["id"]: row for row in body["results"]}


@pytest.fixture
def timeline(agent, team_admin, stored):
    """t0 < A stored (t1) < t2 < A's content edited (t3) < B stored (t4) < t5.

    The moments are read from the clock between the writes, so each write lands strictly
    between its neighbours without freezing or sleeping."""
    distractor = stored(DISTRACTOR)
    t0 = timezone.now()
    a = stored(OLD, tags=["zoo", "draft"])
    t2 = timezone.now()
    edited = team_admin.patch(f"/api/v1/memories/{a['id']}", {"content": NEW})
    assert edited.status_code == 200, edited.content
    b = stored(LATER)
    t5 = timezone.now()
    return {"a": a["id"], "b": b["id"], "d": distractor["id"], "t0": t0, "t2": t2, "t5": t5}


# --- recall ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_old_text_finds_the_memory_as_it_was_and_not_now(agent, timeline, mode):
    then = recall(agent, OLD_QUERY, as_of=timeline["t2"], mode=mode)
    assert then["results"][0]["id"] == timeline["a"]
    assert then["results"][0]["content"] == OLD
    assert then["results"][0]["version"] == 1
    assert timeline["b"] not in ids(then)  # stored after the moment

    now = recall(agent, OLD_QUERY, mode=mode)
    assert timeline["b"] in ids(now)
    if mode == "lexical":  # today's words do not hold the old query's terms
        assert timeline["a"] not in ids(now)
    else:  # by meaning it may still come up, but below what matches the old words now
        assert now["results"][0]["id"] != timeline["a"]
    assert all(row["content"] != OLD for row in now["results"])


@pytest.mark.parametrize("mode", MODES)
def test_new_text_does_not_find_the_memory_before_the_edit(agent, timeline, mode):
    then = recall(agent, NEW_QUERY, as_of=timeline["t2"], mode=mode)
    now = recall(agent, NEW_QUERY, mode=mode)
    assert now["results"][0]["id"] == timeline["a"] and now["results"][0]["content"] == NEW
    assert all(row["content"] != NEW for row in then["results"])
    assert timeline["b"] not in ids(then)
    if mode == "lexical":
        assert timeline["a"] not in ids(then)
    else:  # ranked by its old text: further from the query than today's text
        found = by_id(then).get(timeline["a"])
        assert found is None or found["score"] < now["results"][0]["score"]
        if found is not None:
            assert found["content"] == OLD


@pytest.mark.parametrize("mode", MODES)
def test_as_of_after_everything_is_the_current_state(agent, timeline, mode):
    then = recall(agent, NEW_QUERY, as_of=timeline["t5"], mode=mode)
    now = recall(agent, NEW_QUERY, mode=mode)
    assert then["results"][0]["id"] == timeline["a"]
    assert then["results"][0]["content"] == NEW and then["results"][0]["version"] == 2
    assert ids(then) == ids(now)
    assert [r["score"] for r in then["results"]] == pytest.approx([r["score"] for r in now["results"]])


def test_a_future_as_of_means_now(agent, timeline):
    future = timezone.now() + timedelta(days=365)
    body = recall(agent, NEW_QUERY, as_of=future, explain=True)
    assert timeline["b"] in ids(body)
    assert body["results"][0]["content"] == NEW
    moment = dt.datetime.fromisoformat(body["explain"]["as_of"].replace("Z", "+00:00"))
    assert timeline["t5"] < moment <= timezone.now()
    detail = agent.get(f"/api/v1/memories/{timeline['a']}", {"as_of": _iso(future)})
    assert detail.status_code == 200 and detail.json()["content"] == NEW


def test_explain_names_the_moment_and_what_was_rebuilt(agent, timeline):
    body = recall(agent, OLD_QUERY, as_of=timeline["t2"], explain=True)
    assert body["explain"]["as_of"] == _iso(timeline["t2"]).replace("+00:00", "Z")
    assert body["explain"]["edited_since"] == 1 and body["explain"]["rebuilt"] == 1
    plain = recall(agent, OLD_QUERY, explain=True)
    assert "as_of" not in plain["explain"]


def test_before_anything_was_stored_nothing_is_found(agent, timeline):
    body = recall(agent, OLD_QUERY, as_of=timeline["t0"], pad_to_k=True)
    assert ids(body) == [timeline["d"]]


def test_created_before_combines_with_as_of(agent, timeline):
    # created_before excludes the distractor and A is stored before t2: only A
    body = recall(agent, OLD_QUERY, as_of=timeline["t5"], pad_to_k=True,
                  filters={"created_after": _iso(timeline["t0"]), "created_before": _iso(timeline["t2"])})
    assert ids(body) == [timeline["a"]]
    assert body["results"][0]["content"] == NEW  # at t5 the edit is in force
    body = recall(agent, OLD_QUERY, as_of=timeline["t2"], pad_to_k=True,
                  filters={"created_before": _iso(timeline["t5"])})
    assert set(ids(body)) == {timeline["a"], timeline["d"]}


def test_the_snapshot_is_never_saved(agent, timeline):
    recall(agent, OLD_QUERY, as_of=timeline["t2"])
    agent.get(f"/api/v1/memories/{timeline['a']}", {"as_of": _iso(timeline["t2"])})
    row = Memory.objects.get(pk=timeline["a"])
    assert row.content == NEW and row.version == 2
    assert row.versions.count() == 1


def test_an_as_of_recall_counts_as_a_recall(agent, timeline):
    body = recall(agent, OLD_QUERY, as_of=timeline["t2"], k=1)
    assert body["results"][0]["access_count"] == 1
    row = Memory.objects.get(pk=timeline["a"])
    assert row.access_count == 1 and row.last_recalled_at is not None
    assert row.content == NEW  # counting wrote the statistics only


# --- filters at the moment ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_filters_are_evaluated_on_the_state_at_the_moment(agent, team_admin, stored, mode):
    memory = stored("The lighthouse keeper logs the tides every morning.", tags=["sea", "draft"],
                    kind="fact", metadata={"stage": "draft"}, importance=0.2)
    moment = timezone.now()
    edited = team_admin.patch(f"/api/v1/memories/{memory['id']}", {
        "tags": ["sea", "archived"], "kind": "procedure", "metadata": {"stage": "final"},
        "importance": 0.9})
    assert edited.status_code == 200
    query = "lighthouse keeper tides"

    def found(as_of=None, **filters):
        return memory["id"] in ids(recall(agent, query, as_of=as_of, mode=mode, filters=filters))

    # a tag added after the moment does not match as of the moment; one removed still does
    assert found(tags=["archived"]) and not found(as_of=moment, tags=["archived"])
    assert not found(tags=["draft"]) and found(as_of=moment, tags=["draft"])
    assert found(as_of=moment, tags_any=["draft", "other"])
    assert not found(as_of=moment, kind="procedure") and found(as_of=moment, kind="fact")
    assert found(as_of=moment, metadata={"stage": "draft"})
    assert not found(as_of=moment, metadata={"stage": "final"})
    row = by_id(recall(agent, query, as_of=moment, mode=mode))[memory["id"]]
    assert (row["tags"], row["kind"], row["metadata"], row["importance"]) == (
        ["sea", "draft"], "fact", {"stage": "draft"}, 0.2)
    assert row["version"] == 1


def test_validity_is_checked_at_the_moment_by_default(agent, alpha):
    now = timezone.now()
    response = agent.post("/api/v1/memories", {
        "content": "The old VPN gateway answers on port 4443.",
        "valid_until": _iso(now - timedelta(days=1))})
    assert response.status_code == 201, response.content
    memory = response.json()
    Memory.objects.filter(pk=memory["id"]).update(created_at=now - timedelta(days=10))
    call_command("reindex", "--namespace", "alpha")  # Chroma holds the creation time
    query = "VPN gateway port"
    assert memory["id"] not in ids(recall(agent, query))  # not valid now
    assert memory["id"] in ids(recall(agent, query, as_of=now - timedelta(days=5)))
    assert memory["id"] not in ids(recall(agent, query, as_of=now - timedelta(days=5),
                                          filters={"valid_at": _iso(now)}))


def test_deleted_memories_are_gone_whatever_the_moment(agent, team_admin, timeline):
    assert team_admin.delete(f"/api/v1/memories/{timeline['a']}").status_code == 204
    assert timeline["a"] not in ids(recall(agent, OLD_QUERY, as_of=timeline["t2"]))
    detail = agent.get(f"/api/v1/memories/{timeline['a']}", {"as_of": _iso(timeline["t2"])})
    assert detail.status_code == 404


# --- the memory's GET ----------------------------------------------------------------------


def test_get_as_of_shows_the_version_then(agent, timeline):
    path = f"/api/v1/memories/{timeline['a']}"
    then = agent.get(path, {"as_of": _iso(timeline["t2"])})
    assert then.status_code == 200, then.content
    row = then.json()
    assert row["content"] == OLD and row["version"] == 1
    assert row["updated_at"] == row["created_at"]
    assert row["tags"] == ["zoo", "draft"]
    later = agent.get(path, {"as_of": _iso(timeline["t5"])}).json()
    assert later["content"] == NEW and later["version"] == 2
    assert later == agent.get(path).json()


def test_get_as_of_an_edit_shows_its_time_as_updated_at(agent, team_admin, stored):
    memory = stored("Version one of the runbook.")
    team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "Version two of the runbook."})
    between = timezone.now()
    team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "Version three of the runbook."})
    row = agent.get(f"/api/v1/memories/{memory['id']}", {"as_of": _iso(between)}).json()
    edit = Memory.objects.get(pk=memory["id"]).versions.get(version=2)
    assert row["content"] == "Version two of the runbook." and row["version"] == 2
    assert row["updated_at"] == edit.changed_at.isoformat().replace("+00:00", "Z")


def test_get_as_of_before_creation_is_a_plain_404(agent, timeline):
    missing = agent.get(f"/api/v1/memories/{uuid.uuid4()}")
    before = agent.get(f"/api/v1/memories/{timeline['a']}", {"as_of": _iso(timeline["t0"])})
    assert before.status_code == missing.status_code == 404
    assert before.json() == missing.json()


@pytest.mark.parametrize("value", ["yesterday", "", "2024-13-01T00:00:00Z", "1"])
def test_invalid_as_of_is_a_400_naming_it(agent, timeline, value):
    response = agent.get(f"/api/v1/memories/{timeline['a']}", {"as_of": value})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "as_of"


@pytest.mark.parametrize("value", ["yesterday", "", None, 5, "2024-02-30T00:00:00Z"])
def test_invalid_as_of_on_recall_is_a_400_and_records_nothing(agent, alpha, timeline, value):
    before = {m.pk: m.access_count for m in Memory.objects.all()}
    days = RecallDay.objects.filter(namespace=alpha).count()
    response = agent.post("/api/v1/recall", {"query": OLD_QUERY, "as_of": value})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "as_of"
    assert {m.pk: m.access_count for m in Memory.objects.all()} == before
    assert RecallDay.objects.filter(namespace=alpha).count() == days


def test_other_tenants_get_404_and_readers_may_ask(reader, outsider, timeline):
    path = f"/api/v1/memories/{timeline['a']}"
    assert outsider.get(path, {"as_of": _iso(timeline["t2"])}).status_code == 404
    assert outsider.get(path, {"as_of": _iso(timeline["t2"])}).json() == outsider.get(path).json()
    assert timeline["a"] not in ids(recall(outsider, OLD_QUERY, as_of=timeline["t2"]))
    assert reader.get(path, {"as_of": _iso(timeline["t2"])}).json()["content"] == OLD
    assert recall(reader, OLD_QUERY, as_of=timeline["t2"])["results"][0]["content"] == OLD


# --- sharing grants ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_shared_memories_as_of_within_the_grant(alpha, beta, agent, team_admin, outsider, stored, mode):
    ops = stored("The harbour crane inspection happens on the first Monday.", tags=["ops"])
    later_ops = stored("The harbour crane operator rota is kept in the blue binder.", tags=["hr"])
    moment = timezone.now()
    team_admin.patch(f"/api/v1/memories/{ops['id']}",
                     {"content": "The harbour crane inspection happens every Friday."})
    team_admin.patch(f"/api/v1/memories/{later_ops['id']}", {"tags": ["hr", "ops"]})  # shared only since
    SharingGrant.objects.create(grantor=alpha, grantee=beta, tags=["ops"])
    query = "harbour crane inspection Monday"

    then = recall(outsider, query, as_of=moment, mode=mode, include_shared=True)
    rows = by_id(then)
    assert rows[ops["id"]]["content"] == ops["content"] and rows[ops["id"]]["shared"] is True
    assert rows[ops["id"]]["access_count"] is None  # the grantor's statistics stay hidden
    # out of the grant's scope as it was then, though inside it now
    assert later_ops["id"] not in rows
    now = by_id(recall(outsider, "harbour crane", mode=mode, include_shared=True))
    assert later_ops["id"] in now

    path = f"/api/v1/memories/{ops['id']}"
    row = outsider.get(path, {"as_of": _iso(moment)}).json()
    assert row["content"] == ops["content"] and row["access_count"] is None
    assert outsider.get(f"/api/v1/memories/{later_ops['id']}", {"as_of": _iso(moment)}).status_code == 404
    assert outsider.get(f"/api/v1/memories/{later_ops['id']}").status_code == 200


def test_a_memory_no_longer_shared_is_not_shown_as_it_was(alpha, beta, team_admin, outsider, stored):
    memory = stored("The ferry timetable changes in October.", tags=["ops"])
    moment = timezone.now()
    team_admin.patch(f"/api/v1/memories/{memory['id']}", {"tags": ["private"]})
    SharingGrant.objects.create(grantor=alpha, grantee=beta, tags=["ops"])
    assert outsider.get(f"/api/v1/memories/{memory['id']}", {"as_of": _iso(moment)}).status_code == 404
    body = recall(outsider, "ferry timetable", as_of=moment, include_shared=True)
    assert memory["id"] not in ids(body)


# --- the bound and the keyword scores ---------------------------------------------------------


def test_more_edited_memories_than_the_bound_is_a_400_naming_as_of(agent, team_admin, stored,
                                                                   monkeypatch):
    first = stored("Sprint one retro notes.", session_id="s1")
    second = stored("Sprint two retro notes.", session_id="s2")
    moment = timezone.now()
    for memory in (first, second):
        team_admin.patch(f"/api/v1/memories/{memory['id']}", {"tags": ["retro"]})
    monkeypatch.setattr(as_of_module, "MAX_EDITED", 1)
    response = agent.post("/api/v1/recall", {"query": "retro", "as_of": _iso(moment)})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "as_of"
    # a filter edits never change narrows the set under the bound
    body = recall(agent, "retro", as_of=moment, filters={"session_id": "s1"})
    assert ids(body) == [first["id"]]


@pytest.fixture(params=["sql", "memory"])
def keyword_engine(request, settings):
    """Each keyword engine (SQL full text; the in-memory BM25 index, built afresh)."""
    from apps.memories import keyword_index_log

    settings.MEMORYWEB_KEYWORD_ENGINE = request.param
    keyword_index_log.indexes().clear()
    yield request.param
    keyword_index_log.indexes().clear()


def _unscored(engine: str) -> bool:
    """PostgreSQL with the in-memory engine: past text is not keyword-scored (docs/recall.md)."""
    return connection.vendor == "postgresql" and engine == "memory"


def test_lexical_as_of_with_either_keyword_engine(keyword_engine, agent, timeline):
    then = recall(agent, OLD_QUERY, as_of=timeline["t2"], mode="lexical")
    if _unscored(keyword_engine):  # the edited memory comes from the vector channel only
        assert timeline["a"] not in ids(then)
        return
    assert then["results"][0]["id"] == timeline["a"] and then["results"][0]["content"] == OLD
    assert timeline["a"] not in ids(recall(agent, OLD_QUERY, mode="lexical"))
    assert timeline["a"] not in ids(recall(agent, NEW_QUERY, as_of=timeline["t2"], mode="lexical"))


def test_mmr_compares_the_text_then(agent, timeline):
    body = recall(agent, OLD_QUERY, as_of=timeline["t2"], mmr_lambda=0.5, explain=True)
    assert body["results"][0]["id"] == timeline["a"] and body["results"][0]["content"] == OLD
    assert "mmr" in body["results"][0]["explain"]
    assert timeline["b"] not in ids(body)


def test_keyword_scores_of_past_text_match_the_index(keyword_engine, agent, alpha, stored):
    """The Python BM25 that scores an edited memory's old text gives an indexed text
    exactly the score the keyword channel gives it, context words and their weight
    included (SQLite: FTS5's bm25 and the in-memory engine's; PostgreSQL: ts_rank_cd)."""
    texts = ["Caroline went to the LGBTQ support group on Tuesday.",
             "Melanie painted a sunrise over the lake last weekend.",
             "Caroline said the support group made her feel accepted.",
             "They talked about adoption agencies and counselling.",
             "The lake was calm and Melanie swam to the island twice."]
    rows = [stored(text, session_id="conv") for text in texts]
    query = lexical.build_query("support_group lake Melanie adoption island")  # a phrase too
    expected = dict(lexical.search(alpha.pk, query, 20))
    memories = Memory.objects.in_bulk([uuid.UUID(r["id"]) for r in rows])
    contexts = {m.pk: memories[m.context_memory_id].content if m.context_memory_id else ""
                for m in memories.values()}
    assert any(contexts.values())  # the session's turns are linked as context
    got = dict(as_of_keywords.scores(alpha.pk, query, [(pk, m.content, contexts[pk])
                                                       for pk, m in memories.items()], 0.25))
    if _unscored(keyword_engine):
        assert got == {}
        return
    assert set(got) == set(expected)
    for pk, score in expected.items():
        assert got[pk] == pytest.approx(score, rel=1e-9)


def test_rewritten_memories_are_embedded_as_they_were(agent, team_admin, timeline, embed_calls):
    recall(agent, OLD_QUERY, as_of=timeline["t2"], mode="vector")
    # the query, then A's old text (B and the distractor use their stored vectors)
    assert embed_calls == [1, 1]
    stored = get_vector_store().embeddings(Memory.objects.get(pk=timeline["a"]).namespace,
                                           [timeline["a"]])
    assert timeline["a"] in stored  # the index still holds today's vector: nothing written
