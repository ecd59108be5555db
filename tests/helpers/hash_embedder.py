"""The model-free hash embedder for server tests whose subject is not the model.

Tests that run a real Daphne over thousands of memories to check bytes on disk, lost
writes or backups spend most of their minutes in MiniLM, which they do not test. They
start the server with ``MEMORYWEB_EMBEDDER=tests.helpers.hash_embedder.HashEmbedder``
(the server's working directory is the repository root, as tests/servers.py runs it).

``DistinctHashEmbedder``: bench/hash_embedder.py's vectors give texts made of the same few
words the very same similarity to a query, and the order of such ties may change when the
vector index does; a test that compares recall's order before and after an operation uses
this one, which adds to each vector a tiny component of its own (seeded by the text's
CRC-32: the same in every process) so that no two texts tie.

``use_distinct_hash_embedder``: the same for in-process tests whose subject is keyword
search (FTS5 statements, blind tokens): it stands in for the process's embedder for one
test, so no MiniLM model is loaded or run for corpora no vector assertion looks at.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from bench.hash_embedder import HashEmbedder

__all__ = ["DistinctHashEmbedder", "HashEmbedder", "use_distinct_hash_embedder"]


class DistinctHashEmbedder(HashEmbedder):
    name = "test-distinct-hash-384"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = super().embed(texts)
        for row, text in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            jitter = rng.standard_normal(self.dimension).astype(np.float32)
            out[row] += 0.02 * jitter / np.sqrt(self.dimension)
            out[row] /= np.linalg.norm(out[row])
        return out


def use_distinct_hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``DistinctHashEmbedder`` the process's embedder until ``monkeypatch`` undoes it.

    It replaces the embedder ``get_embedder`` hands out (wrapped for the metrics as the
    app wraps any), so ingest, recall's query and the near-duplicate check all use the
    same vectors, and the model is not even loaded when nothing else asked for it."""
    from apps.memories import embeddings

    monkeypatch.setattr(embeddings, "_embedder", embeddings.MeasuredEmbedder(DistinctHashEmbedder()))
