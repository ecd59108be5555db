"""``ingest_and_recall``: store a memory, then recall what relates to it (seed 000's
combined call). A module of its own because it composes two use cases, ingestion and
recall, and neither should import the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.errors import InvalidInput, ServiceError, Unavailable
from apps.memories import schemas
from apps.memories.recall import RecallHit, recall
from apps.memories.recall.service import _recall_options
from apps.memories.results import StoredMemory
from apps.memories.services.ingestion import ingest
from apps.ops import metrics
from apps.tenancy.principal import Principal
from apps.tenancy.services import resolve_namespace


@dataclass(frozen=True)
class IngestAndRecallResult:
    #: The store's result (the memory, and whether it was a duplicate).
    stored: StoredMemory
    hits: list[RecallHit]
    #: Why the recall half failed after the memory was stored (the write still stands).
    recall_error: ServiceError | None = None


@metrics.observed("ingest_and_recall")
def ingest_and_recall(principal: Principal, data: Mapping[str, Any],
                      namespace: str | None = None) -> IngestAndRecallResult:
    """Seed 000's combined call: store a memory, then recall what else relates to it.

    Everything is validated before the write. The stored memory is left out of the
    results. If the recall fails after the write (the vector index is down), the write
    is still acknowledged and the error is reported beside it, so a retry does not
    store the memory twice.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    cleaned = schemas.validate(schemas.IngestAndRecallInput, data)
    recall_keys = ("query", "k", "mode", "explain", "filters", "min_score", "mmr_lambda", "rerank",
                   "pad_to_k", "include_shared")
    tuning = ("mode", "min_score", "mmr_lambda", "rerank", "pad_to_k")
    _recall_options(resolve_namespace(principal, data.get("namespace") or namespace),
                    {k: cleaned[k] for k in tuning if k in cleaned})  # before the write
    stored = ingest(principal, {k: v for k, v in data.items() if k not in recall_keys}, namespace)
    memory = stored.memory
    query = {k: data[k] for k in recall_keys if k in data}
    query.setdefault("query", memory.content[: settings.MEMORYWEB_LIMITS["max_query_bytes"] // 4])
    query["namespace"] = memory.namespace.slug
    try:
        hits = recall(principal, query, exclude_ids=[str(memory.pk)]).hits
    except Unavailable as exc:
        return IngestAndRecallResult(stored, [], exc)
    return IngestAndRecallResult(stored, hits)
