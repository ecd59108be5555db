"""The bounded keyword stage (apps/memories/keyword_search.py): above the window it ranks
the most recent memories plus older ones holding a rare term, with the full query's scores.

The window and the rare-term cap are made tiny here so a few memories exercise what a
namespace of 100,000 does with the defaults.
"""

from __future__ import annotations

import pytest

from apps.memories import keyword_search, lexical

#: Stored oldest first: the zebra memory is old and holds the rare term.
OLD = ["apple orchard zebra sighting", "apple pie recipe", "apple cider vinegar",
       "apple tree pruning", "apple harvest festival"]
RECENT = ["apple juice at breakfast", "apple crumble for dessert", "apple stock price"]


@pytest.fixture
def stored(agent, alpha, keyword_tables):
    """The memories, one request each so created_at (PostgreSQL's window) follows order.
    In an FTS5 table (SQLite), where the window applies: a small namespace without one is
    ranked in memory, exactly (apps/memories/small_keywords.py)."""
    ids = {}
    for text in OLD + RECENT:
        response = agent.post("/api/v1/memories", {"content": text})
        assert response.status_code == 201, response.content
        ids[text] = response.json()["id"]
    return ids


def _search(alpha, text, limit=20):
    return {str(pk): score for pk, score in lexical.search(alpha.pk, lexical.build_query(text), limit)}


@pytest.fixture
def small_window(settings):
    settings.MEMORYWEB_LEXICAL_WINDOW = len(RECENT)
    settings.MEMORYWEB_LEXICAL_RARE_DF = 1


def test_common_terms_alone_rank_the_recent_window_only(stored, alpha, settings, small_window):
    found = _search(alpha, "apple")
    assert set(found) == {stored[text] for text in RECENT}
    settings.MEMORYWEB_LEXICAL_WINDOW = 0  # 0: every match, as before
    assert set(_search(alpha, "apple")) == set(stored.values())


def test_an_old_memory_with_a_rare_term_is_found_with_its_full_score(stored, alpha, settings,
                                                                     small_window):
    bounded = _search(alpha, "apple zebra")
    zebra = stored[OLD[0]]
    assert zebra in bounded
    assert set(bounded) == {zebra} | {stored[text] for text in RECENT}
    settings.MEMORYWEB_LEXICAL_WINDOW = 0
    exact = _search(alpha, "apple zebra")
    # The same score as the full query gives it: the common term counts in both.
    assert bounded == pytest.approx({pk: exact[pk] for pk in bounded})
    assert max(exact, key=exact.get) == zebra == max(bounded, key=bounded.get)


def test_a_new_memory_is_in_the_window_at_once(stored, agent, alpha, small_window):
    memory = agent.post("/api/v1/memories", {"content": "apple strudel in Vienna"}).json()
    found = _search(alpha, "apple")
    assert memory["id"] in found
    assert stored[RECENT[0]] not in found  # it left the window


def test_filters_apply_in_every_part(stored, agent, alpha, small_window):
    agent.post("/api/v1/memories", {"content": "apple zebra notes", "kind": "episode"})
    response = agent.post("/api/v1/recall", {"query": "apple zebra", "mode": "lexical", "k": 10,
                                             "filters": {"kind": "episode"}})
    assert response.status_code == 200, response.content
    assert [r["content"] for r in response.json()["results"]] == ["apple zebra notes"]


def test_a_namespace_within_the_window_gets_the_full_query(stored, alpha, settings):
    settings.MEMORYWEB_LEXICAL_WINDOW = len(stored)
    assert set(_search(alpha, "apple")) == set(stored.values())


def test_plan_below_the_window_is_one_statement_over_every_match():
    statement = keyword_search.plan("t", ["apple"], columns="content", weight=0.0, limit=5,
                                    last_rowid=10, window=10, rare_df=1, frequency={"apple": 10})
    assert not statement.bounded
    assert "rowid" not in statement.sql


def test_plan_above_the_window_splits_by_rarity():
    statement = keyword_search.plan("t", ["apple", "zebra"], columns="content", weight=0.0,
                                    limit=5, last_rowid=100, window=10, rare_df=1,
                                    frequency={"apple": 100, "zebra": 1})
    assert statement.bounded
    assert statement.sql.count("UNION ALL") == 2
    assert 'content : (("zebra") NOT ("apple"))' in statement.args
    assert 90 in statement.args  # the window starts after rowid last - window
    every_rare = keyword_search.plan("t", ["zebra"], columns="content", weight=0.0, limit=5,
                                     last_rowid=100, window=10, rare_df=1, frequency={"zebra": 1})
    assert every_rare.bounded and "UNION" not in every_rare.sql and "rowid" not in every_rare.sql


def test_plan_runs_any_other_expression_whole_above_the_window():
    """A person's every-word search (an AND expression) is never split by rarity."""
    statement = keyword_search.plan("t", ["apple", "zebra"], columns="content", weight=0.0,
                                    limit=5, last_rowid=100, window=10, rare_df=1,
                                    frequency={"apple": 100, "zebra": 1},
                                    expression='"apple" AND "zebra"')
    assert not statement.bounded
    assert statement.args[1] == 'content : ("apple" AND "zebra")'
