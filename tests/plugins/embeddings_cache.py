"""The embedding model run once per text per test process, not once per test.

In-process tests store the same texts again and again (each test's fixtures rebuild
their world: the isolation matrix stores the same memories 99 times, the keyword-index
corpus is stored by two tests), and all-MiniLM's ONNX run was over a third of such
modules' time (profiled 2026-12-06). Its vectors depend on the text alone, not on the
batch it is embedded in (tests/memories/test_embeddings.py proves it, to 1e-5), so a
vector computed once is the one a later call would compute. ``MiniLMOnnxEmbedder.embed``
is wrapped for the session: texts already embedded are taken from this process's cache,
the others go to the model in one call, as before. Other embedders (a test's constant or
broken one) are not cached; the metrics wrapper around the embedder still counts every
call and text; tests marked ``uncached_embeddings`` (the embedder's own tests) run the
model on every text. Daphne and ``manage.py`` processes are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from apps.memories.embeddings import MiniLMOnnxEmbedder

#: The method as the app defines it.
ORIGINAL = MiniLMOnnxEmbedder.embed
#: Texts kept per process at most (~1.5 kB each): a bound, far above what a run stores.
LIMIT = 50_000


class Cache:
    """Text -> vector for the session; ``enabled`` is off during marked tests."""

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        self.enabled = True

    def embed(self, embedder: MiniLMOnnxEmbedder, texts: Sequence[str]) -> np.ndarray:
        if not self.enabled or not texts:
            return ORIGINAL(embedder, texts)
        missing = list(dict.fromkeys(text for text in texts if text not in self.vectors))
        if missing:
            fresh = ORIGINAL(embedder, missing)
            if len(self.vectors) + len(missing) > LIMIT:  # keep memory bounded: no caching
                found = dict(zip(missing, fresh, strict=True))
                return np.stack([self.vectors.get(text, found.get(text)) for text in texts])
            for text, vector in zip(missing, fresh, strict=True):
                vector.flags.writeable = False
                self.vectors[text] = vector
        return np.stack([self.vectors[text] for text in texts])  # a new array: callers' own


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "uncached_embeddings: run the embedding model on every text (tests/plugins/embeddings_cache.py)",
    )


@pytest.fixture(scope="session", autouse=True)
def embeddings_cache() -> Iterator[Cache]:
    cache = Cache()

    def embed(self: MiniLMOnnxEmbedder, texts: Sequence[str]) -> np.ndarray:
        return cache.embed(self, texts)

    MiniLMOnnxEmbedder.embed = embed
    try:
        yield cache
    finally:
        MiniLMOnnxEmbedder.embed = ORIGINAL


@pytest.fixture(autouse=True)
def _uncached_when_marked(request: pytest.FixtureRequest, embeddings_cache: Cache) -> Iterator[None]:
    """The cache off for a test marked ``uncached_embeddings``."""
    if request.node.get_closest_marker("uncached_embeddings") is None:
        yield
        return
    embeddings_cache.enabled = False
    try:
        yield
    finally:
        embeddings_cache.enabled = True
