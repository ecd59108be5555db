"""The colder paths (erasure's stores, lineage, moves, imports, consolidation) read the
few memories they name by primary key or a selective index, the namespace checked on the
rows found, instead of walking the namespace (tests/memories/test_query_plans.py has the
hot paths and the why: SQLite has no statistics here, and given ``namespace_id = ?`` its
planner searched a namespace index by the namespace alone). Each test runs the statements
a path ran through ``EXPLAIN QUERY PLAN``; each keeps its rows and its tenant's bounds."""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import QueryDict

from apps.core.roles import Role
from apps.memories import writes
from apps.memories.models import ExternalId, Memory
from apps.tenancy.principal import Principal
from tests.memories.test_query_plans import _assert_seeks, _statements, _store

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner")

BY_ID = '"memories_memory"."id" IN'


def _merged(alpha, team_admin, ids: list[str]) -> None:
    """``ids[:-1]`` merged into ``ids[-1]``."""
    with writes.atomic() as write:
        write.supersede(alpha, list(Memory.objects.filter(pk__in=ids[:-1])),
                        Memory.objects.get(pk=ids[-1]), similarity={},
                        actor=Principal.for_key(team_admin.key))


def test_the_traces_erasure_reads_the_agents_by_primary_key(agent, outsider, alpha):
    from apps.gateway import traces

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["traced one", "traced two", "traced three"])
    theirs = _store(outsider, ["beta's own"])
    found: set[str] = set()
    _assert_seeks(_statements(lambda: found.update(traces._agents(alpha, [*ids, *theirs]))), BY_ID)
    assert found == {"agent-1"}  # beta's agent (outsider-1) is never named


def test_the_timeline_erasure_reads_the_erased_texts_by_primary_key(agent, outsider, alpha):
    from apps.timeline import erasure, fingerprints

    _store(agent, [f"filler {i}" for i in range(4)])
    texts = [f"the erased text number {n} of alpha is long enough to be fingerprinted"
             for n in ("one", "two", "three")]
    ids = _store(agent, texts)
    beta_text = "beta keeps its own secret words about the quarterly budget review meeting"
    theirs = _store(outsider, [beta_text])
    _assert_seeks(_statements(lambda: erasure._remember(alpha, [*ids, *theirs])), BY_ID)
    remembered = fingerprints.recalled(alpha.pk, [*ids, *theirs])
    assert fingerprints.of_all(texts) <= remembered and remembered
    assert not fingerprints.of_all([beta_text]) & remembered  # beta's id read nothing


def test_re_embedding_context_holders_reads_them_by_primary_key(agent, outsider, alpha,
                                                                 monkeypatch):
    from apps.memories import indexing, own_stores, vectorstore

    _store(agent, [f"filler {i}" for i in range(4)])
    holders = _store(agent, ["holder one", "holder two", "holder three"])
    theirs = _store(outsider, ["beta's holder"])

    class Holders:
        def context_holders(self, namespace, part):
            return [*holders, *theirs]

    refreshed: list[Memory] = []
    monkeypatch.setattr(vectorstore, "get_vector_store", lambda: Holders())
    monkeypatch.setattr(indexing, "refresh", lambda ns, memories: refreshed.extend(memories))
    _assert_seeks(_statements(lambda: own_stores._context_vectors_erase(alpha, holders[:1])),
                  BY_ID)
    assert sorted(str(m.pk) for m in refreshed) == sorted(holders)


def test_the_lineage_an_erasure_touches_is_read_by_the_survivor(agent, team_admin, alpha):
    from apps.memories import lineage_store

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["merged one", "merged two", "merged three", "the survivor"])
    _merged(alpha, team_admin, ids)
    others = _store(agent, ["another", "and another"])
    found = []
    _assert_seeks(_statements(lambda: found.extend(
        lineage_store.touched(alpha, [ids[-1], *others]))), '"superseded_by_id" IN')
    assert found == sorted(({"memory": pk, "change": "released"} for pk in ids[:-1]),
                           key=lambda row: row["memory"])


