"""Outbox drain isolation and the reindex protocol, against the embedded Chroma."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.memories import indexing, services
from apps.memories.models import IndexOutbox, Memory
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal


def _pending(namespace, memory_ids):
    return [IndexOutbox.objects.create(namespace=namespace, memory_id=i, op=IndexOutbox.Op.UPSERT)
            for i in memory_ids]


def test_a_failing_row_does_not_hold_up_the_rest(agent, alpha, monkeypatch):
    ids = [agent.post("/api/v1/memories", {"content": f"memory {i}"}).json()["id"] for i in range(4)]
    get_vector_store().delete(alpha, ids)  # as if Chroma had lost them
    _pending(alpha, ids)
    poison = ids[1]
    real_replay = indexing._replay

    def replay(namespace, rows):
        if any(str(r.memory_id) == poison for r in rows):
            raise RuntimeError("rejected by the index")
        return real_replay(namespace, rows)

    monkeypatch.setattr(indexing, "_replay", replay)
    report = indexing.drain_outbox()
    assert (report.processed, report.failed, report.remaining) == (3, 1, 1)
    stuck = IndexOutbox.objects.get()
    assert str(stuck.memory_id) == poison and stuck.attempts == 1 and "rejected" in stuck.last_error
    assert get_vector_store().all_ids(alpha) == set(ids) - {poison}


def test_auto_drain_skips_rows_that_keep_failing(agent, alpha):
    memory = agent.post("/api/v1/memories", {"content": "keeps failing"}).json()
    row = _pending(alpha, [memory["id"]])[0]
    IndexOutbox.objects.filter(pk=row.pk).update(attempts=indexing.AUTO_DRAIN_MAX_ATTEMPTS)
    agent.post("/api/v1/memories", {"content": "a later write"})
    assert IndexOutbox.objects.filter(pk=row.pk).exists()  # left to the drainer and the command
    assert indexing.drain_outbox().processed == 1
    assert not IndexOutbox.objects.exists()


def test_automatic_drains_leave_a_write_in_flight_to_it(agent, alpha, monkeypatch):
    """A row no inline index failed yet, younger than IN_FLIGHT_SECONDS, is a write's
    that committed a moment ago and is indexing it now: neither the background drain nor
    another write's settling replays (re-embeds) it. Once it is older (its process died),
    the background drain does."""
    stored = agent.post("/api/v1/memories", {"content": "indexed right now"}).json()
    row = _pending(alpha, [stored["id"]])[0]  # committed, its inline index still running
    replayed: list[list[str]] = []
    real_replay = indexing._replay

    def replay(namespace, rows):
        replayed.append([str(r.memory_id) for r in rows])
        return real_replay(namespace, rows)

    monkeypatch.setattr(indexing, "_replay", replay)
    indexing._drain_backlog()
    agent.post("/api/v1/memories", {"content": "another write settles"})
    assert replayed == [] and IndexOutbox.objects.filter(pk=row.pk).exists()
    IndexOutbox.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - dt.timedelta(seconds=indexing.IN_FLIGHT_SECONDS + 1))
    indexing._drain_backlog()
    assert replayed == [[stored["id"]]] and not IndexOutbox.objects.exists()


def test_writes_during_a_rebuild_are_kept(agent, team_admin, alpha, monkeypatch):
    ids = [agent.post("/api/v1/memories", {"content": f"existing memory {i}"}).json()["id"]
           for i in range(12)]
    principal = Principal.for_key(agent.key)
    admin = Principal.for_key(team_admin.key)
    during: dict[str, str] = {}

    def progress(done: int) -> None:
        if not during:  # mid-rebuild: a new memory, an edit and a delete
            during["new"] = str(services.ingest(principal,
                                                {"content": "Written during the rebuild"}).memory.pk)
            services.update(admin, ids[0], {"content": "Edited during the rebuild"})
            services.delete(admin, ids[11])
            assert IndexOutbox.objects.count() == 3  # kept for the rebuild to replay

    indexing.reindex_namespace(alpha, batch_size=5, progress=progress)
    alpha.refresh_from_db()
    assert alpha.reindex_started_at is None
    assert not IndexOutbox.objects.exists()
    in_index = get_vector_store().all_ids(alpha)
    assert in_index == {str(pk) for pk in Memory.objects.values_list("pk", flat=True)}
    assert during["new"] in in_index and ids[11] not in in_index
    top = agent.post("/api/v1/recall", {"query": "Edited during the rebuild", "k": 1}).json()["results"][0]
    assert top["id"] == ids[0] and top["score"] > 0.99
    assert agent.post("/api/v1/recall", {"query": "Written during the rebuild", "k": 1}).json()[
        "results"][0]["id"] == during["new"]


def test_failed_rebuild_leaves_the_old_collection_in_use(agent, alpha, monkeypatch):
    agent.post("/api/v1/memories", {"content": "still findable"})
    old = alpha.collection

    def boom(done):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        indexing.reindex_namespace(alpha, progress=boom)
    alpha.refresh_from_db()
    assert (alpha.collection, alpha.reindex_started_at) == (old, None)
    results = agent.post("/api/v1/recall", {"query": "findable"}).json()["results"]
    assert results[0]["content"] == "still findable"


def test_a_read_that_raced_a_reindex_swap_reads_the_new_collection(agent, alpha):
    """A recall read the namespace row before ``reindex`` swapped its collection and
    queries after the old one was dropped (``manage.py reindex`` beside a serving
    server): it asks the current collection instead of failing with 503."""
    memory = agent.post("/api/v1/memories", {"content": "The VPN is needed for staging"}).json()
    stale = Namespace.objects.get(pk=alpha.pk)
    store = get_vector_store()
    dropped = store.collection(stale)
    indexing.reindex_namespace(Namespace.objects.get(pk=alpha.pk))
    vector = store.embeddings(stale, [memory["id"]])[memory["id"]]
    assert [hit.id for hit in store.query(stale, vector, 1, None)] == [memory["id"]]
    assert store.nearest(stale, vector.reshape(1, -1))[0].id == memory["id"]
    assert store.collection_name(stale) not in [c.name for c in store.client.list_collections()]
    # A process that still has the dropped collection open (scaled: another server).
    store._collections[store.collection_name(stale)] = dropped
    assert [hit.id for hit in store.query(stale, vector, 1, None)] == [memory["id"]]
