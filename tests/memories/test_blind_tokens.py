"""Keyword search on ciphertext (issue 23 item 2; apps/memories/blind_tokens.py).

An encrypted namespace's keyword index holds keyed blind tokens, never words, and still
ranks exactly as the same memories rank in a namespace in the clear: the same corpus is
stored in both (and a second encrypted namespace, whose tokens must differ), and every
keyword answer — lexical and hybrid recall, pruning, a person's lookup, the in-memory
engine — is compared. Runs on SQLite and on PostgreSQL (tests/run_scaled.py).

The memories and queries are embedded by the model-free hash embedder
(tests/helpers/hash_embedder.py): hybrid recall compares the two namespaces over the same
vectors, whichever embedder made them, and MiniLM over the corpus was most of the set-up.
"""

from __future__ import annotations

import io
import random
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.core import namespace_keys
from apps.core.key_providers import KeyUnavailable
from apps.core.roles import Role
from apps.memories import blind_tokens, keyword_index_log, lexical, lexical_lookup, sealing
from apps.memories.keyword_index import tokens
from apps.memories.models import Memory
from apps.tenancy.services import create_namespace
from bench.corpus import generate_memories, generate_queries
from tests.helpers.callers import make_caller
from tests.helpers.hash_embedder import use_distinct_hash_embedder

#: About the FTS5 tables: every namespace gets its table (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("keyword_tables")

#: Words no generated memory has: found in the clear, nowhere in an encrypted index.
PLANTED = ["zephyrine", "quokkalite", "marzipanova", "tintinnabulation", "xylocarpous"]
EXTRA = ["Zephyrine met the quokkalite courier near the marzipanova bakery.",
         "Tintinnabulation of xylocarpous bells; zephyrine again, running late.",
         "Café naïve résumé, the façade was repainted.",
         "Running runs ran: she was running the runners' relay again and again.",
         "Yes, I did!", "That was in May.", "An e-mail to jane@example.com about v1.2.3",
         "relay relay relay relay relay relay relay relay", "12 monkeys and 3 dogs"]
QUERIES = [*generate_queries(20, seed=5), "zephyrine quokkalite", "running relay",
           "cafe facade", "yes did may", "the", "monkeys dogs 12", "jane example com",
           "foo_bar relay", "Kafka Kafka outage"]
TOKEN = re.compile(rf"\d{{{blind_tokens.DIGITS}}}")


@pytest.fixture(autouse=True)
def key_store(key_store, monkeypatch):
    """The test's own key store (tests/conftest.py), the hash embedder, and no in-memory
    keyword index left from another test (namespace ids come back after a rollback)."""
    use_distinct_hash_embedder(monkeypatch)
    yield key_store
    keyword_index_log.indexes().clear()


def _forget() -> None:
    namespace_keys.forget_all()
    sealing.forget()


def _contents() -> list[str]:
    contents = [m["content"] for m in generate_memories(150, seed=11)] + EXTRA
    random.Random(7).shuffle(contents)
    return contents


def _store(namespace, contents: list[str]) -> None:
    caller = make_caller(Role.AGENT, namespace, f"agent-{namespace.slug}")
    for start in range(0, len(contents), 50):
        batch = [{"content": c, "session_id": f"s{(start + i) % 12}"}
                 for i, c in enumerate(contents[start:start + 50])]
        response = caller.post("/api/v1/memories/batch", {"memories": batch})
        assert response.status_code == 201, response.content
    return caller


class _Mirror(blind_tokens.Blinder):
    """The blind path with the terms themselves as tokens: PostgreSQL's reference."""

    def token(self, term: str) -> str:
        return term


