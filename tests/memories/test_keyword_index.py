"""The in-memory keyword engine (MEMORYWEB_KEYWORD_ENGINE = "memory";
apps/memories/keyword_index.py, keyword_index_log.py): FTS5's ranking, kept in step
with SQL in every process, per-namespace statistics, bounded memory, reached by erasure.

No vector enters a keyword answer: every test's memories are embedded by the model-free
hash embedder (tests/helpers/hash_embedder.py); MiniLM over the corpora was most of their
time."""

from __future__ import annotations

import datetime
import math
import random

import pytest
from django.db import connection

from apps.core import checks
from apps.core.roles import Role
from apps.memories import keyword_index_log, lexical, stores
from apps.memories.keyword_index import tokens
from apps.memories.models import KeywordChange, Memory
from bench.corpus import generate_memories, generate_queries
from tests.helpers.batches import store_many
from tests.helpers.callers import make_caller
from tests.helpers.hash_embedder import use_distinct_hash_embedder

REQUESTS = "/api/v1/erasure-requests"
sqlite_only = pytest.mark.skipif("connection.vendor != 'sqlite'")


@pytest.fixture(autouse=True)
def _hash_vectors(monkeypatch):
    use_distinct_hash_embedder(monkeypatch)


@pytest.fixture
def memory_engine(settings):
    settings.MEMORYWEB_KEYWORD_ENGINE = "memory"
    keyword_index_log.indexes().clear()
    yield keyword_index_log.indexes()
    keyword_index_log.indexes().clear()


def _search(namespace_id: int, text: str, limit: int = 10, weight: float | None = None,
            candidates=None) -> list[tuple[str, float]]:
    query = lexical.prune_common(lexical.build_query(text), namespace_id)
    return [(str(pk), score) for pk, score in
            lexical.search(namespace_id, query, limit, candidates, context_weight=weight)]


def _both(settings, namespace_id: int, text: str, **kwargs):
    settings.MEMORYWEB_KEYWORD_ENGINE = "sql"
    sql = _search(namespace_id, text, **kwargs)
    settings.MEMORYWEB_KEYWORD_ENGINE = "memory"
    return sql, _search(namespace_id, text, **kwargs)


def _same_ranking(sql: list[tuple[str, float]], memory: list[tuple[str, float]]) -> None:
    """Same ids in the same order, scores equal up to float rounding (order may differ
    only between scores equal to 1e-9)."""
    assert len(sql) == len(memory)
    for (a, x), (b, y) in zip(sql, memory, strict=True):
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (sql, memory)
        if a != b:
            assert any(pk == b and math.isclose(s, x, rel_tol=1e-9) for pk, s in sql), (sql, memory)


CORPUS_EXTRA = ["Café naïve résumé, the façade was repainted in Ångström units.",
                "Running runs ran: she was running the runners' relay again and again.",
                "Yes, I did!", "That was in May.", "An e-mail to jane@example.com about v1.2.3",
                "relay relay relay relay relay relay relay relay", "12 monkeys and 3 dogs"]


@pytest.fixture
def corpus(agent, alpha):
    """327 memories in 25 sessions (hash-embedded, as every test's: the tests compare two
    keyword engines over the same rows, which no vector enters)."""
    rng = random.Random(7)
    contents = [m["content"] for m in generate_memories(320, seed=11)] + CORPUS_EXTRA
    rng.shuffle(contents)
    return store_many(agent, contents, sessions=25)


QUERIES = [*generate_queries(40, seed=5), "running relay", "cafe facade", "yes did may",
           "the", "monkeys dogs 12", "Kafka Kafka outage", "jane example com"]


@sqlite_only
def test_top_k_equals_fts5_on_sqlite(settings, memory_engine, alpha, corpus):
    assert Memory.objects.filter(namespace=alpha, context_memory__isnull=False).count() > 250
    for text in QUERIES:
        for kwargs in ({}, {"limit": 50}, {"weight": 0.0}, {"weight": 1.0, "limit": 20}):
            sql, memory = _both(settings, alpha.pk, text, **kwargs)
            assert sql, text
            _same_ranking(sql, memory)


