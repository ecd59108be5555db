"""The per-process cache of embeddings (tests/plugins/embeddings_cache.py): a text is run
through the model once, its vector is the one the model gives, and a marked test or
another embedder gets no cached vector."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from apps.memories.embeddings import MiniLMOnnxEmbedder, get_embedder
from tests.plugins import embeddings_cache as plugin


@pytest.fixture
def model_runs(monkeypatch) -> list[int]:
    """Texts per run of the model (its batches), recorded; the model still runs."""
    runs: list[int] = []
    real = MiniLMOnnxEmbedder._embed_batch

    def counted(self, texts):
        runs.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(MiniLMOnnxEmbedder, "_embed_batch", counted)
    return runs


def _new(n: int) -> list[str]:
    return [f"a text this run has not embedded yet {uuid.uuid4().hex} number {i}" for i in range(n)]


def test_a_text_is_embedded_once_with_the_models_vector(model_runs):
    embedder = get_embedder()
    first, second = _new(2)
    once = embedder.embed([first, second])
    assert model_runs == [2]
    again = embedder.embed([second, first, second])
    assert model_runs == [2]  # all three from the cache
    np.testing.assert_array_equal(again, once[[1, 0, 1]])
    fresh = plugin.ORIGINAL(embedder.inner, [second, first])
    np.testing.assert_allclose(again[:2], fresh, atol=1e-5)
    again[0, 0] = 42.0  # a caller's array is its own
    assert embedder.embed([second])[0, 0] != 42.0


def test_only_the_new_texts_go_to_the_model(model_runs):
    known, new = _new(1), _new(1)
    get_embedder().embed(known)
    get_embedder().embed(known + new + new)
    assert model_runs == [1, 1]


@pytest.mark.uncached_embeddings
def test_a_marked_test_runs_the_model_every_time(model_runs):
    text = _new(1)
    get_embedder().embed(text)
    get_embedder().embed(text)
    assert model_runs == [1, 1]


def test_the_plugin_wraps_the_model_for_the_session(embeddings_cache):
    assert MiniLMOnnxEmbedder.embed is not plugin.ORIGINAL
    assert embeddings_cache.enabled