@pytest.fixture
def pair(db, monkeypatch, settings):
    """(reference, encrypted) namespaces holding the same memories, and their agents.

    The reference is a namespace in the clear on SQLite, where the encrypted index must
    rank exactly as FTS5 does on the words. On PostgreSQL the clear index is the
    ``english`` configuration's (Snowball stems, no diacritics folding) while blind
    tokens are made of FTS5's terms (docs/encryption.md), so the reference there is an
    encrypted namespace whose "tokens" are those terms themselves: the blinding must not
    change a single match or score.

    Chroma's HNSW search is exact here (``MEMORYWEB_VECTOR_SEARCH_EF`` above the corpus):
    at its default breadth two namespaces' indexes of the same vectors can return
    different last candidates, which moves hybrid fusion's min-max scaling (seen in CI
    on PostgreSQL: every hybrid score off by ~0.0005)."""
    settings.MEMORYWEB_VECTOR_SEARCH_EF = 100_000
    contents = _contents()
    secret = create_namespace("secret", encrypted=True)
    if connection.vendor == "sqlite":
        reference = create_namespace("plain")
    else:
        reference = create_namespace("mirror", encrypted=True)
        real = blind_tokens.for_namespace
        monkeypatch.setattr(blind_tokens, "for_namespace", lambda namespace_id: (
            _Mirror(b"") if namespace_id == reference.pk else real(namespace_id)))
    callers = (_store(reference, contents), _store(secret, contents))
    assert Memory.objects.filter(namespace=secret, context_memory__isnull=False).count() > 100
    return reference, secret, callers


def _index_text(namespace_id: int) -> tuple[str, set[str]]:
    """Everything the namespace's keyword index holds as text, and its terms."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            table = lexical.fts_table(namespace_id)
            cursor.execute(f"SELECT content, context FROM {table}")
            rows = " ".join(f"{a} {b}" for a, b in cursor.fetchall())
            cursor.execute(f"SELECT term FROM {lexical.vocab_table(namespace_id)}")
            return rows, {term for (term,) in cursor.fetchall()}
        cursor.execute("SELECT coalesce(blind_search::text, ''), coalesce(context_search::text, '') "
                       "FROM memories_memory WHERE namespace_id = %s AND blind_search IS NOT NULL",
                       [namespace_id])
        blind = " ".join(f"{a} {b}" for a, b in cursor.fetchall())
        cursor.execute("SELECT search::text, coalesce(context_search::text, '') FROM memories_memory "
                       "WHERE namespace_id = %s AND blind_search IS NULL", [namespace_id])
        clear = " ".join(f"{a} {b}" for a, b in cursor.fetchall())
        text = blind or clear
        return text, set(re.findall(r"'([^']*)'", text))


def _expected_tokens(namespace) -> set[str]:
    blinder = blind_tokens.for_namespace(namespace.pk)
    found: set[str] = set()
    for _, content, context, _ in blind_tokens.plaintexts(namespace.pk, None):
        found.update(blinder.terms(content), blinder.terms(blind_tokens.context_cut(context)))
    return found


def test_the_index_of_an_encrypted_namespace_holds_no_words(pair):
    reference, secret, _ = pair
    other = create_namespace("secret-2", encrypted=True)
    _store(other, _contents())
    plain = reference
    if connection.vendor != "sqlite":
        plain = create_namespace("plain")
        _store(plain, _contents())

    with connection.cursor() as cursor:  # SQL holds ciphertext: the index could not copy it
        cursor.execute("SELECT content FROM memories_memory WHERE namespace_id = %s", [secret.pk])
        assert not any(word in c.lower() for (c,) in cursor.fetchall() for word in PLANTED)
    clear_text, clear_terms = _index_text(plain.pk)
    for word in PLANTED:  # the clear index has them (so this test can fail)
        assert word[:7] in clear_text.lower()
        assert any(term.startswith(word[:7]) for term in clear_terms)
    for namespace in (secret, other):
        text, terms = _index_text(namespace.pk)
        assert not any(word in text.lower() for word in PLANTED)
        assert not any(tokens(word)[0] in terms for word in PLANTED)
        assert terms and all(TOKEN.fullmatch(term) for term in terms)
        # the engine stores exactly the tokens written (FTS5's porter leaves them as they are)
        assert terms == _expected_tokens(namespace)
        assert len(terms) == len(_expected_terms(namespace))  # no collision here
    # keys are per namespace: the same words are other tokens in another namespace
    assert not _index_text(secret.pk)[1] & _index_text(other.pk)[1]


def _expected_terms(namespace) -> set[str]:
    found: set[str] = set()
    for _, content, context, _ in blind_tokens.plaintexts(namespace.pk, None):
        found.update(tokens(content), tokens(blind_tokens.context_cut(context)))
    return found


def _ranked(namespace_id: int, text: str, **kwargs) -> list[tuple[float, str]]:
    """The keyword channel's answer as (score, content), so two namespaces compare."""
    query = lexical.prune_common(lexical.build_query(text), namespace_id)
    found = lexical.search(namespace_id, query, kwargs.pop("limit", 20), **kwargs)
    contents = {m.pk: m.content for m in Memory.objects.filter(pk__in=[pk for pk, _ in found])}
    return [(round(score, 9), contents[pk]) for pk, score in found]