def test_the_merge_marks_read_the_erased_members_by_primary_key(agent, team_admin, alpha):
    from apps.memories import merge_marks

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["marked one", "marked two", "marked three", "the survivor"])
    _merged(alpha, team_admin, ids)
    _assert_seeks(_statements(lambda: merge_marks.plan(alpha, ids[:-1])), BY_ID)


def test_a_move_reads_context_and_lineage_by_their_indexes(agent, team_admin, alpha):
    from apps.memories import write_moves

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["moved one", "moved two", "moved three"])
    staying = _store(agent, ["stays one", "stays two", "the survivor"])
    _merged(alpha, team_admin, [*staying[:2], ids[0]])  # staying ones merged into a mover
    _assert_seeks(_statements(lambda: write_moves._reindex_arrived_context(alpha, ids)),
                  '"context_memory_id" IN')
    cut: list[int] = []

    def cut_ties():
        with writes.atomic() as write:
            cut.append(write.cut_ties(alpha, ids, set(ids)))

    _assert_seeks(_statements(cut_ties), '"superseded_by_id" =')
    assert cut == [2]
    assert not Memory.objects.filter(pk__in=staying[:2], superseded_by__isnull=False).exists()


def test_an_import_resolves_kept_ids_by_primary_key(agent, outsider, alpha):
    from apps.memories import import_lineage

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["imported one", "imported two", "imported three"])
    theirs = _store(outsider, ["beta's memory"])
    found = {}
    _assert_seeks(_statements(lambda: found.update(import_lineage._resolve(
        alpha, ExternalId.System.MEMORYWEB, [*ids, *theirs]))), BY_ID)
    assert sorted(found) == sorted(ids)  # beta's id resolves to nothing in alpha


# --- consolidation -----------------------------------------------------------------------

@pytest.fixture
def corpus(agent) -> dict[str, str]:
    from tests.lifecycle.test_consolidation import CONFLICTS, DEPLOYS, OTHERS, STAGING

    texts = [*STAGING, *DEPLOYS, *(t for a, b, _ in CONFLICTS for t in (a, b)), *OTHERS]
    return dict(zip(texts, _store(agent, texts), strict=True))


def _admin(team_admin) -> Principal:
    return Principal.for_key(team_admin.key)


def test_the_consolidation_review_reads_its_members_by_primary_key(team_admin, corpus, alpha):
    from apps.dashboard.consolidation_views import _review
    from apps.lifecycle.consolidation import consolidate

    outcome = consolidate(_admin(team_admin), "alpha", {"dry_run": True, "threshold": 0.85})
    reviews = []
    _assert_seeks(_statements(lambda: reviews.append(_review(outcome, QueryDict(), []))), BY_ID)
    members = [m for p in reviews[0].proposals for m in p.members]
    assert len(members) == 5 and all(m.agent == "agent-1" for m in members)


def test_a_stored_run_reads_its_survivors_by_primary_key(team_admin, corpus, alpha):
    from apps.lifecycle.consolidation_jobs import result_row
    from apps.lifecycle.models import ConsolidationRun

    ids = list(corpus.values())
    proposals = [{"survivor": ids[i], "members": [ids[i], ids[i + 1]]} for i in (0, 2, 4)]
    run = ConsolidationRun.objects.create(namespace=alpha, requested_by="test", role=Role.ADMIN,
                                          dry_run=False, result={"proposals": proposals})
    rows = []
    _assert_seeks(_statements(lambda: rows.append(result_row(run))), BY_ID)
    assert [p["merged_content"] for p in rows[0]["proposals"]] == [
        next(t for t, i in corpus.items() if i == ids[n]) for n in (0, 2, 4)]


def test_applying_a_consolidation_reads_its_groups_by_primary_key(team_admin, corpus, alpha):
    from apps.lifecycle.consolidation import consolidate

    outcomes = []
    statements = _statements(lambda: outcomes.append(consolidate(
        _admin(team_admin), "alpha", {"dry_run": False, "threshold": 0.85})))
    _assert_seeks([sql for sql in statements if BY_ID in sql], BY_ID)
    assert (outcomes[0].merged, outcomes[0].conflicts_linked) == (2, 3)
