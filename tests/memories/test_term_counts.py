"""Common-term pruning remembers how many memories hold each query term for as long as
it remembers the namespace's total (apps/memories/term_counts.py): the vocabulary is
asked once per term and minute, never across namespaces, and again after a removal."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.memories import lexical, term_counts

pytestmark = [pytest.mark.skipif(connection.vendor != "sqlite",
                                reason="PostgreSQL ranks without document counts: nothing is pruned"),
              pytest.mark.usefixtures("keyword_tables")]  # about the FTS5 tables


@pytest.fixture
def prune_everywhere(monkeypatch):
    monkeypatch.setattr(lexical, "PRUNE_FROM_ROWS", 0)
    monkeypatch.setattr(lexical, "_totals", {})


def _prune(namespace_id: int, text: str, share: float = 0.5) -> tuple[lexical.LexicalQuery, int]:
    """The pruned query and how many times the namespace's vocabulary was read."""
    with CaptureQueriesContext(connection) as captured:
        query = lexical.prune_common(lexical.build_query(text), namespace_id, max_share=share)
    table = lexical.vocab_table(namespace_id)
    return query, sum(table in q["sql"] for q in captured.captured_queries)


def _store(caller, contents: list[str]) -> list[str]:
    response = caller.post("/api/v1/memories/batch", {"memories": [{"content": c} for c in contents]})
    assert response.status_code == 201, response.content
    return [m["id"] for m in response.json()["results"]]


def test_the_vocabulary_is_asked_once_per_term(agent, alpha, prune_everywhere):
    _store(agent, [f"project note {i}" for i in range(8)] + ["the zebra project"])
    first, reads = _prune(alpha.pk, "zebra projects")
    assert reads == 1 and first.dropped == ("projects",)
    again, reads = _prune(alpha.pk, "zebra projects")
    assert reads == 0 and again == first
    # a query with one new term asks for that term only
    with CaptureQueriesContext(connection) as captured:
        lexical.prune_common(lexical.build_query("zebra note"), alpha.pk, max_share=0.5)
    asked = [q["sql"] for q in captured.captured_queries if lexical.vocab_table(alpha.pk) in q["sql"]]
    assert len(asked) == 1 and "'note'" in asked[0] and "'zebra'" not in asked[0]


def test_a_new_total_asks_again(agent, alpha, prune_everywhere, monkeypatch):
    _store(agent, [f"project note {i}" for i in range(8)] + ["the zebra project"])
    _prune(alpha.pk, "zebra projects")
    _store(agent, [f"zebra sighting {i}" for i in range(12)])
    stale, reads = _prune(alpha.pk, "zebra projects")
    assert reads == 0 and stale.dropped == ("projects",)  # a minute's staleness, by design
    later = lexical.time.monotonic() + lexical._TOTAL_TTL + 1
    monkeypatch.setattr(lexical.time, "monotonic", lambda: later)
    fresh, reads = _prune(alpha.pk, "zebra projects")
    assert reads == 1  # 13 of 21 memories hold "zebra" now, 9 "project"
    assert fresh.dropped == ("zebra",) and dict(fresh.frequency or ()) == {"projects": 9}


def test_a_removal_forgets_the_namespace_counts(agent, team_admin, alpha, prune_everywhere):
    ids = _store(agent, [f"walrus memo {i}" for i in range(6)] + ["a project note"])
    before, _ = _prune(alpha.pk, "walrus project")
    assert before.dropped == ("walrus",)  # 6 of 7
    for memory_id in ids[:5]:
        assert team_admin.delete(f"/api/v1/memories/{memory_id}").status_code == 204
    after, reads = _prune(alpha.pk, "walrus project")
    assert reads == 1 and dict(after.frequency or ())["walrus"] == 1


def test_an_edit_forgets_the_namespace_counts(agent, team_admin, alpha, prune_everywhere):
    ids = _store(agent, ["secret walrus plan", "a project note", "another project note"])
    _prune(alpha.pk, "walrus project")
    response = team_admin.patch(f"/api/v1/memories/{ids[0]}", {"content": "a redacted plan"})
    assert response.status_code == 200, response.content
    after, reads = _prune(alpha.pk, "walrus project")
    assert reads == 1 and dict(after.frequency or ())["walrus"] == 0


def test_counts_are_never_shared_between_namespaces(agent, outsider, alpha, beta, prune_everywhere):
    _store(agent, [f"walrus memo {i}" for i in range(6)] + ["a project note"])
    _store(outsider, ["one walrus", "a project", "another project"])
    in_alpha, _ = _prune(alpha.pk, "walrus project", share=0.99)
    in_beta, reads = _prune(beta.pk, "walrus project", share=0.99)
    assert reads == 1
    assert dict(in_alpha.frequency or ())["walrus"] == 6 and dict(in_beta.frequency or ())["walrus"] == 1


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(term_counts, "MAX_HELD", 3)
    term_counts.clear()
    term_counts.keep(1, 1.0, {"a": 1, "b": 2})
    term_counts.keep(2, 1.0, {"c": 3})
    assert term_counts.known(1, 1.0, ["a", "b"]) == {"a": 1, "b": 2}
    term_counts.keep(2, 1.0, {"d": 4})  # a fourth: everything starts over
    assert term_counts.known(1, 1.0, ["a", "b"]) == {}
    assert term_counts.known(2, 1.0, ["c", "d"]) == {"d": 4}
    assert term_counts.known(2, 2.0, ["d"]) == {}  # another epoch: not known
    term_counts.clear()


def test_counts_read_before_a_removal_commits_are_forgotten_at_commit(agent, alpha, prune_everywhere,
                                                                      django_capture_on_commit_callbacks):
    """A recall between the delete statement and its commit reads (and remembers) the
    counts from before: the commit forgets them again."""
    _store(agent, [f"walrus memo {i}" for i in range(6)] + ["a project note"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        term_counts.forget(alpha.pk)
        _prune(alpha.pk, "walrus project", share=0.99)  # remembered again, "before" the commit
        stem = [lexical._stem("walrus")]  # counts are kept by the vocabulary's stems
        assert term_counts.known(alpha.pk, lexical._totals[alpha.pk][1], stem)
    for callback in callbacks:
        callback()
    assert term_counts.known(alpha.pk, lexical._totals[alpha.pk][1], stem) == {}


def test_counts_are_not_kept_under_a_total_older_than_a_minute(agent, alpha, prune_everywhere):
    """The keyword search's own count lookup (the bounded window) reads counts without
    re-counting the total: an epoch past the minute keeps nothing and answers nothing."""
    _store(agent, [f"walrus memo {i}" for i in range(3)])
    lexical._totals[alpha.pk] = (3, lexical.time.monotonic() - 2 * lexical._TOTAL_TTL)
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
            assert lexical._frequencies(cursor, alpha.pk, ["walrus"]) == {"walrus": 3}
        assert sum(lexical.vocab_table(alpha.pk) in q["sql"] for q in captured.captured_queries) == 1