def _same(a: list[tuple[float, str]], b: list[tuple[float, str]]) -> None:
    """Same memories in the same order (ties of equal score in any order: they go by id,
    which differs between the namespaces; so does which of those tied at the cut is in)."""
    assert [s for s, _ in a] == [s for s, _ in b], (a, b)
    last = a[-1][0] if a else None
    assert (sorted(r for r in a if r[0] != last) == sorted(r for r in b if r[0] != last)), (a, b)


def test_lexical_ranking_is_the_clear_ones(pair, monkeypatch):
    plain, secret, _ = pair
    monkeypatch.setattr(lexical, "PRUNE_FROM_ROWS", 0)  # pruning looks up blind tokens too
    monkeypatch.setattr(lexical, "_totals", {})
    for text in QUERIES:
        for kwargs in ({}, {"limit": 50}, {"context_weight": 0.0}, {"context_weight": 1.0}):
            clear = _ranked(plain.pk, text, **kwargs)
            assert clear or text == "foo_bar relay", text
            _same(clear, _ranked(secret.pk, text, **kwargs))
    dropped = [lexical.prune_common(lexical.build_query(q), ns.pk, 0.05).dropped
               for q in ("the relay running again", "zephyrine relay") for ns in (plain, secret)]
    assert dropped[0] == dropped[1] and dropped[2] == dropped[3]
    assert bool(dropped[0]) == (connection.vendor == "sqlite")  # PostgreSQL prunes nothing


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_recall_answers_as_in_the_clear(pair, mode):
    _, _, (plain_agent, secret_agent) = pair
    for text in [*QUERIES[:12], "zephyrine quokkalite", "Running relay"]:
        answers = []
        for caller in (plain_agent, secret_agent):
            response = caller.post("/api/v1/recall", {"query": text, "mode": mode, "k": 10})
            assert response.status_code == 200, response.content
            answers.append([(round(r["score"], 9), r["content"]) for r in response.json()["results"]])
        _same(*answers)
        if mode == "lexical" and text.startswith("zephyrine"):
            assert answers[1][0][1] == EXTRA[0]  # found by its words in ciphertext


def test_the_memory_engine_ranks_tokens_as_words(pair, settings):
    plain, secret, _ = pair
    sql = {text: _ranked(secret.pk, text) for text in QUERIES}
    settings.MEMORYWEB_KEYWORD_ENGINE = "memory"
    keyword_index_log.indexes().clear()
    for text in QUERIES:
        memory = _ranked(secret.pk, text)
        _same(_ranked(plain.pk, text), memory)
        if connection.vendor == "sqlite":  # PostgreSQL's own ranking is ts_rank_cd's
            _same(sql[text], memory)
    assert secret.pk in keyword_index_log.indexes().loaded()


