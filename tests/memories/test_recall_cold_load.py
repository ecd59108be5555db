"""A recall in a namespace whose collection the embedded engine has not loaded since it
started begins loading it while the query is embedded (``channels._start_loading``):
embedded Chroma loads a collection at its first operation (~3.6 ms bare, 6-8 ms in the
server), and with many namespaces most recalls in a small one find it cold
(docs/performance.md, "Many namespaces"). The load must not change what is found, must
not be started for a collection already held or in keyword mode, and a load that fails
leaves the query to answer (or to report the store unavailable) as before."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings

from apps.memories import chroma_cache
from apps.memories.recall import channels
from apps.memories.vectorstore import get_vector_store

pytestmark = [pytest.mark.django_db, pytest.mark.skipif(
    bool(settings.CHROMA_URL), reason="collections load cold in the embedded engine only (a "
    "Chroma server holds its own cache; the store never reports one cold)")]

QUERY = {"query": "which train goes to the harbour", "k": 5}


@pytest.fixture
def notes(stored):
    for text in ("The 7:40 train goes to the harbour on weekdays", "Harbour parking costs 4 euros",
                 "The museum opens at ten", "Take the coastal train for the harbour view",
                 "Dana parks at the station"):
        stored(text)


def _cold(namespace) -> None:
    """What the engine guard's restart leaves: nothing loaded, nothing counted held."""
    store = get_vector_store()
    chroma_cache.restart_engine(store.client)
    store.open.clear()
    assert store.cold(namespace)


class _WaitingEmbedder:
    """The real embedder, but each call first waits (5 s at most) for the namespace's
    collection to be held by the engine: a recall whose load starts only at its query
    would wait out the 5 s, and ``saw_it_held`` says which happened."""

    def __init__(self, inner, namespace):
        self.inner, self.namespace, self.saw_it_held = inner, namespace, []

    def embed(self, texts):
        deadline = time.monotonic() + 5
        while get_vector_store().cold(self.namespace) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.saw_it_held.append(not get_vector_store().cold(self.namespace))
        return self.inner.embed(texts)


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_the_collection_loads_while_the_query_is_embedded(agent, alpha, notes, monkeypatch, mode):
    warm = agent.post("/api/v1/recall", {**QUERY, "mode": mode}).json()["results"]
    _cold(alpha)
    embedder = _WaitingEmbedder(channels.get_embedder(), alpha)
    monkeypatch.setattr(channels, "get_embedder", lambda: embedder)
    response = agent.post("/api/v1/recall", {**QUERY, "mode": mode})
    assert response.status_code == 200, response.content
    assert embedder.saw_it_held == [True]  # loading began before the embedding ended
    cold = response.json()["results"]
    assert [(h["id"], h["score"]) for h in cold] == [(h["id"], h["score"]) for h in warm]
    assert "harbour" in cold[0]["content"].lower()


def test_nothing_is_loaded_for_a_held_collection_or_a_keyword_recall(agent, alpha, notes,
                                                                     monkeypatch):
    submitted = []
    real_submit = channels._load_pool.submit
    monkeypatch.setattr(channels._load_pool, "submit",
                        lambda *args: submitted.append(args) or real_submit(*args))
    assert agent.post("/api/v1/recall", QUERY).status_code == 200
    assert not get_vector_store().cold(alpha)
    assert agent.post("/api/v1/recall", QUERY).status_code == 200  # held: no load
    _cold(alpha)
    assert agent.post("/api/v1/recall", {**QUERY, "mode": "lexical"}).status_code == 200
    assert submitted == []  # keyword recall asks nothing of Chroma
    assert agent.post("/api/v1/recall", QUERY).status_code == 200
    assert len(submitted) == 1


def test_a_failed_load_leaves_the_query_to_answer(agent, alpha, notes, monkeypatch):
    warm = agent.post("/api/v1/recall", QUERY).json()["results"]
    _cold(alpha)
    store = get_vector_store()
    calls = threading.Event()

    def failing_count(namespace):
        calls.set()
        raise RuntimeError("the load failed")

    monkeypatch.setattr(store, "count", failing_count)
    response = agent.post("/api/v1/recall", QUERY)
    assert calls.is_set()
    assert response.status_code == 200, response.content
    assert [h["id"] for h in response.json()["results"]] == [h["id"] for h in warm]
