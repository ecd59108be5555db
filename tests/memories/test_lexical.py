"""The lexical channel: kept consistent by the database, safe from query syntax, filtered."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.memories import lexical
from apps.memories.models import Memory

#: About the FTS5 tables: every namespace gets its table (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("keyword_tables")


def _search(namespace, text, limit=10):
    return lexical.search(namespace.pk, lexical.build_query(text), limit)


def _recall(caller, query, mode="lexical", k=10, **filters):
    body = {"query": query, "k": k, "mode": mode}
    if filters:
        body["filters"] = filters
    response = caller.post("/api/v1/recall", body)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_index_follows_create_update_and_delete(agent, team_admin, alpha):
    memory = agent.post("/api/v1/memories", {"content": "The zebra crossing is painted blue"}).json()
    assert [str(pk) for pk, _ in _search(alpha, "zebra")] == [memory["id"]]
    team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "The giraffe enclosure opens at nine"})
    assert _search(alpha, "zebra") == []
    assert [str(pk) for pk, _ in _search(alpha, "giraffe")] == [memory["id"]]
    team_admin.delete(f"/api/v1/memories/{memory['id']}")
    assert _search(alpha, "giraffe") == []


def test_index_follows_bulk_delete_and_namespace_deletion(agent, system_admin, alpha):
    from apps.memories.services import delete_namespace
    from apps.tenancy.principal import Principal

    agent.post("/api/v1/memories/batch", {"memories": [{"content": f"walrus fact {i}"} for i in range(5)]})
    assert len(_search(alpha, "walrus")) == 5
    system_admin.delete("/api/v1/agents/agent-1/memories?all_namespaces=true")
    assert _search(alpha, "walrus") == []
    agent.post("/api/v1/memories", {"content": "penguin colony census"})
    table = lexical.fts_table(alpha.pk)
    delete_namespace(Principal.for_key(system_admin.key), alpha)
    with connection.cursor() as cursor:  # nothing left behind in the index itself
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM memories_memory "
                           "WHERE search @@ to_tsquery('english', 'penguin')")
            assert cursor.fetchone()[0] == 0
        else:  # the namespace's keyword table went with it
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE %s",
                           [f"{table}%"])
            assert cursor.fetchone()[0] == 0


def test_stemming_matches_word_forms(agent, alpha):
    agent.post("/api/v1/memories", {"content": "She was running marathons every spring"})
    assert len(_search(alpha, "runs marathon")) == 1


@pytest.mark.parametrize(
    "hostile",
    ['"', '""', "'", "NEAR(a b)", "a NEAR b", "*", "run*", "-", "- -", "a -b", "(", ")", "a AND", "OR",
     "NOT", "col:value", "^start", "{a b}", "a + b", "\\", "'; DROP TABLE memories_memory; --",
     "\x01\x02", "!!!", "🙂 emoji", "ü ö ä", "a" * 4000, "&|!<->:*"],
)
def test_hostile_queries_work_or_fail_cleanly(agent, hostile):
    agent.post("/api/v1/memories", {"content": "a plain memory about running and tables"})
    for mode in ("lexical", "hybrid"):
        response = agent.post("/api/v1/recall", {"query": hostile, "mode": mode})
        assert response.status_code in (200, 400), response.content
    assert Memory.objects.count() == 1


def test_query_of_only_punctuation_returns_nothing_lexically(agent):
    agent.post("/api/v1/memories", {"content": "anything"})
    assert _recall(agent, "?!.,") == []


def test_engine_query_quotes_every_term():
    query = lexical.build_query('What did "NEAR" mean - for tables*?')
    assert query.terms == ("near", "mean", "tables")
    if connection.vendor != "postgresql":
        assert query.engine_query == '"near" OR "mean" OR "tables"'


def test_lexical_filters_combine_with_and(agent, team_admin):
    agent.post("/api/v1/memories", {"content": "budget review for apollo", "kind": "episode",
                                    "tags": ["finance", "q3"], "session_id": "s1",
                                    "metadata": {"project": "apollo", "priority": 2}})
    agent.post("/api/v1/memories", {"content": "budget review for zeus", "kind": "fact",
                                    "tags": ["finance"], "session_id": "s2",
                                    "metadata": {"project": "zeus", "priority": 2}})
    team_admin.post("/api/v1/memories", {"content": "budget review by the admin", "tags": ["q3"]})
    contents = lambda **f: sorted(r["content"] for r in _recall(agent, "budget review", **f))  # noqa: E731
    assert len(contents()) == 3
    assert contents(kind="episode") == ["budget review for apollo"]
    assert contents(tags=["finance"]) == ["budget review for apollo", "budget review for zeus"]
    assert contents(tags=["finance", "q3"]) == ["budget review for apollo"]
    assert contents(session_id="s2") == ["budget review for zeus"]
    assert contents(agent_id="admin-1") == ["budget review by the admin"]
    assert contents(metadata={"project": "zeus"}) == ["budget review for zeus"]
    assert contents(metadata={"priority": 2, "project": "apollo"}) == ["budget review for apollo"]
    assert contents(metadata={"a__contains": "x"}) == []  # a key, not a lookup


def test_lexical_channel_never_crosses_namespaces(agent, outsider):
    outsider.post("/api/v1/memories", {"content": "beta secret keyword xylophone"})
    assert _recall(agent, "xylophone", mode="lexical") == []
    assert _recall(agent, "xylophone", mode="hybrid") == []


def test_lexical_scope_is_the_namespace_even_when_both_match(agent, outsider, alpha, beta):
    agent.post("/api/v1/memories", {"content": "alpha plays the xylophone"})
    outsider.post("/api/v1/memories", {"content": "beta secret keyword xylophone"})
    assert [r["content"] for r in _recall(agent, "xylophone")] == ["alpha plays the xylophone"]
    assert [r["content"] for r in outsider.post("/api/v1/recall", {
        "query": "xylophone", "mode": "lexical"}).json()["results"]] == ["beta secret keyword xylophone"]
    # The namespace token (n<id>) lives in its own column: a query for it matches nothing.
    assert _recall(agent, f"n{alpha.pk} n{beta.pk}", mode="lexical") == []


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_every_mode_finds_the_exact_text_first(agent, mode):
    for text in ["The wifi password is on the fridge", "Lunch is served at noon",
                 "The quarterly report is due Friday"]:
        agent.post("/api/v1/memories", {"content": text})
    results = _recall(agent, "The quarterly report is due Friday", mode=mode, k=3)
    assert results[0]["content"] == "The quarterly report is due Friday"


def test_hybrid_finds_what_only_one_channel_finds(agent):
    agent.post("/api/v1/memories", {"content": "Order number XK-4471 shipped late"})  # keyword-only
    agent.post("/api/v1/memories", {"content": "Our feline companion enjoys sleeping on rugs"})
    assert _recall(agent, "XK-4471", mode="hybrid", k=1)[0]["content"].startswith("Order number")
    top = _recall(agent, "cat napping on the carpet", mode="hybrid", k=1)[0]
    assert top["content"].startswith("Our feline")


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_expired_and_excluded_memories_never_come_back(agent, mode):
    from datetime import timedelta

    from django.utils import timezone

    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    expired = agent.post("/api/v1/memories", {"content": "expired walrus sighting"}).json()
    Memory.objects.filter(pk=expired["id"]).update(expires_at=past)  # ingest refuses a past expiry
    agent.post("/api/v1/memories", {"content": "current walrus sighting"})
    assert [r["content"] for r in _recall(agent, "walrus sighting", mode=mode)] == ["current walrus sighting"]
    stored = agent.post("/api/v1/ingest_and_recall",
                        {"content": "another walrus sighting", "mode": mode}).json()
    assert stored["memory"]["id"] not in [r["id"] for r in stored["results"]]
    assert [r["content"] for r in stored["results"]] == ["current walrus sighting"]


@pytest.fixture
def prune_everywhere(monkeypatch):
    """Prune even in a test-sized index (normally only from 2,000 memories on)."""
    monkeypatch.setattr(lexical, "PRUNE_FROM_ROWS", 0)
    monkeypatch.setattr(lexical, "_totals", {})  # re-count now


def test_common_terms_are_left_out_of_the_keyword_query(agent, alpha, prune_everywhere):
    agent.post("/api/v1/memories/batch", {"memories": [
        {"content": f"project note number {i}"} for i in range(8)] + [
        {"content": "the zebra project"}]})
    query = lexical.prune_common(lexical.build_query("zebra projects"), alpha.pk, max_share=0.5)
    body = agent.post("/api/v1/recall", {"query": "zebra projects", "mode": "lexical",
                                         "explain": True}).json()
    if connection.vendor == "postgresql":  # ranks without document counts: nothing pruned
        assert query.terms == ("zebra", "projects") and body["explain"]["lexical_dropped"] == []
        return
    assert query.terms == ("zebra",) and query.dropped == ("projects",)
    assert body["explain"]["lexical_dropped"] == ["projects"]
    assert [r["content"] for r in body["results"]] == ["the zebra project"]


def test_when_every_term_is_common_the_two_rarest_stay(agent, alpha, prune_everywhere):
    agent.post("/api/v1/memories/batch", {"memories": [
        {"content": f"alpha beta gamma {i}"} for i in range(6)] + [
        {"content": "alpha beta"}, {"content": "alpha"}]})
    query = lexical.prune_common(lexical.build_query("alpha beta gamma"), alpha.pk, max_share=0.1)
    if connection.vendor == "postgresql":
        assert query.dropped == ()
        return
    assert query.terms == ("beta", "gamma") and query.dropped == ("alpha",)


def test_small_indexes_are_never_pruned(agent, alpha):
    agent.post("/api/v1/memories/batch", {"memories": [{"content": f"project {i}"} for i in range(5)]})
    query = lexical.build_query("project zebra")
    assert lexical.prune_common(query, alpha.pk, max_share=0.01) == query


def test_stemming_is_safe_across_threads():
    """A snowball stemmer holds the word it works on: one shared by threads mixed up their
    words (an IndexError under load, found by bench/load.py). Each thread has its own."""
    import threading

    from apps.memories import lexical

    words = ["migrations", "running", "generously", "connections", "relational", "happiness",
             "operational", "agreement", "hopefully", "conditional"] * 200
    expected = [lexical._stem(w) for w in words]
    results, errors = {}, []

    def work(number: int) -> None:
        try:
            results[number] = [lexical._stem(w) for w in words]
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and all(found == expected for found in results.values())
