"""Small namespaces' keyword recall without an FTS5 table (apps/memories/small_keywords.py).

A namespace gets its table only once it holds more than ``MEMORYWEB_SMALL_KEYWORD_LIMIT``
memories; until then its keyword recall is ranked in memory from its rows. What must
hold: the same matches, scores and order as the table would give (recall's OR query,
the context weight, a lookup's every-word and phrase queries, blind tokens); the write
that crosses the limit makes the table in its own transaction; every process sees every
write; reindex applies the rule again; other tenants' words never move the scores.
"""

from __future__ import annotations

import random
import uuid

import pytest
from django.db import connection, transaction

from apps.memories import keyword_index_log, lexical, small_keywords
from apps.memories.lexical_lookup import lookup, parse_lookup
from apps.memories.models import KeywordChange, Memory
from apps.memories.own_stores import _keyword_count
from apps.memories.recall import as_of_keywords
from tests.helpers.batches import store_many as _store
from tests.helpers.hash_embedder import use_distinct_hash_embedder

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 tables only")

WORDS = ("harbour ferry lantern quarry meadow orchard violin glacier pepper canyon tulip "
         "saddle marble comet falcon pillow garnet bramble walnut lagoon").split()
QUERIES = ["harbour ferry", "lantern", "violin glacier pepper", "comet falcon meadow tulip",
           "walnut", "nothing-matches-this", "saddle marble pillow", "lagoon bramble garnet canyon"]
LOOKUPS = ['harbour ferry', '"lantern quarry"', 'violin "glacier pepper"', 'comet', '"falcon meadow"']


@pytest.fixture(autouse=True)
def _hash_vectors(monkeypatch):
    use_distinct_hash_embedder(monkeypatch)


def _texts(count: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(count)]


def _has_table(namespace) -> bool:
    return small_keywords.has_table(namespace.pk)


def _answers(namespace) -> dict:
    """Everything the keyword index answers for the fixed queries, scores included."""
    found: dict = {}
    for text in QUERIES:
        query = lexical.build_query(text)
        for weight in (None, 0.0, 0.7):
            found[(text, weight)] = lexical.search(namespace.pk, query, 25, context_weight=weight)
    for text in LOOKUPS:
        for every in (True, False):
            found[(text, every)] = lookup(namespace.pk, parse_lookup(text, match_all=every), 25)
    return found


def _same(small: dict, table: dict) -> None:
    assert small.keys() == table.keys()
    for key in small:
        assert [pk for pk, _ in small[key]] == [pk for pk, _ in table[key]], key
        assert [s for _, s in small[key]] == pytest.approx([s for _, s in table[key]], rel=1e-9), key
    assert sum(1 for rows in table.values() if rows) > 20  # the comparison compared something


def test_a_small_namespace_has_no_table_and_ranks_as_its_table_would(agent, alpha, settings):
    ids = _store(agent, _texts(240), sessions=12)  # sessions: context from earlier turns
    assert Memory.objects.filter(namespace=alpha, context_memory__isnull=False).exists()
    assert not _has_table(alpha)
    small = _answers(alpha)

    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 0
    with transaction.atomic():
        assert lexical.rebuild(alpha.pk) == len(ids)
    assert _has_table(alpha)
    _same(small, _answers(alpha))


def test_filters_narrow_a_small_namespace_as_they_narrow_the_table(agent, alpha, settings):
    ids = _store(agent, _texts(120, seed=5))
    chosen = Memory.objects.filter(pk__in=ids[::3])
    query = lexical.build_query("harbour ferry lantern")
    lookup_query = parse_lookup('"harbour ferry"', match_all=True)
    small = (lexical.search(alpha.pk, query, 10, chosen), lookup(alpha.pk, lookup_query, 10, chosen))
    assert small[0] and {str(pk) for pk, _ in small[0]} <= {str(pk) for pk in ids[::3]}
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 0
    with transaction.atomic():
        lexical.rebuild(alpha.pk)
    table = (lexical.search(alpha.pk, query, 10, chosen), lookup(alpha.pk, lookup_query, 10, chosen))
    for got, expected in zip(small, table, strict=True):
        assert [pk for pk, _ in got] == [pk for pk, _ in expected]