@sqlite_only
def test_top_k_equals_fts5_after_edits_and_deletes(settings, memory_engine, team_admin, alpha,
                                                   corpus):
    _search(alpha.pk, "Kafka")  # built before the changes: they are applied from the log
    for pk in corpus[:30]:
        assert team_admin.delete(f"/api/v1/memories/{pk}").status_code == 204
    for pk in corpus[30:50]:
        response = team_admin.patch(f"/api/v1/memories/{pk}", {"content": "relay Kafka outage in Lima"})
        assert response.status_code == 200, response.content
    for text in [*QUERIES[:20], "relay Kafka", "Lima outage"]:
        _same_ranking(*_both(settings, alpha.pk, text, limit=30))


def test_tokens_are_fts5s():
    assert tokens("Running RUNS, the Café's façade!") == ["run", "run", "the", "cafe", "s", "facad"]
    assert tokens("foo_bar x2y") == ["foo", "bar", "x2y"]
    assert tokens("as is") == ["as", "is"]  # under 3 bytes: not stemmed


# --- read-your-writes, across processes ---------------------------------------------------

def _ids(namespace_id: int, text: str, indexes=None) -> list[str]:
    query = lexical.build_query(text)
    if indexes is None:
        return [str(pk) for pk, _ in lexical.search(namespace_id, query, 10)]
    return [str(pk) for pk, _ in indexes.search(namespace_id, query.terms, 10, 0.25)]


def test_read_your_writes_after_add_edit_delete(memory_engine, agent, team_admin, alpha):
    first = agent.post("/api/v1/memories", {"content": "The quokka census is on Rottnest."}).json()["id"]
    assert _ids(alpha.pk, "quokka") == [first]
    second = agent.post("/api/v1/memories", {"content": "Another quokka sighting."}).json()["id"]
    assert set(_ids(alpha.pk, "quokka")) == {first, second}
    assert team_admin.patch(f"/api/v1/memories/{first}", {"content": "The wombat census."}).status_code == 200
    assert _ids(alpha.pk, "quokka") == [second]
    assert _ids(alpha.pk, "wombat") == [first]
    assert team_admin.delete(f"/api/v1/memories/{second}").status_code == 204
    assert _ids(alpha.pk, "quokka") == []
    assert memory_engine.builds == 1  # caught up from the log, never rebuilt
    assert KeywordChange.objects.filter(namespace=alpha).count() >= 4


def test_a_second_process_catches_up_from_the_log(memory_engine, agent, team_admin, alpha):
    other = keyword_index_log.Indexes()
    first = agent.post("/api/v1/memories", {"content": "Quokka census notes."}).json()["id"]
    assert [pk for pk, _ in other.search(alpha.pk, ["quokka"], 10, 0.25)] == [first.replace("-", "")]
    second = agent.post("/api/v1/memories", {"content": "Quokka photos."}).json()["id"]
    assert team_admin.patch(f"/api/v1/memories/{first}",
                            {"content": "Wombat census notes."}).status_code == 200
    found = {pk for pk, _ in other.search(alpha.pk, ["quokka"], 10, 0.25)}
    assert found == {second.replace("-", "")}
    assert other.builds == 1 and other.held(alpha.pk, [first, second]) == 2


def test_the_sql_engine_writes_no_log_for_a_namespace_with_its_table(keyword_tables, agent, alpha,
                                                                     settings):
    settings.MEMORYWEB_KEYWORD_ENGINE = "sql"
    agent.post("/api/v1/memories", {"content": "Quokka census notes."})
    # SQLite: the write that made the table logs one rebuild (small_keywords.py); then,
    # as on PostgreSQL (no table to make), nothing
    made = ["rebuild"] if connection.vendor == "sqlite" else []
    assert list(KeywordChange.objects.values_list("op", flat=True)) == made
    memory = agent.post("/api/v1/memories", {"content": "More quokka notes."}).json()
    agent.patch(f"/api/v1/memories/{memory['id']}", {"content": "Fewer quokka notes."})
    assert KeywordChange.objects.count() == len(made)


