"""The offline embedder: same vectors whatever the batch, chosen by a setting, known to Chroma."""

from __future__ import annotations

import numpy as np
import pytest

from apps.memories import embeddings
from apps.memories.chroma_adapter import MemoryWebEmbeddingFunction
from apps.memories.embeddings import get_embedder
from apps.memories.vectorstore import get_vector_store

#: The model itself on every text, not the suite's per-process cache of its vectors
#: (tests/plugins/embeddings_cache.py), whose soundness these tests are.
pytestmark = pytest.mark.uncached_embeddings

TEXTS = [
    "short",
    "A somewhat longer sentence about the quarterly planning meeting and its agenda.",
    "Deployments happen on Tuesdays. " * 60,  # over 256 tokens: truncated, pads the others
    "Alice prefers dark mode",
]


def test_vectors_do_not_depend_on_batch_company_or_order():
    embedder = get_embedder()
    alone = np.stack([embedder.embed([t])[0] for t in TEXTS])
    together = embedder.embed(TEXTS)
    reversed_batch = embedder.embed(TEXTS[::-1])[::-1]
    assert together.shape == (len(TEXTS), embedder.dimension)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(reversed_batch, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_meaning_is_captured():
    a, b, c = get_embedder().embed(["The cat sits on the mat", "A feline rests on a rug",
                                    "Stock markets fell sharply today"])
    assert a @ b > 0.4 > a @ c


def test_empty_input_gives_empty_matrix():
    assert get_embedder().embed([]).shape == (0, get_embedder().dimension)


class ConstantEmbedder:
    name, dimension = "constant", 384

    def __init__(self, batch_size: int, threads: int):
        self.batch_size = batch_size

    def embed(self, texts):
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def test_embedder_is_chosen_by_setting(settings, monkeypatch):
    monkeypatch.setattr(embeddings, "_embedder", None)
    settings.MEMORYWEB_EMBEDDER = f"{__name__}.ConstantEmbedder"
    chosen = get_embedder()
    assert isinstance(chosen.inner, ConstantEmbedder)  # inside the metrics wrapper
    assert chosen.batch_size == settings.MEMORYWEB_EMBED_BATCH
    monkeypatch.setattr(embeddings, "_embedder", None)  # the next test gets the real one back


def test_unknown_embedder_setting_fails_loudly(settings, monkeypatch):
    monkeypatch.setattr(embeddings, "_embedder", None)
    settings.MEMORYWEB_EMBEDDER = "no.such.Embedder"
    with pytest.raises(ImportError):
        get_embedder()
    monkeypatch.setattr(embeddings, "_embedder", None)


def test_collections_carry_the_embedding_function(alpha):
    collection = get_vector_store().collection(alpha)
    config = collection.configuration_json
    assert config["embedding_function"]["name"] == "memoryweb"
    assert config["hnsw"]["space"] == "cosine"
    vectors = MemoryWebEmbeddingFunction()(["hello world"])
    np.testing.assert_allclose(vectors[0], get_embedder().embed(["hello world"])[0], atol=1e-6)


def _count_runs(embedder) -> list[int]:
    """Swap the embedder's ONNX session for one that notes each run's text count."""
    rows: list[int] = []
    run = embedder.session.run

    def counting(outputs, feeds, *rest):
        rows.append(len(feeds["input_ids"]))
        return run(outputs, feeds, *rest)

    embedder.session = type("Counting", (), {"run": staticmethod(counting),
                                             "get_inputs": embedder.session.get_inputs})()
    return rows


def test_each_model_run_takes_a_small_batch():
    """onnxruntime's CPU arena keeps a process's largest run for good: a capturing server
    that embedded 64 long texts per run grew to ~5 GB (apps/memories/embeddings.py,
    ``MiniLMOnnxEmbedder.BATCH_SIZE``). However many texts a call brings, no run takes
    more than eight of them, and the vectors are those of one text at a time."""
    embedder = embeddings.MiniLMOnnxEmbedder()
    rows = _count_runs(embedder)
    texts = [f"memory {i}: " + "the deploy ran on Tuesday " * (i % 40) for i in range(64)]
    together = embedder.embed(texts)
    assert sum(rows) == 64 and max(rows) <= 8, rows
    np.testing.assert_allclose(together[[0, 17, 63]],
                               np.stack([embedder.embed([texts[i]])[0] for i in (0, 17, 63)]),
                               atol=1e-5)


def test_the_server_embedder_takes_small_batches_by_default(monkeypatch):
    """The setting, not only the class, keeps runs small: ``MEMORYWEB_EMBED_BATCH``
    defaulted to 64 after the class moved to 8, so the server (built from the setting)
    still ran 64 texts a run while the benchmarks' floor ran 8, and batch ingest was
    measured against a faster model than its own (docs/performance.md)."""
    from memoryweb import settings as defaults

    assert defaults.MEMORYWEB_EMBED_BATCH == embeddings.MiniLMOnnxEmbedder.BATCH_SIZE
    monkeypatch.setattr(embeddings, "_embedder", None)  # built anew from the settings
    inner = get_embedder().inner  # (the original comes back at teardown)
    rows = _count_runs(inner)
    inner.embed([f"turn {i}: we moved the release to Friday" for i in range(40)])
    assert sum(rows) == 40 and max(rows) <= 8, rows