def test_past_text_is_scored_with_the_small_namespace_statistics(agent, alpha, settings):
    _store(agent, _texts(150, seed=9), sessions=5)
    query = lexical.build_query("harbour ferry_lantern walnut")  # a phrase of two tokens too
    texts = [(uuid.uuid4(), "harbour ferry lantern walnut walnut", "comet ferry lantern"),
             (uuid.uuid4(), "a walnut by the harbour", "")]
    small = dict(as_of_keywords.scores(alpha.pk, query, texts, 0.5))
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 0
    with transaction.atomic():
        lexical.rebuild(alpha.pk)
    table = dict(as_of_keywords.scores(alpha.pk, query, texts, 0.5))
    assert small.keys() == table.keys() and len(table) == 2
    for pk, score in table.items():
        assert small[pk] == pytest.approx(score, rel=1e-9)


def test_the_write_that_crosses_the_limit_makes_the_table(agent, alpha, settings):
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 5
    ids = _store(agent, [f"heron sighting number {i}" for i in range(5)])
    assert not _has_table(alpha)
    before = lexical.search(alpha.pk, lexical.build_query("heron sighting"), 10)
    assert {str(pk) for pk, _ in before} == set(ids)
    sixth = _store(agent, ["a heron by the quarry"])
    assert _has_table(alpha)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {lexical.fts_table(alpha.pk)}")
        assert cursor.fetchone()[0] == 6  # every memory, not only the one that crossed
    after = lexical.search(alpha.pk, lexical.build_query("heron sighting"), 10)
    assert {str(pk) for pk, _ in after} == set(ids) | set(sixth)
    assert _keyword_count(alpha) == 6


def test_a_crossing_write_that_rolls_back_leaves_no_table(agent, alpha, settings):
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 2
    _store(agent, ["one osprey", "two ospreys"])
    with pytest.raises(RuntimeError), transaction.atomic():
        agent.post("/api/v1/memories", {"content": "three ospreys"})
        assert _has_table(alpha)
        raise RuntimeError("rolled back")
    assert not _has_table(alpha)
    assert len(lexical.search(alpha.pk, lexical.build_query("osprey"), 10)) == 2


def test_every_process_sees_every_write_of_a_small_namespace(agent, team_admin, alpha):
    """Another process's indexes (a second ``Indexes``) learn of creates, edits and
    deletes from the change log, which small namespaces write whatever the engine."""
    other = keyword_index_log.Indexes()
    first, second = _store(agent, ["the kestrel nested early", "a kestrel and a falcon"])
    assert KeywordChange.objects.filter(namespace=alpha).count() == 2

    def found(text: str) -> set[str]:
        query = lexical.build_query(text)
        return {pk for pk, _ in other.search(alpha.pk, query.terms, 10, 1.0)}

    assert found("kestrel") == {uuid.UUID(first).hex, uuid.UUID(second).hex}
    team_admin.patch(f"/api/v1/memories/{first}", {"content": "the merlin nested early"})
    team_admin.delete(f"/api/v1/memories/{second}")
    assert found("kestrel") == set()
    assert found("merlin") == {uuid.UUID(first).hex}
    assert [str(pk) for pk, _ in lexical.search(alpha.pk, lexical.build_query("merlin"), 5)] == [first]


def test_reindex_drops_the_table_of_a_namespace_under_the_limit(agent, alpha, settings):
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 0
    ids = _store(agent, _texts(30, seed=11))
    assert _has_table(alpha)
    table = lexical.search(alpha.pk, lexical.build_query("harbour lantern"), 10)
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 2000
    with transaction.atomic():
        assert lexical.rebuild(alpha.pk) == len(ids)
    assert not _has_table(alpha)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE %s",
                       [f"{lexical.fts_table(alpha.pk)}%"])
        assert cursor.fetchone()[0] == 0  # shadow tables and the vocabulary view too
    small = lexical.search(alpha.pk, lexical.build_query("harbour lantern"), 10)
    assert [pk for pk, _ in small] == [pk for pk, _ in table]
    assert _keyword_count(alpha) is None  # nothing on disk to count