# --- per-namespace statistics ---------------------------------------------------------------

def test_other_tenants_words_do_not_move_scores(memory_engine, agent, outsider, alpha, beta):
    store_many(outsider, ["the zephyrine report is filed", "the quokkalite report is filed",
                           "an unrelated note about lunch"])
    before = _search(beta.pk, "zephyrine quokkalite report")
    store_many(agent, [f"zephyrine memo {i} about the zephyrine report" for i in range(30)])
    assert _search(alpha.pk, "zephyrine")  # alpha's index holds them
    assert _search(beta.pk, "zephyrine quokkalite report") == before
    keyword_index_log.indexes().clear()  # and built afresh
    assert _search(beta.pk, "zephyrine quokkalite report") == before


# --- filters ---------------------------------------------------------------------------------

def test_filters_selective_and_broad(memory_engine, agent, alpha):
    ids = store_many(agent, [f"Kafka outage report number {i}" for i in range(300)])
    few = ids[-5:]
    found = _search(alpha.pk, "Kafka outage", limit=10, candidates=Memory.objects.filter(pk__in=few))
    assert {pk for pk, _ in found} == set(few)
    everything = _search(alpha.pk, "Kafka outage report", limit=20)
    broad = _search(alpha.pk, "Kafka outage report", limit=20,
                    candidates=Memory.objects.filter(namespace=alpha).exclude(pk=everything[0][0]))
    assert broad == everything[1:] + broad[-1:] and len(broad) == 20
    body = agent.post("/api/v1/recall", {"query": "Kafka outage", "mode": "lexical", "k": 5,
                                         "filters": {"session_id": "none-such"}}).json()
    assert body["results"] == []


# --- memory bound, pruning ------------------------------------------------------------------

def test_eviction_and_rebuild(memory_engine, agent, outsider, alpha, beta):
    agent.post("/api/v1/memories", {"content": "Quokka census notes."})
    outsider.post("/api/v1/memories", {"content": "Quokka photos."})
    small = keyword_index_log.Indexes(budget=1)
    before = small.search(alpha.pk, ["quokka"], 10, 0.25)
    small.search(beta.pk, ["quokka"], 10, 0.25)
    assert small.loaded() == [beta.pk]  # over budget: the least recent went
    assert small.search(alpha.pk, ["quokka"], 10, 0.25) == before
    assert small.builds == 3


def test_log_pruning_and_a_process_behind_it_rebuilds(memory_engine, agent, alpha, settings):
    other = keyword_index_log.Indexes()
    agent.post("/api/v1/memories", {"content": "Quokka census notes."})
    assert len(other.search(alpha.pk, ["quokka"], 10, 0.25)) == 1
    second = agent.post("/api/v1/memories", {"content": "Quokka photos."}).json()["id"]
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    KeywordChange.objects.update(created_at=old)
    newest = KeywordChange.objects.filter(namespace=alpha).latest("id").pk
    assert keyword_index_log.prune() >= 1
    assert list(KeywordChange.objects.values_list("id", flat=True)) == [newest]  # one kept per namespace
    # not searched since before the horizon, with changes to apply: rebuilt from SQL
    index = other.synced(alpha.pk)
    index.synced_at -= 3 * 3600
    index.provisional = False
    found = {pk for pk, _ in other.search(alpha.pk, ["quokka"], 10, 0.25)}
    assert second.replace("-", "") in found and len(found) == 2
    assert other.builds == 2
    # nothing changed since: no rebuild, however long ago it last looked
    other.synced(alpha.pk).synced_at -= 3 * 3600
    other.search(alpha.pk, ["quokka"], 10, 0.25)
    assert other.builds == 2


