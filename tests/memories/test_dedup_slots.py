"""The dedup slot and the Idempotency-Key claim, one interleaving at a time (issue 16).

test_ingest_races.py races real clients; these put a concurrent request at the one
moment that matters, deterministically: after the first request's dedup read, embedding
and near-duplicate check, just before its transaction, another ingest of the same
content or key commits. Everything stays real; the wrapper only runs that other request
at that moment.
"""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEntry
from apps.core.errors import Conflict
from apps.memories import services
from apps.memories.models import IdempotencyRecord, IndexOutbox, Memory
from apps.memories.services import ingestion
from apps.tenancy.models import NearDuplicatePolicy
from apps.tenancy.principal import Principal

ORIGINAL = "The deploy key rotates every Monday."
NEAR = "The deploy key rotates every monday"  # cosine 0.96 with ORIGINAL (MiniLM)


@pytest.fixture
def meanwhile(monkeypatch):
    """``meanwhile(call)``: run ``call`` once, right after the next near-duplicate check
    (the end of the first request's window between its read and its transaction)."""
    check = ingestion._near_duplicates

    def arrange(call):
        pending = [call]

        def checked_while_another_commits(*args):
            found = check(*args)
            if pending:
                pending.pop()()
            return found

        monkeypatch.setattr(ingestion, "_near_duplicates", checked_while_another_commits)
    return arrange


def _principal(caller) -> Principal:
    return Principal.for_key(caller.key)


def _created_entries(namespace) -> list[list[str]]:
    return list(AuditEntry.objects.filter(namespace_id=namespace.pk, operation="memory.create")
                .values_list("record_ids", flat=True))


def test_the_loser_of_a_content_race_returns_the_winner_and_writes_nothing(agent, alpha,
                                                                         meanwhile):
    won = []
    meanwhile(lambda: won.append(services.ingest(_principal(agent), {"content": ORIGINAL})))
    lost = services.ingest(_principal(agent), {"content": ORIGINAL})
    assert lost.memory.pk == won[0].memory.pk and lost.duplicate
    assert list(Memory.objects.values_list("pk", flat=True)) == [won[0].memory.pk]
    assert _created_entries(alpha) == [[str(won[0].memory.pk)]]
    assert not IndexOutbox.objects.exists()


@pytest.mark.parametrize("policy", [NearDuplicatePolicy.LINK, NearDuplicatePolicy.SKIP])
def test_a_batch_item_that_lost_its_race_hands_its_links_to_the_winner(agent, alpha, meanwhile,
                                                                      policy):
    """The batch's second item is a near-duplicate of its first; the first loses its race:
    the link (or the skip policy's stand-in) points at the winner, never at a memory
    that was not stored."""
    alpha.near_duplicate_policy = policy
    alpha.save()
    won = []
    meanwhile(lambda: won.append(services.ingest(_principal(agent), {"content": ORIGINAL})))
    first, second = services.ingest_many(_principal(agent), [{"content": ORIGINAL},
                                                             {"content": NEAR}])
    winner = won[0].memory
    assert first.memory.pk == winner.pk and first.duplicate
    if policy == NearDuplicatePolicy.LINK:
        assert not second.duplicate and second.memory.near_duplicate_of_id == winner.pk
        assert Memory.objects.get(pk=second.memory.pk).near_duplicate_of_id == winner.pk
        assert _created_entries(alpha) == [[str(winner.pk)], [str(second.memory.pk)]]
    else:
        assert second.memory.pk == winner.pk and second.duplicate
        assert second.near_duplicate_similarity >= 0.95
        assert Memory.objects.count() == 1 and len(_created_entries(alpha)) == 1


def test_a_request_that_lost_its_idempotency_key_writes_nothing(agent, alpha, meanwhile):
    won = []
    meanwhile(lambda: won.append(services.ingest(_principal(agent), {"content": "first body"},
                                                 idempotency_key="k1")))
    with pytest.raises(Conflict) as refused:
        services.ingest(_principal(agent), {"content": "second body"}, idempotency_key="k1")
    assert refused.value.field == "Idempotency-Key"
    assert list(Memory.objects.values_list("content", flat=True)) == ["first body"]
    assert _created_entries(alpha) == [[str(won[0].memory.pk)]]
    assert IdempotencyRecord.objects.get().memory_ids == [str(won[0].memory.pk)]


def test_a_retry_that_lost_its_idempotency_key_replays_the_winner(agent, alpha, meanwhile):
    body = [{"content": "line one"}, {"content": "line two"}]
    won = []
    meanwhile(lambda: won.append(services.ingest_many(_principal(agent), body,
                                                      idempotency_key="b1")))
    replayed = services.ingest_many(_principal(agent), body, idempotency_key="b1")
    assert [r.memory.pk for r in replayed] == [r.memory.pk for r in won[0]]
    assert all(r.duplicate for r in replayed)
    assert Memory.objects.count() == 2 and len(_created_entries(alpha)) == 1


def test_a_memory_edited_away_from_its_words_frees_them(agent, team_admin, alpha):
    """An edit gives up the old words' slot (it keeps no hash of them); storing those
    words again stores them."""
    first = agent.post("/api/v1/memories", {"content": "the old wording"}).json()
    assert team_admin.patch(f"/api/v1/memories/{first['id']}",
                            {"content": "a new wording"}).status_code == 200
    assert Memory.objects.get(pk=first["id"]).dedup_slot is None
    again = agent.post("/api/v1/memories", {"content": "the old wording"})
    assert again.status_code == 201 and again.json()["id"] != first["id"]
    assert Memory.objects.get(pk=again.json()["id"]).dedup_slot is not None


def test_a_slot_left_by_a_raw_write_is_released_by_the_next_ingest(agent, alpha):
    """A job that rewrites content around the services leaves the slot on words the
    memory no longer has; the next ingest of those words releases it and stores them."""
    first = agent.post("/api/v1/memories", {"content": "words before the job"}).json()
    Memory.objects.filter(pk=first["id"]).update(content="words after the job",
                                                 content_hash="0" * 64)
    again = agent.post("/api/v1/memories", {"content": "words before the job"})
    assert again.status_code == 201 and again.json()["id"] != first["id"]
    assert Memory.objects.get(pk=first["id"]).dedup_slot is None


def test_an_edit_may_repeat_another_memorys_words(agent, team_admin):
    """Edits are not deduplicated (as before): the slot belongs to ingest, so making one
    memory's words those of another is no conflict."""
    agent.post("/api/v1/memories", {"content": "words one"})
    other = agent.post("/api/v1/memories", {"content": "words two"}).json()
    edited = team_admin.patch(f"/api/v1/memories/{other['id']}", {"content": "words one"})
    assert edited.status_code == 200
    assert Memory.objects.filter(content="words one").count() == 2
