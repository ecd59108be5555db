"""A deterministic, model-free embedder for benchmarks that measure the storage layout.

``bench/tenants.py`` stores a million memories; through MiniLM that is most of an hour
of CPU on a small box, and the model's cost is the same per memory whatever the layout,
so it only hides what the bench is after (collections, keyword tables, open files,
RSS). This embedder hashes each lower-cased word (and each pair of neighbouring words)
into one of 384 signed buckets and L2-normalises the sum: texts that share words get
similar vectors, so recall returns sensible neighbours, at a few microseconds a text.

The server loads it with ``MEMORYWEB_EMBEDDER=bench.hash_embedder.HashEmbedder`` (a
dotted path to a factory called with ``batch_size`` and ``threads``, as
apps/memories/embeddings.py does); the server must run with the repository as its
working directory so ``bench`` imports. Never a production embedder: it knows no
synonyms, so its recall quality says nothing about MiniLM's.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Signed feature hashing of words and word pairs into ``dimension`` floats.

    CRC-32 rather than ``hash()``: Python salts ``hash()`` per process, and the server,
    the bench and a restarted server must all give a text the same vector.
    """

    name = "bench-hash-384"
    dimension = 384

    def __init__(self, batch_size: int = 64, threads: int = 0):
        # Accepted for the factory's signature; hashing needs neither.
        self.batch_size, self.threads = batch_size, threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w.lower() for w in _WORD.findall(text)]
            features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            if not features:  # no words at all: a fixed unit vector, never a zero one
                out[row, 0] = 1.0
                continue
            hashes = np.fromiter((zlib.crc32(f.encode()) for f in features), dtype=np.uint32,
                                 count=len(features))
            signs = np.where(hashes & 0x80000000, -1.0, 1.0).astype(np.float32)
            np.add.at(out[row], (hashes % self.dimension).astype(np.intp), signs)
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:  # every feature cancelled out: as for an empty text
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out