def test_reindex_makes_every_process_rebuild(memory_engine, agent, alpha):
    agent.post("/api/v1/memories", {"content": "Quokka census notes."})
    other = keyword_index_log.Indexes()
    other.search(alpha.pk, ["quokka"], 10, 0.25)
    lexical.rebuild(alpha.pk)
    other.search(alpha.pk, ["quokka"], 10, 0.25)
    assert other.builds == 2


# --- erasure ---------------------------------------------------------------------------------

def _erase(team_admin, system_admin, selector: dict) -> dict:
    request_id = team_admin.post(REQUESTS, {**selector, "reason": "ticket 42"}).json()["id"]
    assert team_admin.post(f"{REQUESTS}/{request_id}/approve").status_code == 200
    executed = system_admin.post(f"{REQUESTS}/{request_id}/execute")
    assert executed.status_code == 200, executed.content
    return executed.json()


def test_erasure_reaches_it(memory_engine, agent, team_admin, system_admin, alpha):
    dana = make_caller(Role.AGENT, alpha, "agent-2")
    erased = [dana.post("/api/v1/memories", {"content": f"Dana's zorblaxian note {i}."}).json()["id"]
              for i in range(3)]
    keep = agent.post("/api/v1/memories", {"content": "A zorblaxian office note."}).json()["id"]
    other = keyword_index_log.Indexes()
    assert len(other.search(alpha.pk, ["zorblaxian"], 10, 0.25)) == 4
    assert len(_ids(alpha.pk, "zorblaxian")) == 4
    body = _erase(team_admin, system_admin, {"agent_id": "agent-2"})
    verification = body["certificate"]["verification"]
    assert verification["keyword_memory_index"]["ok"]
    assert memory_engine.held(alpha.pk, erased) == 0
    assert _ids(alpha.pk, "zorblaxian") == [keep]
    assert other.held(alpha.pk, erased) == 0  # another process: at its next look
    assert [pk for pk, _ in other.search(alpha.pk, ["zorblaxian"], 10, 0.25)] == [keep.replace("-", "")]
    assert stores.get("keyword_change_log").erased_by == stores.ErasedBy.KEPT


def test_forget_drops_at_once(memory_engine, agent, alpha):
    pk = agent.post("/api/v1/memories", {"content": "Quokka census notes."}).json()["id"]
    _ids(alpha.pk, "quokka")
    memory_engine.forget(alpha.pk, [pk])
    index = memory_engine._held[alpha.pk]
    assert not index.holds(pk.replace("-", ""))


# --- settings ---------------------------------------------------------------------------------

def test_settings_are_checked(settings):
    settings.MEMORYWEB_KEYWORD_ENGINE = "lucene"
    assert any("MEMORYWEB_KEYWORD_ENGINE" in e.msg for e in checks.check_modes())
    settings.MEMORYWEB_KEYWORD_ENGINE = "memory"
    settings.MEMORYWEB_KEYWORD_MEMORY_MB = 0
    settings.MEMORYWEB_KEYWORD_LOG_MINUTES = 1
    messages = " ".join(e.msg for e in checks.check_numbers())
    assert "MEMORYWEB_KEYWORD_MEMORY_MB" in messages and "MEMORYWEB_KEYWORD_LOG_MINUTES" in messages
    assert connection.vendor in {"sqlite", "postgresql"}


# --- a build (load) equals the incremental path (add) --------------------------------------

