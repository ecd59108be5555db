"""Chroma's view of MemoryWeb's embedder: the adapter attached to every collection.

Kept apart from :mod:`apps.memories.embeddings` so that importing the embedders does not
import chromadb (about half a second at every process start); the vector store imports
this module when it opens its client.
"""

from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function
from django.conf import settings

from apps.memories.embeddings import get_embedder


@register_embedding_function
class MemoryWebEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of the configured embedder, attached to every collection.

    MemoryWeb embeds before it writes (so the SQL transaction never waits on the
    model) and hands Chroma the vectors; this adapter makes the collection
    self-describing and lets Chroma tooling embed query texts the same way.
    """

    def __init__(self, embedder: str | None = None):
        self.embedder_name = embedder or settings.MEMORYWEB_EMBEDDER

    def __call__(self, input: Documents) -> Embeddings:
        return list(get_embedder().embed(list(input)))

    @staticmethod
    def name() -> str:
        return "memoryweb"

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"embedder": self.embedder_name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MemoryWebEmbeddingFunction:
        return MemoryWebEmbeddingFunction(config.get("embedder"))
