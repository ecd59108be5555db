"""Small namespaces outside Chroma (apps/memories/tiered_store.py): where a namespace's
vectors live, the move to Chroma when it outgrows ``MEMORYWEB_SMALL_INDEX_LIMIT``, and
everything that reads or erases them finding them on either side."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from apps.memories import chroma_files
from apps.memories.indexing import reindex_namespace
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import Namespace
from apps.tenancy.namespaces import delete_namespace
from apps.tenancy.principal import Principal
from tests.helpers.erasure import erase_through_requests
from tests.helpers.vector_index import files_holding, stored_metadata

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(bool(settings.CHROMA_URL),
                       reason="the small index is the embedded store's; a Chroma server "
                              "(CHROMA_URL, scaled mode) holds every namespace itself"),
]


def _in_chroma(name: str) -> bool:
    from chromadb.errors import NotFoundError

    try:
        get_vector_store().client.get_collection(name=name)
    except NotFoundError:
        return False
    return True


def _store(caller, content: str, **fields) -> str:
    response = caller.post("/api/v1/memories", {"content": content, **fields})
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _recall(caller, query: str, mode: str = "hybrid", **filters) -> list[str]:
    body = {"query": query, "mode": mode, **({"filters": filters} if filters else {})}
    response = caller.post("/api/v1/recall", body)
    assert response.status_code == 200, response.content
    return [hit["id"] for hit in response.json()["results"]]


def test_a_new_namespace_lives_in_the_small_index_and_recalls_with_filters(alpha, agent):
    store = get_vector_store()
    name = store.collection_name(alpha)
    lunch = _store(agent, "The team lunch is on Friday at the Thai place", tags=["food"])
    deploy = _store(agent, "Deploys are frozen during the holidays", kind="procedure")
    assert store.small.holds(name)
    assert not _in_chroma(name), "a small namespace must not make a Chroma collection"
    assert store.count(alpha) == 2
    assert _recall(agent, "where is lunch", mode="vector")[0] == lunch
    assert _recall(agent, "lunch", mode="vector", tags=["food"]) == [lunch]
    assert _recall(agent, "lunch", mode="vector", kind="procedure") == [deploy]
    assert _recall(agent, "holiday deploy freeze")[0] == deploy


def test_outgrowing_the_limit_moves_the_namespace_to_chroma_and_nothing_is_lost(
        alpha, agent, settings):
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 3
    store = get_vector_store()
    name = store.collection_name(alpha)
    texts = ["Ada's favourite colour is teal", "The printer on floor two jams on A3",
             "Bob is allergic to peanuts"]
    ids = [_store(agent, text) for text in texts]
    assert store.small.holds(name) and not _in_chroma(name)
    before = {text: _recall(agent, text, mode="vector")[0] for text in texts}

    ids.append(_store(agent, "The wifi password rotates every Monday"))  # the fourth

    assert not store.small.holds(name) and store.small.count(name) == 0
    assert _in_chroma(name) and store.client.get_collection(name=name).count() == 4
    assert {text: _recall(agent, text, mode="vector")[0] for text in texts} == before
    assert store.all_ids(alpha) == set(ids)
    # A namespace that moved stays in Chroma: later writes go there.
    ids.append(_store(agent, "Standup moved to 9:30"))
    assert store.client.get_collection(name=name).count() == 5 and not store.small.holds(name)


def test_a_read_that_races_the_move_asks_chroma(alpha, agent, settings, monkeypatch):
    store = get_vector_store()
    name = store.collection_name(alpha)
    kept = _store(agent, "The spare key is under the blue flowerpot")
    assert store.small.holds(name)
    real_query = store.small.query

    def moved_meanwhile(collection, embedding, n, where):
        found = real_query(collection, embedding, n, where)
        with store._writer(name):
            store._move_to_chroma(alpha, name)  # between this read and the check after it
        return found

    monkeypatch.setattr(store.small, "query", moved_meanwhile)
    hits = store.query(alpha, store.embeddings(alpha, [kept]).get(kept), 5, None)
    assert [hit.id for hit in hits] == [kept]
    assert not store.small.holds(name) and _in_chroma(name)


def test_with_the_limit_at_zero_a_new_namespace_goes_to_chroma(alpha, beta, agent, outsider,
                                                               settings):
    store = get_vector_store()
    _store(agent, "alpha goes small")
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 0
    kept = _store(outsider, "beta goes straight to Chroma")
    assert _in_chroma(store.collection_name(beta))
    assert not store.small.holds(store.collection_name(beta))
    assert _recall(outsider, "straight to Chroma", mode="vector") == [kept]
    # alpha was made small before: still read there, and moved at its next write.
    assert store.small.holds(store.collection_name(alpha))
    _store(agent, "alpha's next memory")
    assert not store.small.holds(store.collection_name(alpha))
    assert store.count(alpha) == 2


def test_erasure_leaves_no_byte_of_the_vector_in_the_small_index(
        alpha, agent, team_admin, system_admin):
    store = get_vector_store()
    erased = _store(agent, "Dana's blood type is AB negative")
    kept = _store(agent, "The office closes at six")
    assert store.small.holds(store.collection_name(alpha))
    vector = store.embeddings(alpha, [erased])[erased]
    assert files_holding(vector), "the test cannot see the vector before the erasure"

    certificate = erase_through_requests(team_admin, system_admin, {"ids": [erased]})

    assert {item["id"] for item in certificate["erased"]} == {erased}
    assert all(check["ok"] for check in certificate["verification"].values())
    assert files_holding(vector) == []
    assert chroma_files.disk_residue([erased]) == 0
    assert store.embeddings(alpha, [erased, kept]).keys() == {kept}
    assert erased not in _recall(agent, "Dana's blood type is AB negative", mode="vector")
    assert _recall(agent, "when does the office close", mode="vector")[0] == kept


def test_deleting_a_namespace_drops_its_small_collection(alpha, beta, agent, outsider,
                                                        system_admin):
    store = get_vector_store()
    secret = _store(agent, "Ada's locker code is 4411")
    kept = _store(outsider, "beta keeps its own note about lunch")
    name = store.collection_name(alpha)
    vector = store.embeddings(alpha, [secret])[secret]

    delete_namespace(Principal.for_key(system_admin.key), alpha)

    assert not store.small.holds(name) and store.small.count(name) == 0
    assert not _in_chroma(name)
    assert files_holding(vector) == []
    assert _recall(outsider, "lunch note") == [kept]


def test_reindex_rebuilds_into_a_fresh_small_collection(alpha, agent):
    store = get_vector_store()
    ids = {_store(agent, f"note number {k} about {word}")
           for k, word in enumerate(["apples", "boats", "clouds"])}
    old = store.collection_name(alpha)

    assert reindex_namespace(alpha) == 3

    alpha = Namespace.objects.get(pk=alpha.pk)
    new = store.collection_name(alpha)
    assert new != old and store.small.holds(new) and not store.small.holds(old)
    assert not _in_chroma(new) and not _in_chroma(old)
    assert store.all_ids(alpha) == ids
    assert len(_recall(agent, "boats", mode="vector")) == 3


def test_a_read_of_a_namespace_with_nothing_stored_creates_nothing_in_chroma(alpha, agent):
    store = get_vector_store()
    assert _recall(agent, "anything at all", mode="vector") == []
    assert not _in_chroma(store.collection_name(alpha))
    assert store.count(alpha) == 0 and store.all_ids(alpha) == set()
    assert uuid.UUID(_store(agent, "now something"))


def test_a_move_a_crash_stopped_is_finished_from_the_small_side(alpha, agent, settings,
                                                                monkeypatch):
    """Copied to Chroma, not yet dropped here (the process died): after a restart the
    small side, which has every write since, wins: a delete and a removed tag made then
    are not undone by the copy Chroma kept."""
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 3
    store = get_vector_store()
    name = store.collection_name(alpha)
    ids = [_store(agent, text, tags=["x"]) for text in
           ("Ada likes teal", "The printer jams on A3", "Bob is allergic to peanuts")]
    real_drop = store.small.drop

    def crash(collection):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(store.small, "drop", crash)
    # The write is acknowledged (SQL holds it; the outbox keeps the vector work).
    fourth = _store(agent, "The wifi password rotates every Monday", tags=["x"])
    monkeypatch.setattr(store.small, "drop", real_drop)
    assert store.small.holds(name) and _in_chroma(name)
    store._in_chroma.discard(name)  # a restart: what the process knew is gone
    store._collections.pop(name, None)
    store._unfinished = store.unfinished_moves()
    assert name in store._unfinished

    erased = ids[0]
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 100  # the limit raised meanwhile: still finished
    store.small.delete(name, [erased])  # written while both sides held it
    kept_meta = store.small.metadatas(name, [ids[1]])[ids[1]]
    store.small.update_metadata(name, [ids[1]], [{k: v for k, v in kept_meta.items() if k != "t:x"}])

    assert store.count(alpha) == 3  # the next use finishes the move
    assert not store.small.holds(name) and name not in store._unfinished
    assert store.all_ids(alpha) == {ids[1], ids[2], fourth}
    assert "t:x" not in stored_metadata(alpha, [ids[1]])[ids[1]]
    assert stored_metadata(alpha, [ids[2]])[ids[2]]["t:x"] is True


def test_a_read_from_a_row_older_than_a_reindex_swap_follows_it_to_the_small_side(
        alpha, agent, monkeypatch):
    """The swap drops the old collection while a read of it runs: the read asks the
    current collection, in the small index, and makes no Chroma collection for it."""
    store = get_vector_store()
    kept = _store(agent, "The spare key is under the blue flowerpot")
    vector = store.embeddings(alpha, [kept])[kept]
    old_row = Namespace.objects.get(pk=alpha.pk)
    old_name = store.collection_name(old_row)
    new_row = Namespace(pk=alpha.pk, slug=alpha.slug, collection="swapped" + uuid.uuid4().hex[:8])
    store.upsert(new_row, [kept], vector[None, :], [{"agent_id": "agent-1", "kind": "fact"}])
    Namespace.objects.filter(pk=alpha.pk).update(collection=new_row.collection)
    real_query = store.small.query

    def swapped_meanwhile(collection, embedding, n, where):
        found = real_query(collection, embedding, n, where)
        if collection == old_name:
            store.drop_collection(old_name)  # what the swap does after the update
            return []
        return found

    monkeypatch.setattr(store.small, "query", swapped_meanwhile)
    hits = store.query(old_row, vector, 5, None)
    assert [hit.id for hit in hits] == [kept]
    assert not _in_chroma(store.collection_name(new_row)) and not _in_chroma(old_name)
    # Once dropped, the old name is read as nothing, and not made again.
    assert store.count(old_row) == 1  # follows the swap
    assert not store.small.holds(old_name)


def test_a_retried_drop_of_a_chroma_collection_still_scrubs(alpha, agent, settings,
                                                           monkeypatch):
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 0  # a Chroma collection
    store = get_vector_store()
    _store(agent, "held in Chroma")
    name = store.collection_name(alpha)
    assert _in_chroma(name)
    real_scrub = store._scrub
    monkeypatch.setattr(store, "_scrub", lambda: (_ for _ in ()).throw(OSError("disk busy")))
    with pytest.raises(OSError):
        store.drop_collection(name)
    assert not _in_chroma(name)
    calls = []
    monkeypatch.setattr(store, "_scrub", lambda: calls.append(1) or real_scrub())
    store.drop_collection(name)  # the retry: gone from Chroma already, scrubbed all the same
    assert calls == [1] and chroma_files.orphan_segments() == []


def test_a_vector_of_another_width_is_refused_and_the_collection_stays_readable(alpha, agent):
    import numpy as np

    store = get_vector_store()
    kept = _store(agent, "The office closes at six")
    with pytest.raises(ValueError, match="dimensions"):
        store.upsert(alpha, [str(uuid.uuid4())], np.ones((1, 128), dtype=np.float32),
                     [{"kind": "fact"}])
    assert store.count(alpha) == 1
    assert _recall(agent, "when does the office close", mode="vector")[0] == kept