def test_edits_deletes_and_reindex_keep_the_two_in_step(pair, settings):
    plain, secret, callers = pair
    before = timezone.now()
    for namespace in (plain, secret):
        admin = make_caller(Role.ADMIN, namespace, f"admin-{namespace.slug}")
        chosen = sorted(Memory.objects.filter(namespace=namespace), key=lambda m: m.content)
        for memory in chosen[:10]:
            assert admin.delete(f"/api/v1/memories/{memory.pk}").status_code == 204
        for memory in chosen[10:20]:
            response = admin.patch(f"/api/v1/memories/{memory.pk}",
                                   {"content": f"zephyrine relay outage in Lima, was: {memory.content}"})
            assert response.status_code == 200, response.content
    for text in ["zephyrine relay", "Lima outage", *QUERIES[:8]]:
        _same(_ranked(plain.pk, text), _ranked(secret.pk, text))
        # as of before the edits: the edited memories' past text scored as the index would
        # (recall/as_of_keywords.py), in tokens for the encrypted namespace
        answers = []
        for caller in callers:
            response = caller.post("/api/v1/recall", {"query": text, "mode": "lexical", "k": 10,
                                                      "as_of": before.isoformat()})
            assert response.status_code == 200, response.content
            answers.append([(round(r["score"], 9), r["content"]) for r in response.json()["results"]])
        _same(*answers)
    text_before = _index_text(secret.pk)
    assert lexical.rebuild(secret.pk) == Memory.objects.filter(namespace=secret).count()
    assert _index_text(secret.pk)[1] == text_before[1]
    assert "lima" not in text_before[0].lower()
    with connection.cursor() as cursor:  # lost (a write around the services): reindex repairs
        if connection.vendor == "sqlite":
            cursor.execute(f"DELETE FROM {lexical.fts_table(secret.pk)}")
        else:
            cursor.execute("UPDATE memories_memory SET blind_search = NULL, context_search = NULL "
                           "WHERE namespace_id = %s", [secret.pk])
        cursor.execute("SELECT count(*) FROM memories_memory WHERE namespace_id = %s AND "
                       "blind_search IS NOT NULL" if connection.vendor == "postgresql" else
                       f"SELECT count(*) FROM {lexical.fts_table(secret.pk)} WHERE %s > 0", [secret.pk])
        assert cursor.fetchone()[0] == 0
    call_command("reindex", "--namespace", secret.slug, stdout=io.StringIO())
    assert _index_text(secret.pk)[1] == text_before[1]
    _same(_ranked(plain.pk, "zephyrine relay"), _ranked(secret.pk, "zephyrine relay"))


def test_a_lookup_matches_as_in_the_clear(pair):
    plain, secret, _ = pair
    for text, match_all in [("jane@example.com", True), ('"running the runners"', True),
                            ("relay again", True), ("zephyrine bells", False),
                            ('"that was" may', True)]:
        answers = []
        for namespace in (plain, secret):
            query = lexical_lookup.parse_lookup(text, match_all=match_all)
            found = lexical_lookup.lookup(namespace.pk, query, 20)
            contents = dict(sealing.texts(Memory.objects.filter(pk__in=[pk for pk, _ in found])))
            answers.append([(round(score, 9), contents[pk]) for pk, score in found])
        assert answers[0], text
        _same(*answers)


def test_a_missing_or_shredded_key_fails_closed(pair, settings, tmp_path):
    _, secret, (_, secret_agent) = pair
    query = lexical.build_query("zephyrine relay")
    assert lexical.search(secret.pk, query, 5)
    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "elsewhere"  # the key store is not there
    _forget()
    with pytest.raises(KeyUnavailable):
        lexical.search(secret.pk, query, 5)
    settings.MEMORYWEB_KEYSTORE_DIR = tmp_path / "keystore"
    namespace_keys.shred(secret.pk)
    with pytest.raises(KeyUnavailable, match="crypto-shredded"):
        lexical.search(secret.pk, query, 5)
    held = _index_text(secret.pk)[1]
    with pytest.raises(KeyUnavailable):
        lexical.rebuild(secret.pk)
    assert _index_text(secret.pk)[1] == held  # nothing dropped, nothing in words
    response = secret_agent.post("/api/v1/recall", {"query": "zephyrine", "mode": "lexical"})
    assert response.status_code == 503, response.content


def test_blind_tokens_are_fixed_length_digits_the_stemmer_keeps():
    blinder = blind_tokens.Blinder(b"k" * 32)
    made = blinder.terms("Running runs, the Café's façade! zephyrine")
    assert len(made) == len(tokens("Running runs, the Café's façade! zephyrine"))
    assert made[0] == made[1]  # run == run: the stem is what is blinded
    assert all(TOKEN.fullmatch(t) for t in made)
    assert tokens(" ".join(made)) == made  # Porter leaves digit runs as they are
    assert blind_tokens.Blinder(b"j" * 32).terms("zephyrine") != blinder.terms("zephyrine")
