"""The optional reranking stage: a second opinion on the best fused candidates.

A reranker sees the query and the full text of the top ``MEMORYWEB_RERANK_DEPTH``
candidates and scores each; the scores join the fusion as the ``rerank`` input (scaled
to 0..1, weight ``MEMORYWEB_FUSION_WEIGHTS["rerank"]``). Typical implementations wrap a
cross-encoder. Any model must load offline (from a PyPI package or a local path): a
reranker is built once per process, at first use, and never downloads anything.

Configure with ``MEMORYWEB_RERANKER=package.module.ClassName``; the class is called
without arguments and must provide ``score``. ``docs/recall.md`` has an example that
wraps a sentence-transformers CrossEncoder.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string


@runtime_checkable
class Reranker(Protocol):
    def score(self, query: str, texts: Sequence[str]) -> Sequence[float]:
        """One relevance score per text, higher is better (any scale)."""


_instance: Reranker | None = None
_loaded_path = ""
_lock = threading.Lock()


def get_reranker() -> Reranker | None:
    """The configured reranker, built once; None when ``MEMORYWEB_RERANKER`` is empty."""
    global _instance, _loaded_path
    path = settings.MEMORYWEB_RERANKER
    if not path:
        return None
    if _instance is None or _loaded_path != path:
        with _lock:
            if _instance is None or _loaded_path != path:
                reranker = import_string(path)()
                if not isinstance(reranker, Reranker):
                    raise TypeError(f"{path} has no score(query, texts) method.")
                _instance, _loaded_path = reranker, path
    return _instance