def test_other_tenants_words_do_not_move_a_small_namespace_scores(agent, outsider, alpha, beta):
    _store(outsider, ["the zephyrine report is filed", "an unrelated note about lunch"])
    before = lexical.search(beta.pk, lexical.build_query("zephyrine report"), 10)
    _store(agent, [f"zephyrine memo {i} about the zephyrine report" for i in range(30)])
    assert lexical.search(beta.pk, lexical.build_query("zephyrine report"), 10) == before
    assert not _has_table(alpha) and not _has_table(beta)


def test_an_encrypted_small_namespace_ranks_as_its_table_would(vault_agent, vault, settings):
    _store(vault_agent, _texts(80, seed=13), sessions=4)
    assert not _has_table(vault)
    small = _answers(vault)
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 0
    with transaction.atomic():
        lexical.rebuild(vault.pk)
    assert _has_table(vault)
    _same(small, _answers(vault))


def test_an_encrypted_namespace_crossing_the_limit_fills_its_table_with_every_memory(
        vault_agent, vault, settings):
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 3
    first = _store(vault_agent, [f"the sealed heron note {i}" for i in range(3)])
    assert not _has_table(vault)
    fourth = _store(vault_agent, ["one more sealed heron"])  # the write that crosses
    assert _has_table(vault)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {lexical.fts_table(vault.pk)}")
        assert cursor.fetchone()[0] == 4
    found = lexical.search(vault.pk, lexical.build_query("heron"), 10)
    assert {str(pk) for pk, _ in found} == set(first) | set(fourth)


def test_a_process_lets_go_of_its_copy_once_the_table_answers(agent, alpha, settings):
    """``sql``: the crossing write logs a ``rebuild`` (other processes' copies are rebuilt
    or let go), and a search the table answers drops this process's copy, which nothing
    keeps in step any more."""
    settings.MEMORYWEB_KEYWORD_ENGINE = "sql"
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 3
    _store(agent, ["a grebe on the lake", "two grebes"])
    assert lexical.search(alpha.pk, lexical.build_query("grebe"), 10)
    assert alpha.pk in keyword_index_log.indexes().loaded()
    _store(agent, ["three grebes", "four grebes"])
    assert KeywordChange.objects.filter(namespace=alpha, op="rebuild").count() == 1
    assert len(lexical.search(alpha.pk, lexical.build_query("grebe"), 10)) == 4
    assert alpha.pk not in keyword_index_log.indexes().loaded()


def test_indexes_unused_for_longer_than_the_log_is_kept_are_let_go(agent, outsider, alpha, beta,
                                                                   settings):
    _store(agent, ["a coot nest"])
    _store(outsider, ["a coot of beta"])
    indexes = keyword_index_log.Indexes()
    query = lexical.build_query("coot")
    assert indexes.search(alpha.pk, query.terms, 5, 1.0) and indexes.loaded() == [alpha.pk]
    indexes.synced(alpha.pk).synced_at -= settings.MEMORYWEB_KEYWORD_LOG_MINUTES * 60 + 5
    assert indexes.search(beta.pk, query.terms, 5, 1.0)
    assert indexes.loaded() == [beta.pk]


def test_an_sqlite_without_pragma_table_list_scans_the_schema(agent, alpha, settings, monkeypatch):
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 1
    monkeypatch.setattr(small_keywords, "_LOOKUPS", ["SELECT 1 FROM no_such_function_here(%s)",
                                                     *small_keywords._LOOKUPS[-1:]])
    _store(agent, ["one dunlin"])
    assert not _has_table(alpha)
    _store(agent, ["two dunlins"])
    assert _has_table(alpha) and len(small_keywords._LOOKUPS) == 1