def _load_rows() -> list[tuple[str, object, object]]:
    """Rows as SQL gives them: contexts (the row before, none, empty, past CONTEXT_CHARS),
    an id seen twice, diacritics and other scripts, NUL and underscores, empty content."""
    corpus = [m["content"] for m in generate_memories(80)]
    odd = ["Café naïve à Zürich, Ærø og Straße", "İSTANBUL ΟΔΟΣ ΣΑΣ. Kelvin", "日本語のテキスト emoji🙂x",
           "snake_case__words x\0y", "e\u0301te\u0301 ﬁne ²³ ٣٤ " + "x" * 70, "", "  —  ", "don't U.S.A."]
    rows: list[tuple[str, object, object]] = []
    for i, content in enumerate(corpus):
        text = f"{content} {odd[i % len(odd)]}" if i % 3 else odd[i % len(odd)]
        context = [None, "", corpus[i - 1], corpus[i - 1] * 9, odd[(i + 1) % len(odd)]][i % 5]
        rows.append((f"{i:032x}", text, context))
    rows.insert(40, (f"{7:032x}", "a duplicate: the first row under an id wins", None))
    rows += [(f"{i + 100:032x}", [f"{(i * j) % 23:08d}" for j in range(i % 9)],
              [f"{j:08d}" for j in range(i % 4)] if i % 2 else None) for i in range(12)]
    # blind rows among text ones (a term of both kinds: its postings by document still)
    rows.insert(5, (f"{200:032x}", [*tokens("the project office"), "00000001"], tokens("the office")))
    return rows


@pytest.mark.parametrize("chunk", [None, 500])
def test_load_equals_add(monkeypatch, chunk):
    import numpy as np

    from apps.memories import keyword_index

    if chunk:  # several chunks of rows, merged
        monkeypatch.setattr(keyword_index, "_LOAD_CHARS", chunk)
    rows = _load_rows()
    loaded, added = keyword_index.NamespaceIndex(1), keyword_index.NamespaceIndex(1)
    loaded.load(iter(rows))
    first: dict[str, tuple] = {}
    for row in rows:
        first.setdefault(row[0], row)
    added.add(first.values())
    assert len(loaded) == len(added) == len(first) and loaded._ids == added._ids
    assert loaded._tokens == added._tokens > 0 and set(loaded._vocab) == set(added._tail)
    size = len(loaded._ids)
    assert np.array_equal(loaded._length[:size], added._length[:size])
    assert np.array_equal(loaded._keys[:size], added._keys[:size]) and loaded._alive[:size].all()
    terms = sorted(loaded._vocab)
    assert {*tokens("Café naïve Zürich İSTANBUL ΟΔΟΣ snake_case 日本語のテキスト"), "00000000"} <= set(terms)
    for term in terms:
        assert all(loaded.document_frequency(term, w) == added.document_frequency(term, w) for w in (0, 1))
        assert loaded.bounds(term) == added.bounds(term)
    pick = random.Random(5)
    for _ in range(60):
        query = pick.sample(terms, pick.randint(1, 6))
        for weight in (0.0, 0.25, 1.0):
            expected = added.search(query, weight, 10, exhaustive=True)
            assert loaded.search(query, weight, 10) == expected
            assert loaded.search(query, weight, 10, exhaustive=True) == expected
    added.compact()  # the same CSR postings as a build's, term by term
    for term in terms:
        pairs = zip(loaded.postings(term), added.postings(term), strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("chunk", [None, 8])
def test_load_of_rows_without_a_token(monkeypatch, chunk):
    """Rows of emoji or punctuation only make no term: a build of them (a small
    namespace whose memories are all "👍") holds them, matches nothing, and does not fail;
    with ``chunk`` a chunk of such rows follows one with words."""
    from apps.memories import keyword_index

    if chunk:
        monkeypatch.setattr(keyword_index, "_LOAD_CHARS", chunk)
    rows = [(f"{1:032x}", "kestrel nest", None), (f"{2:032x}", "👍", None), (f"{3:032x}", "...", "✅")]
    index = keyword_index.NamespaceIndex(1)
    index.load(rows if chunk else rows[1:])
    assert len(index) == (3 if chunk else 2)
    assert [pk for pk, _ in index.search(["kestrel"], 1.0, 10)] == ([f"{1:032x}"] if chunk else [])
    assert index.search(["thumb"], 1.0, 10) == []
