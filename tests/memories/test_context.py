"""Conversation context (apps/memories/context.py): a memory stored in a session is
indexed with the one before it, and that memory's words leave every index entry when it
is deleted, erased or edited."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.core.roles import Role
from apps.memories import lexical, lexical_lookup
from apps.memories.models import Memory
from apps.memories.vectorstore import CONTEXT_KEY, get_vector_store
from tests.helpers.callers import make_caller
from tests.helpers.vector_index import stored_metadata

QUESTION = "Did you ever finish the quokka census on Rottnest?"
ANSWER = "Yes, I did! It took three weekends."


def _store(caller, content: str, session: str = "s1") -> str:
    response = caller.post("/api/v1/memories", {"content": content, "session_id": session})
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _keyword(namespace_id: int, text: str, weight: float | None = None) -> list[str]:
    return [str(pk) for pk, _ in lexical.search(namespace_id, lexical.build_query(text), 10,
                                                context_weight=weight)]


def _vector_context(namespace, memory_id: str) -> str | None:
    return stored_metadata(namespace, [memory_id])[memory_id].get(CONTEXT_KEY)


@pytest.fixture
def turns(agent, alpha):
    question = _store(agent, QUESTION)
    answer = _store(agent, ANSWER)
    return question, answer


def test_a_turn_is_indexed_with_the_turn_before_it(agent, alpha, turns):
    question, answer = turns
    assert str(Memory.objects.get(pk=answer).context_memory_id) == question
    assert Memory.objects.get(pk=question).context_memory_id is None
    # The answer alone shares no word with the question; through its context it matches.
    assert _keyword(alpha.pk, "quokka census") == [question, answer]
    assert _keyword(alpha.pk, "quokka census", weight=0.0) == [question]
    assert _vector_context(alpha, answer) == question
    recalled = agent.post("/api/v1/recall", {"query": "quokka census Rottnest", "k": 5}).json()
    assert [r["id"] for r in recalled["results"]][:2] == [question, answer]
    # The memory itself is unchanged: the context is only in its index entries.
    assert agent.get(f"/api/v1/memories/{answer}").json()["content"] == ANSWER


def test_a_batch_chains_its_turns_and_continues_the_stored_session(agent, alpha):
    first = _store(agent, "We met at the harbour café.")
    response = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": "The espresso there is excellent.", "session_id": "s1"},
        {"content": "Another session entirely.", "session_id": "s2"},
        {"content": "Agreed, best in town.", "session_id": "s1"},
        {"content": "No session, no context."},
    ]})
    assert response.status_code == 201, response.content
    ids = [r["id"] for r in response.json()["results"]]
    context = {str(m.pk): m.context_memory_id and str(m.context_memory_id)
               for m in Memory.objects.filter(namespace=alpha)}
    assert context[ids[0]] == first  # the session's latest stored memory
    assert context[ids[2]] == ids[0]  # the batch's previous item of the same session
    assert context[ids[1]] is None and context[ids[3]] is None


def test_a_batch_continues_from_the_last_turn_of_the_batch_before(agent, alpha):
    """Every row of a batch is stored in one instant: the next batch's first turn must still
    follow the previous batch's *last* turn, not any turn of it (they were equal in time)."""
    turns = [f"Turn {i}: the kiln reached {900 + 37 * i} degrees." for i in range(6)]
    before = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": text, "session_id": "s9"} for text in turns[:4]]})
    assert before.status_code == 201, before.content
    after = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": text, "session_id": "s9"} for text in turns[4:]]})
    assert after.status_code == 201, after.content
    ids = [r["id"] for r in before.json()["results"] + after.json()["results"]]
    context = {str(m.pk): m.context_memory_id and str(m.context_memory_id)
               for m in Memory.objects.filter(namespace=alpha)}
    assert [context[i] for i in ids] == [None, *ids[:-1]]


def test_sessions_never_reach_across_namespaces(agent, outsider, alpha, beta):
    _store(outsider, "Beta's own quokka notes.")
    answer = _store(agent, ANSWER)
    assert Memory.objects.get(pk=answer).context_memory_id is None


def test_deleting_the_context_takes_its_words_out_of_the_next_turns_index(team_admin, alpha, turns):
    question, answer = turns
    assert team_admin.delete(f"/api/v1/memories/{question}").status_code == 204
    assert Memory.objects.get(pk=answer).context_memory_id is None
    assert _keyword(alpha.pk, "quokka census") == []
    assert lexical.held_as_context(alpha.pk, [question]) == 0
    assert _vector_context(alpha, answer) is None
    # Re-embedded from its own words: the stored vector is the answer's alone.
    assert get_vector_store().context_holders(alpha, [question]) == []


def test_editing_the_context_reindexes_the_next_turn(team_admin, alpha, turns):
    question, answer = turns
    edited = team_admin.patch(f"/api/v1/memories/{question}",
                              {"content": "Did you ever count the wombats at Maria Island?"})
    assert edited.status_code == 200
    assert _keyword(alpha.pk, "wombats") == [question, answer]
    assert _keyword(alpha.pk, "quokka") == []


def test_erasure_certifies_the_context_is_gone_from_other_memories(team_admin, system_admin,
                                                                  alpha):
    dana = make_caller(Role.AGENT, alpha, "agent-2")
    question = _store(dana, "Dana: my zorblaxian allergy flared up again.")
    answer = _store(make_caller(Role.AGENT, alpha, "agent-3"), "Sorry to hear that, take care.")
    created = team_admin.post("/api/v1/erasure-requests", {"agent_id": "agent-2", "reason": "t"})
    request_id = created.json()["id"]
    assert team_admin.post(f"/api/v1/erasure-requests/{request_id}/approve").status_code == 200
    executed = system_admin.post(f"/api/v1/erasure-requests/{request_id}/execute")
    assert executed.status_code == 200, executed.content
    verification = executed.json()["certificate"]["verification"]
    assert verification["context_keyword_rows"]["ok"] and verification["context_vectors"]["ok"]
    assert _keyword(alpha.pk, "zorblaxian allergy") == []
    assert _vector_context(alpha, answer) is None
    assert Memory.objects.filter(pk=answer).exists()  # the other person's memory stays
    assert question not in get_vector_store().all_ids(alpha)


def test_a_person_lookup_matches_a_memorys_own_words_only(alpha, turns):
    question, _ = turns
    found = lexical_lookup.lookup(alpha.pk, lexical_lookup.parse_lookup("quokka"), 10)
    assert [str(pk) for pk, _ in found] == [question]


@override_settings(MEMORYWEB_INDEX_CONTEXT=False)
def test_context_indexing_can_be_turned_off(agent, alpha):
    _store(agent, QUESTION)
    answer = _store(agent, ANSWER)
    assert Memory.objects.get(pk=answer).context_memory_id is None
    assert _keyword(alpha.pk, "quokka census") != [] and answer not in _keyword(alpha.pk, "quokka")
